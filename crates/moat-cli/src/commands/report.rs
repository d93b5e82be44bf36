//! `moat report` and `moat audit rebuild`: the system of record (tables derived from the audit
//! log, in DATA_DIR/record.db), brought up to date from the log, then queried.

use std::path::Path;
use std::process::ExitCode;

use moat_audit::AuditLog;
use moat_audit::record::{self, Record, Report, ReportQuery};

use crate::cli::{GlobalArgs, ReportArgs};
use crate::config::Loaded;

pub fn report(global: &GlobalArgs, loaded: &Loaded, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let data_dir = loaded.data_dir(global)?;
    super::audit::settle(&data_dir);
    let log = super::audit::open(&loaded.audit_store(global, &data_dir))?;
    let mut record = Record::open(&record::record_path(&data_dir))?;
    let synced = record.sync(&log)?;
    if synced.rebuilt {
        say!(
            "moat: rebuilt the system of record from {} events",
            synced.through
        );
    }
    let since = args
        .since
        .as_deref()
        .map(|text| super::audit::parse_since(text, jiff::Timestamp::now()))
        .transpose()?;
    let query = ReportQuery {
        agent: args.agent,
        operator: args.operator,
        package: args.package,
        since,
    };
    let report = record.report(&query)?;
    if args.json {
        super::print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rebuild(log: &AuditLog, data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let path = record::record_path(data_dir);
    let mut record = Record::open(&path)?;
    let rebuilt = record.rebuild(log)?;
    if json {
        super::print_json(&rebuilt)?;
    } else {
        println!(
            "rebuilt the system of record {} from {} events",
            path.display(),
            rebuilt.through
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-03-01 09:00:03Z`: seconds are enough to read; `--json` has the full time.
fn when(time: jiff::Timestamp) -> String {
    time.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `agent (operator)` for a session's requests, else the requester's identity.
fn who(agent: Option<&str>, operator: Option<&str>, identity: &str) -> String {
    match (agent, operator) {
        (Some(agent), Some(operator)) => format!("{agent} ({operator})"),
        _ => identity.to_owned(),
    }
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

fn print_report(report: &Report) {
    println!("agents ({})", report.agents.len());
    for agent in &report.agents {
        println!(
            "  {}  operated by {}  {}, {} running  last seen {}",
            agent.agent,
            agent.operator,
            plural(agent.sessions, "session", "sessions"),
            agent.running,
            when(agent.last_seen),
        );
    }

    println!("\nsessions ({})", report.sessions.len());
    for session in &report.sessions {
        let ended = match (session.ended, session.exit_code, session.signal) {
            (None, _, _) => "no end recorded (running, or its moat run died)".to_owned(),
            (Some(ended), Some(code), _) => format!("ended {}  exit {code}", when(ended)),
            (Some(ended), None, Some(signal)) => format!("ended {}  signal {signal}", when(ended)),
            (Some(ended), None, None) => format!("ended {}", when(ended)),
        };
        let reason = session
            .reason
            .as_deref()
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default();
        println!(
            "  {}  {} ({})  started {}  {ended}{reason}",
            session.session,
            session.agent,
            session.operator,
            when(session.started),
        );
        println!(
            "      {} on {}  {}",
            session.backend,
            session.host,
            session.command.join(" ")
        );
    }

    println!("\npackages consumed ({})", report.packages.len());
    for package in &report.packages {
        let warned = if package.action == "warn" {
            "  (warned)"
        } else {
            ""
        };
        println!(
            "  {} {} {}  {}  {}  first {}{warned}",
            package.ecosystem,
            package.name,
            package.version,
            who(
                package.agent.as_deref(),
                package.operator.as_deref(),
                &package.identity
            ),
            plural(package.downloads, "download", "downloads"),
            when(package.first),
        );
    }

    println!("\nblocked ({})", report.blocked.len());
    for blocked in &report.blocked {
        let version = blocked
            .version
            .as_deref()
            .map(|v| format!("@{v}"))
            .unwrap_or_default();
        let mut why = blocked.rules.join(", ");
        if !blocked.advisories.is_empty() {
            why.push_str(&format!(" [{}]", blocked.advisories.join(", ")));
        }
        if !blocked.approved.is_empty() {
            why.push_str(&format!("; approved: {}", blocked.approved.join(", ")));
        }
        if blocked.requests > 1 {
            why.push_str(&format!(
                "; refused {} (last {})",
                plural(blocked.requests, "time", "times"),
                when(blocked.last)
            ));
        }
        println!(
            "  #{} {}  {}  {} {}{version} ({})  {why}",
            blocked.seq,
            when(blocked.time),
            who(
                blocked.agent.as_deref(),
                blocked.operator.as_deref(),
                &blocked.identity
            ),
            blocked.ecosystem,
            blocked.name,
            blocked.request,
        );
        if let Some(message) = blocked.message.as_deref() {
            for line in message.lines() {
                println!("      {line}");
            }
        }
    }

    println!("\negress hosts ({})", report.egress.len());
    for egress in &report.egress {
        println!(
            "  {}  {}  {}  {}  last {}",
            egress.host,
            egress.action,
            who(
                egress.agent.as_deref(),
                egress.operator.as_deref(),
                &egress.identity
            ),
            plural(egress.requests, "request", "requests"),
            when(egress.last),
        );
    }
}
