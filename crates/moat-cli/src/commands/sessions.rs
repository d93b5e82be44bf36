//! `moat ps` and `moat stop`: the sessions running on this data directory, as their
//! `sessions/<id>/session.json` files say (a session removes its directory when it ends).

use std::process::ExitCode;

use moat_gate::session_file::running_sessions;

use crate::cli::GlobalArgs;
use crate::config::Loaded;
use crate::error::UserError;

pub fn ps(global: &GlobalArgs, loaded: &Loaded, json: bool) -> anyhow::Result<ExitCode> {
    let sessions = running_sessions(&loaded.data_dir(global)?)?;
    if json {
        super::print_json(&sessions)?;
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        println!("no sessions running");
    }
    for s in &sessions {
        println!(
            "{}  {}  agent {}  operator {}  pid {}  in {}  {}",
            s.session,
            s.started,
            s.agent,
            s.operator,
            s.moat_pid,
            s.workspace,
            s.command.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(global: &GlobalArgs, loaded: &Loaded, id: &str) -> anyhow::Result<ExitCode> {
    let running = running_sessions(&loaded.data_dir(global)?)?;
    let Some(session) = running.into_iter().find(|s| s.session == id) else {
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
