//! Session files: a session whose `moat run` died with its file in place gets its end when a
//! gate starts, once; a running session, one still opening, and a file that is not its
//! directory's are left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed test

use std::path::Path;

use moat_audit::{AuditLog, Event, ListQuery};
use moat_gate::SessionContext;
use moat_gate::session_file::{SESSION_FILE, SessionFile, end_abandoned_sessions};

/// Session `id`'s file as this process writes it, for a session in `workspace`.
fn this_process(id: &str, workspace: &Path) -> SessionFile {
    let session = SessionContext {
        id: id.to_owned(),
        agent: "claude".to_owned(),
        operator: "alice".to_owned(),
    };
    SessionFile::for_this_process(&session, &[], workspace).unwrap()
}

/// Session `id`'s file from a `moat run` that has exited: its pid names no process any more,
/// or another one since.
fn exited(id: &str, workspace: &Path) -> SessionFile {
    let mut exited = std::process::Command::new("true").spawn().unwrap();
    exited.wait().unwrap();
    SessionFile {
        moat_pid: exited.id(),
        ..this_process(id, workspace)
    }
}

#[tokio::test]
async fn abandoned_sessions_are_ended_once_and_running_ones_are_left() {
    let data_dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(&data_dir.path().join("audit.db")).unwrap();
    let sessions = data_dir.path().join("sessions");
    let dir = |id: &str| {
        let dir = sessions.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let running = this_process("running", data_dir.path());
    let dead = exited("dead", data_dir.path());
    dead.write(&dir("dead")).unwrap();
    running.write(&dir("running")).unwrap();
    dir("opening");
    // A file in another session's directory names no session of that directory.
    let misplaced = SessionFile {
        session: "elsewhere".to_owned(),
        ..dead.clone()
    };
    misplaced.write(&dir("misplaced")).unwrap();

    let ended = end_abandoned_sessions(data_dir.path(), &audit).await;
    assert_eq!(ended, ["dead"]);
    assert!(!sessions.join("dead").exists());
    assert!(sessions.join("running").join(SESSION_FILE).exists());
    assert!(sessions.join("opening").exists());
    assert!(sessions.join("misplaced").join(SESSION_FILE).exists());
    assert!(
        end_abandoned_sessions(data_dir.path(), &audit)
            .await
            .is_empty()
    );

    let events: Vec<Event> = audit
        .list(&ListQuery::default())
        .unwrap()
        .into_iter()
        .map(|stored| stored.event)
        .collect();
    let [Event::SessionEnd(end)] = events.as_slice() else {
        panic!("one end expected: {events:?}");
    };
    assert_eq!(end.session, "dead");
    assert_eq!(end.exit_code, None);
    let reason = end.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("abandoned: no end was recorded (its moat run, pid "),
        "{reason}"
    );
}

/// A session whose running gate died while the session ended may have its end on record (the
/// gate recorded it and died before it answered): the next gate records an end only when the log
/// has none, so that no session has two.
#[tokio::test]
async fn an_end_that_may_be_on_record_is_looked_for_before_one_is_recorded() {
    let data_dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(&data_dir.path().join("audit.db")).unwrap();
    let template = SessionFile {
        end_maybe_recorded: true,
        ..exited("template", data_dir.path())
    };
    for id in ["recorded", "missing"] {
        let dir = data_dir.path().join("sessions").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        SessionFile {
            session: id.to_owned(),
            ..template.clone()
        }
        .write(&dir)
        .unwrap();
    }
    // The dead gate's end of "recorded".
    audit
        .append(Event::SessionEnd(moat_audit::SessionEnd {
            time: jiff::Timestamp::now(),
            session: "recorded".to_owned(),
            exit_code: Some(0),
            signal: None,
            duration_ms: 5,
            user_cpu_ms: 0,
            system_cpu_ms: 0,
            max_rss_kib: 0,
            reason: None,
        }))
        .await
        .unwrap();

    let ended = end_abandoned_sessions(data_dir.path(), &audit).await;
    assert_eq!(ended, ["missing"]);
    let sessions = data_dir.path().join("sessions");
    assert!(!sessions.join("recorded").exists());
    assert!(!sessions.join("missing").exists());
    let ends: Vec<(String, Option<String>)> = audit
        .list(&ListQuery::default())
        .unwrap()
        .into_iter()
        .filter_map(|stored| match stored.event {
            Event::SessionEnd(end) => Some((end.session, end.reason)),
            Event::Decision(_) | Event::SessionStart(_) => None,
        })
        .collect();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert_eq!(ends[0], ("recorded".to_owned(), None));
    assert_eq!(ends[1].0, "missing");
    assert!(
        ends[1]
            .1
            .as_deref()
            .is_some_and(|reason| reason.starts_with("abandoned: ")),
        "{ends:?}"
    );
}
