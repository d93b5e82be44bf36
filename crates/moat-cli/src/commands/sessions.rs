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
    /// When `moat_pid` started, in clock ticks after boot ([`process_start`]): a `moat run`
    /// killed before it could remove its session leaves the file, and its pid may go to
    /// another process, which must not be listed or signalled as the session.
    moat_start: u64,
}

impl SessionFile {
    /// Whether `moat_pid` is still the session's `moat run`.
    fn is_running(&self) -> bool {
        process_start(self.moat_pid) == Some(self.moat_start)
    }
}

/// When process `pid` started, in clock ticks after boot (`/proc/PID/stat`, field 22); `None`
/// when there is no such process.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses.
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
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
    // its grace period; a second SIGTERM kills the sandbox at once) and records the end. The
    // pidfd holds the process it was opened on; checked after the open, the start time says
    // that this is the session's, and not one that got its pid since.
    let signalled = i32::try_from(session.moat_pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()))
        .and_then(|pidfd| {
            if !session.is_running() {
                return Err(rustix::io::Errno::SRCH);
            }
            rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::TERM)
        });
    match signalled {
        Ok(()) => println!("stopping session {id}"),
        Err(rustix::io::Errno::SRCH) => println!("session {id} has just ended"),
        Err(error) => {
            return Err(UserError::new(format!(
                "cannot signal session {id} (pid {}): {error}",
                session.moat_pid
            ))
            .hint("a session is stopped by its operator or root")
            .into());
        }
    }
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
        .filter(SessionFile::is_running)
        .collect();
    sessions.sort_by(|a, b| a.started.cmp(&b.started));
    Ok(sessions)
}
