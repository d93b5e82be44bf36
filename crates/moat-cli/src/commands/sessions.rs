//! `moat ps` and `moat stop`: the sessions running on this data directory, as their
//! `sessions/<id>/session.json` files say (a session removes its directory when it ends).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::config::Loaded;
use crate::error::UserError;

/// One running session, as `moat run` recorded it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SessionFile {
    session: String,
    agent: String,
    operator: String,
    command: Vec<String>,
    started: String,
    moat_pid: u32,
}

pub fn ps(global: &GlobalArgs, loaded: &Loaded, json: bool) -> anyhow::Result<ExitCode> {
    let sessions = running(&moat_gate::control::sessions_dir(&loaded.data_dir(global)?))?;
    if json {
        super::print_json(&sessions)?;
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        println!("no sessions running");
    }
    for s in &sessions {
        println!(
            "{}  {}  agent {}  operator {}  pid {}  {}",
            s.session,
            s.started,
            s.agent,
            s.operator,
            s.moat_pid,
            s.command.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(global: &GlobalArgs, loaded: &Loaded, id: &str) -> anyhow::Result<ExitCode> {
    let dir = moat_gate::control::sessions_dir(&loaded.data_dir(global)?);
    let Some(session) = running(&dir)?.into_iter().find(|s| s.session == id) else {
        return Err(UserError::new(format!("no running session {id}"))
            .hint("`moat ps` lists the running sessions")
            .into());
    };
    // The session's `moat run` process ends the session on SIGTERM (the agent gets SIGTERM and
    // its grace period; a second SIGTERM kills the sandbox at once) and records the end.
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(session.moat_pid.to_string())
        .status()?;
    if !status.success() {
        return Err(UserError::new(format!(
            "cannot signal session {id} (pid {})",
            session.moat_pid
        ))
        .into());
    }
    println!("stopping session {id}");
    Ok(ExitCode::SUCCESS)
}

/// Sessions whose directory holds a session file and whose `moat run` process is alive.
fn running(dir: &Path) -> anyhow::Result<Vec<SessionFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut sessions: Vec<SessionFile> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("session.json"))
        .filter_map(|path: PathBuf| std::fs::read(path).ok())
        .filter_map(|bytes| serde_json::from_slice::<SessionFile>(&bytes).ok())
        .filter(|s| Path::new(&format!("/proc/{}", s.moat_pid)).exists())
        .collect();
    sessions.sort_by(|a, b| a.started.cmp(&b.started));
    Ok(sessions)
}
