//! `sessions/<id>/session.json`: a running session as its `moat run` describes it, for `moat
//! ps` and `moat stop`; and the ends of sessions whose `moat run` died with the file in place.
//!
//! `moat run` writes the file once the session's start is recorded. With a gate of its own,
//! `moat run` removes the file before it records the end; a running gate removes it before it
//! ends a session itself. A session served by a running gate ends the other way round: `moat
//! run` writes the end into the file ([`SessionFile::end`]) and hands it to the gate without
//! waiting for an answer; the gate records it and only then removes the file, mostly after
//! `moat run` has gone. A file whose `moat run` is gone and that no running gate holds open
//! therefore names a session with a start and no end on record: a `moat run` killed outright
//! (`SIGKILL`, the OOM killer) with a gate of its own, which died with it; or a session whose
//! running gate died (or failed to write) before the end was on record.
//! [`end_abandoned_sessions`] records those ends: as a gate starts, and every minute in a
//! running gate; with the end the file holds, when it holds one. A gate that died while the
//! session ended may have recorded the end before it died ([`SessionFile::end`],
//! [`SessionFile::end_maybe_recorded`]): the log is searched before an end is recorded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_audit::{AuditLog, Event, SessionEnd};

use crate::SessionContext;
use crate::control::{CONTROL_SOCKET, connect_unix, sessions_dir};

/// The session file's name in a session's directory.
pub const SESSION_FILE: &str = "session.json";

/// One running session, as its `moat run` recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionFile {
    /// The session id.
    pub session: String,
    /// Which agent runs.
    pub agent: String,
    /// Who runs it.
    pub operator: String,
    /// The agent's command line.
    pub command: Vec<String>,
    /// The directory the agent works in (empty in a file from an older `moat run`).
    #[serde(default)]
    pub workspace: String,
    /// When the session started (RFC 3339).
    pub started: String,
    /// The session's `moat run` process.
    pub moat_pid: u32,
    /// When `moat_pid` started, in clock ticks after boot ([`process_start`]): once the process
    /// is gone, its pid may go to another, which is not the session's.
    pub moat_start: u64,
    /// The session's running gate went away while the session ended (before it answered the
    /// close, or without its notice that it had ended the session itself): it may have recorded
    /// the end before it died, so [`end_abandoned_sessions`] looks in the log before it records
    /// one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end_maybe_recorded: bool,
    /// The session's end, as `moat run` handed it to its running gate, which records it and
    /// then removes this file. Found in a file whose `moat run` is gone
    /// and that no running gate holds open, it is recorded by whoever finds it, unless the log
    /// has it already (the gate that was handed it may have recorded it before it died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<SessionEnd>,
}

impl SessionFile {
    /// This process's file for `session`, which runs `command` in `workspace`.
    pub fn for_this_process(
        session: &SessionContext,
        command: &[String],
        workspace: &Path,
    ) -> std::io::Result<SessionFile> {
        let moat_pid = std::process::id();
        let moat_start = process_start(moat_pid).ok_or_else(|| {
            std::io::Error::other("cannot read this process's start time in /proc/self/stat")
        })?;
        Ok(SessionFile {
            session: session.id.clone(),
            agent: session.agent.clone(),
            operator: session.operator.clone(),
            command: command.to_vec(),
            workspace: workspace.display().to_string(),
            started: jiff::Timestamp::now().to_string(),
            moat_pid,
            moat_start,
            end_maybe_recorded: false,
            end: None,
        })
    }

    /// Writes the file into the session's directory `dir`; returns it open, for
    /// [`write_over`](Self::write_over).
    pub fn write(&self, dir: &Path) -> std::io::Result<std::fs::File> {
        use std::io::Write as _;
        let mut file = std::fs::File::create(dir.join(SESSION_FILE))?;
        file.write_all(self.to_json()?.as_bytes())?;
        Ok(file)
    }

    /// Writes this over `file`, as [`write`](Self::write) returned it: from its start, cut to
    /// the new length. A file that only grows (by its end) is not truncated: ext4 writes a file
    /// out as it is closed after it was truncated (`auto_da_alloc`), which cost a session's
    /// end 0.14 ms here when the file was rewritten whole. A reader at that moment may find a
    /// mix of both versions, which it skips as unreadable ([`read`](Self::read)).
    pub fn write_over(&self, file: &std::fs::File) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let json = self.to_json()?;
        file.write_all_at(json.as_bytes(), 0)?;
        let len = json.len() as u64;
        if file.metadata()?.len() > len {
            file.set_len(len)?;
        }
        Ok(())
    }

    fn to_json(&self) -> std::io::Result<String> {
        serde_json::to_string_pretty(self).map_err(std::io::Error::other)
    }

    /// The file in the session's directory `dir`; `None` when it is not there (yet, or any
    /// more) or unreadable.
    pub fn read(dir: &Path) -> Option<SessionFile> {
        let bytes = std::fs::read(dir.join(SESSION_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether `moat_pid` is still the session's `moat run`.
    pub fn is_running(&self) -> bool {
        process_start(self.moat_pid) == Some(self.moat_start)
    }
}

/// Removes the session file from the session's directory `dir`, before its end is recorded;
/// false when it was not there.
pub fn remove_session_file(dir: &Path) -> bool {
    std::fs::remove_file(dir.join(SESSION_FILE)).is_ok()
}

/// Removes a session's directory `dir` from the blocking pool, off the runtime's threads:
/// freeing its blocks can wait for the disk (a discard, on a file system mounted with
/// `discard`: a gate thread waited up to 8 ms for one here), and a runtime thread that waits
/// holds up every session it serves.
pub async fn remove_session_dir(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

/// The sessions of the data directory whose `moat run` runs, oldest first.
pub fn running_sessions(data_dir: &Path) -> std::io::Result<Vec<SessionFile>> {
    let mut sessions: Vec<SessionFile> = session_files(data_dir)?
        .into_iter()
        .map(|(_, file)| file)
        .filter(SessionFile::is_running)
        .collect();
    sessions.sort_by(|a, b| a.started.cmp(&b.started));
    Ok(sessions)
}

/// Records the end of each session left without one on record (its file is still there, its
/// `moat run` is gone) and removes its directory; returns the ids. `held` names the sessions a
/// running gate holds open, which it ends itself: they are left alone. A session is claimed by
/// removing its file, so that two gates starting at once record one end. An end that cannot be
/// recorded is logged, and that session is not tried again.
pub async fn end_abandoned_sessions(
    data_dir: &Path,
    audit: &AuditLog,
    held: impl Fn(&str) -> bool,
) -> Vec<String> {
    let files = match session_files(data_dir) {
        Ok(files) => files,
        Err(err) => {
            tracing::warn!(error = %err, "cannot look for abandoned sessions");
            return Vec::new();
        }
    };
    let mut ended = Vec::new();
    for (dir, file) in files {
        if file.is_running() || held(&file.session) || !remove_session_file(&dir) {
            continue;
        }
        let maybe_recorded = file.end_maybe_recorded || file.end.is_some();
        if maybe_recorded && end_on_record(audit, &file.session).await {
            remove_session_dir(dir).await;
            tracing::info!(session = %file.session, "abandoned session's end was on record already");
            continue;
        }
        let end = file.end.clone().unwrap_or_else(|| SessionEnd {
            time: jiff::Timestamp::now(),
            session: file.session.clone(),
            exit_code: None,
            signal: None,
            duration_ms: 0,
            user_cpu_ms: 0,
            system_cpu_ms: 0,
            max_rss_kib: 0,
            reason: Some(format!(
                "abandoned: no end was recorded (its moat run, pid {}, or its gate stopped without recording one); found by a later gate",
                file.moat_pid
            )),
        });
        match audit.append(Event::SessionEnd(end)).await {
            Ok(_) => {
                remove_session_dir(dir).await;
                tracing::info!(session = %file.session, pid = file.moat_pid, "abandoned session ended");
                ended.push(file.session);
            }
            Err(err) => {
                tracing::error!(session = %file.session, error = %err, "abandoned session's end not recorded");
            }
        }
    }
    ended
}

/// Whether the end of `session` is on record. A log that cannot be searched counts as not:
/// a second end (the gate's, and one found later) is better than a start without one.
async fn end_on_record(audit: &AuditLog, session: &str) -> bool {
    let (audit, id) = (audit.clone(), session.to_owned());
    // A scan of the whole log: off the runtime's threads.
    let searched = tokio::task::spawn_blocking(move || audit.session_end_recorded(&id))
        .await
        .map_err(|err| err.to_string())
        .and_then(|found| found.map_err(|err| err.to_string()));
    searched.unwrap_or_else(|err| {
        tracing::warn!(session, error = %err, "cannot search the log for the session's end; recording one");
        false
    })
}

/// How long [`settle`] waits, at most, for the ends a running gate was handed.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until the gate running on `data_dir` has on record every session end handed to it so
/// far ([`SessionFile::end`]): it removes such a session's directory once the end is on record.
/// A reader of the log waits first, so that the sessions whose `moat run` has returned show
/// their ends. Returns at once when no gate answers on the data directory (the next one
/// records those ends); after `timeout`, the sessions whose ends are still not on record.
pub fn settle(data_dir: &Path, timeout: Duration) -> Result<(), Vec<String>> {
    let mut pending: Vec<(PathBuf, String)> = session_files(data_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, file)| file.end.is_some())
        .map(|(dir, file)| (dir, file.session))
        .collect();
    if pending.is_empty() || connect_unix(&data_dir.join(CONTROL_SOCKET)).is_err() {
        return Ok(());
    }
    // Only those directories are looked at again: an end handed over later is not waited for.
    let deadline = Instant::now() + timeout;
    loop {
        pending.retain(|(dir, _)| dir.exists());
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(pending.into_iter().map(|(_, session)| session).collect());
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// How often [`settle`] looks again.
const SETTLE_POLL: Duration = Duration::from_millis(2);

/// Each session directory of the data directory with its file (a file that names another
/// session than its directory does is not the session's).
fn session_files(data_dir: &Path) -> std::io::Result<Vec<(PathBuf, SessionFile)>> {
    let entries = match std::fs::read_dir(sessions_dir(data_dir)) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    Ok(entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter_map(|dir| SessionFile::read(&dir).map(|file| (dir, file)))
        .filter(|(dir, file)| dir.file_name().is_some_and(|name| *name == *file.session))
        .collect())
}

/// When process `pid` started, in clock ticks after boot (`/proc/PID/stat`, field 22); `None`
/// when there is no such process.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses.
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_running_and_a_changed_start_is_not() {
        let session = SessionContext {
            id: "s1".to_owned(),
            agent: "agent".to_owned(),
            operator: "alice".to_owned(),
        };
        let mut file = SessionFile::for_this_process(&session, &[], Path::new("/w")).unwrap();
        assert!(file.is_running());
        file.moat_start += 1;
        assert!(!file.is_running());
    }
}
