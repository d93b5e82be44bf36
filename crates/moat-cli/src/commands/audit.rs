//! `moat audit list|key|verify|checkpoint|prove|verify-proof`: the recorded decisions and the
//! Merkle log's keys, checks and proofs.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use moat_audit::{AuditLog, Event, ListQuery, ProofBundle, SignerKey, VerifierKey};

use crate::cli::{AuditCommand, GlobalArgs};
use crate::config::Loaded;
use crate::error::UserError;

pub fn run(
    global: &GlobalArgs,
    loaded: &Loaded,
    command: AuditCommand,
) -> anyhow::Result<ExitCode> {
    let data_dir = loaded.data_dir(global)?;
    let path = data_dir.join("audit.db");
    match command {
        AuditCommand::List {
            limit,
            ecosystem,
            package,
            action,
            json,
        } => list(&path, limit, ecosystem, package, action, json),
        AuditCommand::Key => key(&path),
        AuditCommand::Verify { against, key, json } => {
            verify(&path, against.as_deref(), key.as_deref(), json)
        }
        AuditCommand::Checkpoint => checkpoint(&path),
        AuditCommand::Prove { index, json } => prove(&path, index, json),
        AuditCommand::VerifyProof { file, key } => verify_proof(&file, &key),
    }
}

/// The store at `path`, read-only; a clear error when there is none.
fn open(path: &Path) -> anyhow::Result<AuditLog> {
    if !path.is_file() {
        return Err(
            UserError::new(format!("no audit log at {}", path.display()))
                .hint("the gate creates it on its first start; pass the gate's --data-dir")
                .into(),
        );
    }
    Ok(AuditLog::open_read_only(path)?)
}

fn key(path: &Path) -> anyhow::Result<ExitCode> {
    let key_path = moat_audit::key_path(path);
    if !key_path.exists() && path.is_file() && open(path)?.count()? > 0 {
        return Err(UserError::new(format!(
            "the audit log {} has events but its signing key {} is missing",
            path.display(),
            key_path.display()
        ))
        .hint("restore the key from a backup; a new key cannot vouch for the recorded checkpoints")
        .into());
    }
    if let Some(dir) = key_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = SignerKey::load_or_generate(&key_path).map_err(|e| UserError::new(e.to_string()))?;
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
    path: &Path,
    against: Option<&Path>,
    key: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let log = open(path)?;
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

fn checkpoint(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(latest) = open(path)?.checkpoint()? else {
        return Err(UserError::new("the audit log is empty: no checkpoint yet").into());
    };
    print!("{}", latest.note);
    Ok(ExitCode::SUCCESS)
}

fn prove(path: &Path, index: u64, json: bool) -> anyhow::Result<ExitCode> {
    let bundle = open(path)?
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
    path: &Path,
    limit: Option<usize>,
    ecosystem: Option<String>,
    package: Option<String>,
    action: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let log = open(path)?;
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
