//! Integration tests of the audit store through its public API and, where a test must get
//! around that API, a raw connection on the same store. Most run on SQLite and on PostgreSQL
//! (see `backend.rs`).

#[macro_use]
mod backend;

mod append;
mod failure;
mod list;
mod postgres;
mod record;
mod repeats;
mod schema;
mod tamper;
mod vectors;

use std::path::PathBuf;

use moat_audit::{AuditLog, DecisionEvent, Event, SessionEnd};

/// A decision on `ecosystem`/`package` with `action`, otherwise fixed.
pub fn decision(ecosystem: &str, package: &str, action: &str) -> Event {
    Event::Decision(DecisionEvent {
        time: "2026-01-02T03:04:05Z".parse().expect("timestamp"),
        identity: "anonymous@127.0.0.1".to_owned(),
        ecosystem: ecosystem.to_owned(),
        package: package.to_owned(),
        version: Some("1.0.0".to_owned()),
        request: "artifact".to_owned(),
        action: action.to_owned(),
        rules: Vec::new(),
        advisories: Vec::new(),
        approved: Vec::new(),
        message: None,
        repeats: None,
    })
}

/// The end of `session` at `time` (RFC 3339), exit code 0, with `reason`.
pub fn session_end(session: &str, time: &str, reason: Option<&str>) -> Event {
    Event::SessionEnd(SessionEnd {
        time: time.parse().expect("timestamp"),
        session: session.to_owned(),
        exit_code: Some(0),
        signal: None,
        duration_ms: 1000,
        user_cpu_ms: 10,
        system_cpu_ms: 5,
        max_rss_kib: 1024,
        reason: reason.map(str::to_owned),
    })
}

/// A fresh store in its own temporary directory (kept alive by the returned guard).
pub fn store() -> (tempfile::TempDir, PathBuf, AuditLog) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("audit.db");
    let log = AuditLog::open(&path).expect("open a fresh store");
    (dir, path, log)
}

/// The package name of a stored decision (empty for other events).
pub fn package(event: &Event) -> &str {
    match event {
        Event::Decision(decision) => &decision.package,
        Event::SessionStart(_) | Event::SessionEnd(_) => "",
    }
}
