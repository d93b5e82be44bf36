//! `moat audit list|key|verify|checkpoint|prove|verify-proof|export`: the recorded decisions,
//! the Merkle log's keys, checks and proofs, and exports for a SIEM.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use moat_audit::export::{ExportOptions, Format};
use moat_audit::{AuditLog, Event, ListQuery, ProofBundle, SignerKey, VerifierKey};

use crate::cli::{AuditCommand, ExportArgs, ExportFormat, GlobalArgs};
use crate::config::{AuditStore, Loaded};
use crate::error::UserError;

pub fn run(
    global: &GlobalArgs,
    loaded: &Loaded,
    command: AuditCommand,
) -> anyhow::Result<ExitCode> {
    let data_dir = loaded.data_dir(global)?;
    let store = loaded.audit_store(global, &data_dir);
    if !matches!(
        command,
        AuditCommand::Key | AuditCommand::VerifyProof { .. }
    ) {
        settle(&data_dir);
    }
    match command {
        AuditCommand::List {
            limit,
            ecosystem,
            package,
            action,
            json,
        } => list(&store, limit, ecosystem, package, action, json),
        AuditCommand::Key => key(&store),
        AuditCommand::Verify { against, key, json } => {
            verify(&store, against.as_deref(), key.as_deref(), json)
        }
        AuditCommand::Checkpoint => checkpoint(&store),
        AuditCommand::Prove { index, json } => prove(&store, index, json),
        AuditCommand::VerifyProof { file, key } => verify_proof(&file, &key),
        AuditCommand::Export(args) => export(&store, &args),
        AuditCommand::Rebuild { json } => super::report::rebuild(&open(&store)?, &data_dir, json),
    }
}

/// Waits for the gate running on `data_dir`, if one does, to have on record the session ends
/// handed to it ([`moat_gate::session_file::settle`]): a session whose `moat run` has returned
/// then shows its end in what is read next.
pub(super) fn settle(data_dir: &Path) {
    let timeout = moat_gate::session_file::SETTLE_TIMEOUT;
    if let Err(pending) = moat_gate::session_file::settle(data_dir, timeout) {
        say!(
            "moat: warning: the gate running on {} has not recorded the end of session {} after {}s; it may be missing here (the gate's log says why)",
            data_dir.display(),
            pending.join(", "),
            timeout.as_secs()
        );
    }
}

/// The log in `store`, read-only; a clear error when there is none.
pub(super) fn open(store: &AuditStore) -> anyhow::Result<AuditLog> {
    if !store.exists() {
        return Err(
            UserError::new(format!("no audit log at {}", store.location))
                .hint("the gate creates it on its first start; pass the gate's --data-dir")
                .into(),
        );
    }
    Ok(store.open_read_only()?)
}

fn key(store: &AuditStore) -> anyhow::Result<ExitCode> {
    let key_path = &store.key_path;
    if !key_path.exists() && store.exists() && open(store)?.count()? > 0 {
        return Err(UserError::new(format!(
            "the audit log {} has events but its signing key {} is missing",
            store.location,
            key_path.display()
        ))
        .hint("restore the key from a backup; a new key cannot vouch for the recorded checkpoints")
        .into());
    }
    if let Some(dir) = key_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = SignerKey::load_or_generate(key_path).map_err(|e| UserError::new(e.to_string()))?;
    println!("{}", key.verifier());
    Ok(ExitCode::SUCCESS)
}

fn parse_key(text: &str) -> anyhow::Result<VerifierKey> {
    VerifierKey::parse(text).map_err(|e| {
        UserError::new(format!("--key: {e}"))
            .hint("pass the key as `moat audit key` prints it: <name>+<key id>+<base64 key>")
            .into()
    })
}

fn read_file(file: &Path) -> anyhow::Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(file)
        .map_err(|e| UserError::new(format!("cannot read {}: {e}", file.display())).into())
}

fn verify(
    store: &AuditStore,
    against: Option<&Path>,
    key: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let log = open(store)?;
    let key = match key {
        Some(text) => parse_key(text)?,
        None => log.verifier()?,
    };
    let against = against.map(read_file).transpose()?;
    let report = log.verify(&key, against.as_deref())?;
    let status = if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if json {
        super::print_json(&report)?;
        return Ok(status);
    }
    if report.is_clean() {
        println!(
            "ok: {} events, {} checkpoints, root {}",
            report.size, report.checkpoints, report.root
        );
        if let Some(saved) = &report.against {
            println!(
                "ok: the log extends the saved checkpoint of size {}",
                saved.size
            );
        }
        return Ok(status);
    }
    match report.first_bad_index {
        Some(index) => println!(
            "tampered: first bad index {index} (seq {}) in a log of {} events",
            index + 1,
            report.size
        ),
        None => println!("tampered: the log of {} events", report.size),
    }
    for problem in &report.problems {
        let at = problem
            .index
            .map(|index| format!("index {index}: "))
            .unwrap_or_default();
        println!("  {at}{}: {}", problem.kind, problem.message);
    }
    Ok(status)
}

fn checkpoint(store: &AuditStore) -> anyhow::Result<ExitCode> {
    let Some(latest) = open(store)?.checkpoint()? else {
        return Err(UserError::new("the audit log is empty: no checkpoint yet").into());
    };
    print!("{}", latest.note);
    Ok(ExitCode::SUCCESS)
}

fn prove(store: &AuditStore, index: u64, json: bool) -> anyhow::Result<ExitCode> {
    let bundle = open(store)?
        .prove(index)
        .map_err(|e| UserError::new(e.to_string()))?;
    if json {
        super::print_json(&bundle)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "event index {} (seq {}) in the tree of {} events",
        bundle.index, bundle.seq, bundle.size
    );
    println!("leaf: {}", bundle.leaf);
    println!(
        "leaf hash: {}",
        moat_audit::merkle::leaf_hash(bundle.leaf.as_bytes())
    );
    println!("inclusion proof:");
    for hash in &bundle.proof {
        println!("  {hash}");
    }
    println!("checkpoint:");
    print!("{}", bundle.checkpoint);
    Ok(ExitCode::SUCCESS)
}

fn verify_proof(file: &Path, key: &str) -> anyhow::Result<ExitCode> {
    let key = parse_key(key)?;
    let text = read_file(file)?;
    let bundle: ProofBundle = serde_json::from_str(&text).map_err(|e| {
        UserError::new(format!("{} is not a proof: {e}", file.display()))
            .hint("make one with `moat audit prove INDEX --json`")
    })?;
    match moat_audit::verify_bundle(&bundle, &key) {
        Ok(checkpoint) => {
            println!(
                "ok: event index {} (seq {}) is in {} at size {} (root {})",
                bundle.index, bundle.seq, checkpoint.origin, checkpoint.size, checkpoint.root
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(UserError::new(format!("the proof does not verify: {e}")).into()),
    }
}

fn list(
    store: &AuditStore,
    limit: Option<usize>,
    ecosystem: Option<String>,
    package: Option<String>,
    action: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let log = open(store)?;
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
                let repeats = d
                    .repeats
                    .as_ref()
                    .map(|r| {
                        format!(
                            "  ×{} as #{} until {}",
                            r.count,
                            r.of,
                            r.last.strftime("%H:%M:%S")
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "{:>6}  {}  {:<5}  {} {} {}{rules}  ({}){repeats}",
                    stored.seq,
                    d.time.strftime("%Y-%m-%d %H:%M:%S"),
                    d.action,
                    d.ecosystem,
                    d.request,
                    target,
                    d.identity
                );
            }
            Event::SessionStart(start) => {
                let read_only = if start.read_only.is_empty() {
                    String::new()
                } else {
                    format!(" read-only {}", start.read_only.join(", "))
                };
                println!(
                    "{:>6}  {}  start  session {} agent {} operator {} ({}) in {}{read_only}: {}",
                    stored.seq,
                    start.time.strftime("%Y-%m-%d %H:%M:%S"),
                    start.session,
                    start.agent,
                    start.operator,
                    start.backend,
                    start.workspace,
                    start.command.join(" ")
                );
            }
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

fn export(store: &AuditStore, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(|text| parse_since(text, jiff::Timestamp::now()))
        .transpose()?;
    let format = match args.format {
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Ocsf => Format::Ocsf,
    };
    let options = ExportOptions { format, since };
    let log = open(store)?;
    let result = match &args.output {
        Some(file) => {
            let created = std::fs::File::create(file)
                .map_err(|e| UserError::new(format!("cannot create {}: {e}", file.display())))?;
            let mut out = std::io::BufWriter::new(created);
            moat_audit::export::export(&log, &options, &mut out)
                .and_then(|summary| Ok(out.get_ref().sync_all().map(|()| summary)?))
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            moat_audit::export::export(&log, &options, &mut out)
        }
    };
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        // `moat audit export | head`: the reader has all it wanted.
        Err(error) if error.is_broken_pipe() => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error.into()),
    }
}

/// `--since`: an RFC 3339 timestamp, or an age (`90s`, `30m`, `24h`, `7d`, `2w`) before `now`.
pub(super) fn parse_since(text: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time);
    }
    let invalid = || {
        UserError::new(format!(
            "--since {text:?} is neither a timestamp nor an age"
        ))
        .hint("pass an RFC 3339 time such as 2026-01-02T03:04:05Z, or an age such as 24h or 7d")
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(invalid().into()),
    };
    let age = number
        .checked_mul(seconds_per_unit)
        .and_then(|seconds| jiff::SignedDuration::from_secs(seconds).checked_neg())
        .ok_or_else(invalid)?;
    Ok(now.checked_add(age).map_err(|_| invalid())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_timestamps_and_ages() {
        let now: jiff::Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        let at = |text: &str| parse_since(text, now).unwrap().to_string();
        assert_eq!(at("2026-01-02T03:04:05Z"), "2026-01-02T03:04:05Z");
        assert_eq!(at("2026-01-02T04:04:05+01:00"), "2026-01-02T03:04:05Z");
        assert_eq!(at("24h"), "2026-01-09T00:00:00Z");
        assert_eq!(at("7d"), "2026-01-03T00:00:00Z");
        assert_eq!(at("30m"), "2026-01-09T23:30:00Z");
        for bad in [
            "",
            "h",
            "24",
            "24x",
            "yesterday",
            "-1d",
            "99999999999999999999d",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
