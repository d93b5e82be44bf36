//! `moat audit list`: the recorded gate decisions.

use std::process::ExitCode;

use moat_audit::{AuditLog, Event, ListQuery};

use crate::cli::{AuditCommand, GlobalArgs};
use crate::config::Loaded;
use crate::error::UserError;

pub fn run(
    global: &GlobalArgs,
    loaded: &Loaded,
    command: AuditCommand,
) -> anyhow::Result<ExitCode> {
    let AuditCommand::List {
        limit,
        ecosystem,
        package,
        action,
        json,
    } = command;
    let data_dir = loaded.data_dir(global)?;
    let path = data_dir.join("audit.db");
    if !path.is_file() {
        return Err(
            UserError::new(format!("no audit log at {}", path.display()))
                .hint("the gate creates it on its first start; pass the gate's --data-dir")
                .into(),
        );
    }
    let log = AuditLog::open_read_only(&path)?;
    let events = log.list(&ListQuery {
        limit,
        ecosystem,
        package,
        action,
    })?;
    if json {
        super::print_json(&events)?;
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        println!("no events recorded");
    }
    for stored in &events {
        match &stored.event {
            Event::Decision(d) => {
                let target = match &d.version {
                    Some(v) => format!("{}@{v}", d.package),
                    None => d.package.clone(),
                };
                let rules = if d.rules.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", d.rules.join(", "))
                };
                println!(
                    "{:>6}  {}  {:<5}  {} {} {}{rules}  ({})",
                    stored.seq,
                    d.time.strftime("%Y-%m-%d %H:%M:%S"),
                    d.action,
                    d.ecosystem,
                    d.request,
                    target,
                    d.identity
                );
            }
            Event::SessionStart(start) => println!(
                "{:>6}  {}  start  session {} agent {} operator {} ({}): {}",
                stored.seq,
                start.time.strftime("%Y-%m-%d %H:%M:%S"),
                start.session,
                start.agent,
                start.operator,
                start.backend,
                start.command.join(" ")
            ),
            Event::SessionEnd(end) => {
                let status = match (end.exit_code, end.signal) {
                    (Some(code), _) => format!("exit {code}"),
                    (None, Some(signal)) => format!("signal {signal}"),
                    (None, None) => "unknown status".to_owned(),
                };
                println!(
                    "{:>6}  {}  end    session {} {status} after {:.1}s{}",
                    stored.seq,
                    end.time.strftime("%Y-%m-%d %H:%M:%S"),
                    end.session,
                    end.duration_ms as f64 / 1000.0,
                    end.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
