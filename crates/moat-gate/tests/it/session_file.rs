//! Session files: a session whose `moat run` died with its file in place gets its end when a
//! gate starts, once (the one the file holds, when it holds one); a running session, one still
//! opening, one a running gate holds, and a file that is not its directory's are left alone.
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
    // Its `moat run` has gone, and the gate that holds it records its end.
    SessionFile {
        session: "held".to_owned(),
        ..dead.clone()
    }
    .write(&dir("held"))
    .unwrap();
    let held = |id: &str| id == "held";
    dir("opening");
    // A file in another session's directory names no session of that directory.
    let misplaced = SessionFile {
        session: "elsewhere".to_owned(),
        ..dead.clone()
    };
    misplaced.write(&dir("misplaced")).unwrap();

    let ended = end_abandoned_sessions(data_dir.path(), &audit, held).await;
    assert_eq!(ended, ["dead"]);
    assert!(!sessions.join("dead").exists());
    assert!(sessions.join("running").join(SESSION_FILE).exists());
    assert!(sessions.join("held").join(SESSION_FILE).exists());
    assert!(sessions.join("opening").exists());
    assert!(sessions.join("misplaced").join(SESSION_FILE).exists());
    assert!(
        end_abandoned_sessions(data_dir.path(), &audit, held)
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

/// A session's end that `moat run` handed to its running gate (`exit_code`).
fn handed_end(session: &str, exit_code: i32) -> moat_audit::SessionEnd {
    moat_audit::SessionEnd {
        time: jiff::Timestamp::now(),
        session: session.to_owned(),
        exit_code: Some(exit_code),
        signal: None,
        duration_ms: 5,
        user_cpu_ms: 1,
        system_cpu_ms: 2,
        max_rss_kib: 3,
        reason: None,
    }
}

/// A session whose running gate died while the session ended may have its end on record (the
/// gate recorded it and died before it answered, or before it removed the file holding the
/// end it was handed): the next gate records an end only when the log has none, so that no
/// session has two; and the end the file holds, when it holds one.
#[tokio::test]
async fn an_end_that_may_be_on_record_is_looked_for_before_one_is_recorded() {
    let data_dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(&data_dir.path().join("audit.db")).unwrap();
    let template = exited("template", data_dir.path());
    let files = [
        ("recorded", true, None),
        ("missing", true, None),
        (
            "handed-recorded",
            false,
            Some(handed_end("handed-recorded", 0)),
        ),
        (
            "handed-missing",
            false,
            Some(handed_end("handed-missing", 3)),
        ),
    ];
    for (id, end_maybe_recorded, end) in files.clone() {
        let dir = data_dir.path().join("sessions").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        SessionFile {
            session: id.to_owned(),
            end_maybe_recorded,
            end,
            ..template.clone()
        }
        .write(&dir)
        .unwrap();
    }
    // The dead gates' ends of "recorded" and "handed-recorded".
    for id in ["recorded", "handed-recorded"] {
        audit
            .append(Event::SessionEnd(handed_end(id, 0)))
            .await
            .unwrap();
    }

    let mut ended = end_abandoned_sessions(data_dir.path(), &audit, |_| false).await;
    ended.sort();
    assert_eq!(ended, ["handed-missing", "missing"]);
    let sessions = data_dir.path().join("sessions");
    for (id, ..) in files {
        assert!(!sessions.join(id).exists(), "{id}");
    }
    let ends: Vec<moat_audit::SessionEnd> = audit
        .list(&ListQuery::default())
        .unwrap()
        .into_iter()
        .filter_map(|stored| match stored.event {
            Event::SessionEnd(end) => Some(end),
            Event::Decision(_) | Event::SessionStart(_) => None,
        })
        .collect();
    let sessions: Vec<&str> = ends.iter().map(|end| end.session.as_str()).collect();
    assert_eq!(sessions.len(), 4, "{ends:?}");
    assert_eq!(sessions[..2], ["recorded", "handed-recorded"]);
    let of = |id: &str| ends.iter().find(|end| end.session == id).unwrap();
    let missing = of("missing").reason.as_deref().unwrap_or_default();
    assert!(missing.starts_with("abandoned: "), "{ends:?}");
    // The handed-over end, as `moat run` reported it: the agent's status and usage.
    let handed = of("handed-missing");
    assert_eq!(handed.exit_code, Some(3));
    assert_eq!(
        (handed.user_cpu_ms, handed.system_cpu_ms, handed.max_rss_kib),
        (1, 2, 3)
    );
    assert_eq!(handed.reason, None);
}
