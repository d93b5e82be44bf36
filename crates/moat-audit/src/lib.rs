//! moat's audit store: a tamper-evident Merkle log of gate decisions and sessions in SQLite (WAL,
//! `synchronous=FULL`), written *before* the gate answers. Appends from concurrent requests are
//! group-committed by one writer thread: one transaction and one fsync per batch.
//!
//! Each event is stored as canonical JSON (RFC 8785, [`canonical`]); those bytes are a leaf of
//! an RFC 6962 Merkle tree ([`merkle`]: SHA-256, `0x00` leaf and `0x01` node prefixes) whose
//! complete subtrees are stored beside the events, and each batch ends with a checkpoint signed
//! with the log's Ed25519 key as a C2SP signed note ([`note`]), all in the batch's transaction.
//! The key lives beside the store (`audit.key`, mode 0600, created on first open); its key name
//! is the log's origin. [`AuditLog::verify`] recomputes everything; inclusion and consistency
//! proofs come from stored hashes; [`verify_bundle`] checks one event offline with only the
//! public key.
//!
//! Guarantees: [`AuditLog::append`] answers `Ok(seq)` only after the event's transaction (event,
//! tree nodes, signed checkpoint) is committed and fsynced; any store or writer failure is an
//! `Err` (never a silent success, never a hang). Sequence numbers are 1-based, gapless and
//! ascending; leaf indexes are `seq - 1`. The crate exposes no update or delete, and SQLite
//! triggers abort any `UPDATE` or `DELETE` made behind its back; the proofs, not the triggers,
//! are the protection. Opening a store whose tree does not match its last signed checkpoint
//! fails, so the writer never signs on top of a tampered history.
//!
//! Storage (schema version 2, `PRAGMA user_version`): `events(seq, time, kind, ecosystem,
//! package, version, action, body)`, `body` being the leaf, the other columns for
//! [`AuditLog::list`] filters; `nodes(level, idx, hash)`; `checkpoints(size, note)`. A version-1
//! store is refused with a message saying to move it aside; it is not converted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, ToSql};
use tokio::sync::{mpsc, oneshot};

use crate::writer::{Command, Counters, Row};

pub mod canonical;
pub mod merkle;
pub mod note;
mod schema;
mod tree;
mod verify;
mod writer;

pub use crate::merkle::{Hash, ProofError};
pub use crate::note::{Checkpoint, NoteError, SignerKey, VerifierKey};
pub use crate::tree::{
    BundleError, ConsistencyProof, InclusionProof, ProofBundle, SignedCheckpoint, verify_bundle,
};
pub use crate::verify::{Problem, VerifyReport};
pub use crate::writer::{CHANNEL_CAPACITY, MAX_BATCH};

/// The signing key's file name, in the store's directory.
pub const KEY_FILE: &str = "audit.key";

/// Where the signing key of the store at `store` lives: `audit.key` beside it.
pub fn key_path(store: &Path) -> PathBuf {
    store.with_file_name(KEY_FILE)
}

/// One gate decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecisionEvent {
    /// When the decision was made.
    pub time: jiff::Timestamp,
    /// Who asked: `session:<id>` inside a `moat run` session, else `anonymous@<peer ip>`.
    pub identity: String,
    /// `npm`, `PyPI`, `crates.io`.
    pub ecosystem: String,
    /// Package name as requested.
    pub package: String,
    /// Version, when the request named one (tarball, version document).
    pub version: Option<String>,
    /// What was asked: `metadata`, `version`, `artifact`, `why`.
    pub request: String,
    /// `allow`, `warn` or `block`.
    pub action: String,
    /// Rule ids that fired (unwaived), e.g. `moat.vulnerable`.
    pub rules: Vec<String>,
    /// Advisory ids involved.
    pub advisories: Vec<String>,
    /// Approved versions offered instead.
    pub approved: Vec<String>,
    /// The block message, when blocked.
    pub message: Option<String>,
}

/// An agent session (`moat run`) began: recorded before the agent starts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionStart {
    /// When the session began.
    pub time: jiff::Timestamp,
    /// The session id; gate decisions in it carry `identity = "session:<id>"`.
    pub session: String,
    /// Who runs the agent (`--operator`, default the host user).
    pub operator: String,
    /// Which agent (`--agent`).
    pub agent: String,
    /// The agent's command line.
    pub command: Vec<String>,
    /// The workspace directory (host path).
    pub workspace: String,
    /// `embedded`, `podman`, `docker`.
    pub backend: String,
    /// The policy revision the gate decides with.
    pub policy: String,
    /// The host the session runs on.
    pub host: String,
    /// Isolation properties and limits that hold for this session.
    pub enforced: Vec<String>,
    /// Properties the operator waived with a `--dangerously-…` flag.
    pub waived: Vec<String>,
}

/// An agent session ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionEnd {
    /// When the session ended.
    pub time: jiff::Timestamp,
    /// The session id.
    pub session: String,
    /// The agent's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did (a timeout kill included).
    pub signal: Option<i32>,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
    /// CPU time in user mode, milliseconds.
    pub user_cpu_ms: u64,
    /// CPU time in kernel mode, milliseconds.
    pub system_cpu_ms: u64,
    /// Peak resident memory, KiB.
    pub max_rss_kib: u64,
    /// Why the session ended, when not by the agent's own exit (`timeout`, `stopped`).
    pub reason: Option<String>,
}

/// Anything the audit log records.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// A gate decision.
    Decision(DecisionEvent),
    /// A `moat run` session began.
    SessionStart(SessionStart),
    /// A `moat run` session ended.
    SessionEnd(SessionEnd),
}

impl Event {
    /// The event's type as stored in the `kind` column and the JSON `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Decision(_) => "decision",
            Event::SessionStart(_) => "session-start",
            Event::SessionEnd(_) => "session-end",
        }
    }

    /// When the event happened.
    pub fn time(&self) -> jiff::Timestamp {
        match self {
            Event::Decision(decision) => decision.time,
            Event::SessionStart(start) => start.time,
            Event::SessionEnd(end) => end.time,
        }
    }
}

/// An event as stored: its sequence number (1-based, gapless) and the event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredEvent {
    /// Position in the log.
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// Filters for [`AuditLog::list`]; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Newest N events (default: all).
    pub limit: Option<usize>,
    /// Only this ecosystem.
    pub ecosystem: Option<String>,
    /// Only this package.
    pub package: Option<String>,
    /// Only this action (`allow`, `warn`, `block`).
    pub action: Option<String>,
}

/// Why the audit store failed. The gate turns any of these into a 503: no record, no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// SQLite refused (disk full, read-only, corrupt, locked).
    #[error("audit store error: {0}")]
    Store(String),
    /// The writer thread is gone (shut down or crashed).
    #[error("audit writer is not running")]
    WriterGone,
    /// The store was opened with [`AuditLog::open_read_only`]; it cannot append.
    #[error("audit store is open read-only")]
    ReadOnly,
    /// The signing key is missing, unreadable or not private.
    #[error("audit signing key: {0}")]
    Key(String),
    /// A proof was asked for an index or size outside the log.
    #[error("{0}")]
    OutOfRange(String),
}

/// Committed work since the store was opened by this handle: appends per fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendStats {
    /// Transactions committed (one fsync each).
    pub batches: u64,
    /// Events committed.
    pub events: u64,
}

/// A handle on the audit store; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` when opened read-only.
    writer: Option<mpsc::Sender<Command>>,
    /// The signing key's public half; `None` when opened read-only (read from the key file
    /// when asked for).
    verifier: Option<VerifierKey>,
    reader: Mutex<Connection>,
    counters: Arc<Counters>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.inner.path)
            .field("writable", &self.inner.writer.is_some())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Open (creating if needed) the store at `path`, start the writer thread.
    ///
    /// The parent directory must exist. The signing key is read from `audit.key` beside the
    /// store, or created (mode 0600) when there is none and the log is empty. Fails if the file
    /// cannot be created or written, is not a moat audit store, has another schema version, its
    /// key is missing or readable by others, or its tree does not match its last signed
    /// checkpoint.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let conn = schema::open_writer(path)?;
        let key_path = key_path(path);
        let has_checkpoint = tree::last_checkpoint(&conn)?.is_some();
        let key = if has_checkpoint && !key_path.exists() {
            return Err(AuditError::Key(format!(
                "{} is missing but the log has signed checkpoints: restore it from a backup \
                 (a new key cannot vouch for them)",
                key_path.display()
            )));
        } else if key_path.exists() {
            SignerKey::load(&key_path).map_err(|e| AuditError::Key(e.to_string()))?
        } else {
            SignerKey::load_or_generate(&key_path).map_err(|e| AuditError::Key(e.to_string()))?
        };
        let verifier = key.verifier();
        let frontier = tree::check_head(&conn, &verifier)?;
        let reader = schema::open_reader(path)?;
        let counters = Arc::new(Counters::default());
        let writer = writer::spawn(conn, key, frontier, Arc::clone(&counters))?;
        Ok(AuditLog::new(
            path,
            Some(writer),
            Some(verifier),
            reader,
            counters,
        ))
    }

    /// Open an existing store for reading (listing, proofs, verification) without starting a
    /// writer (for `moat audit` beside a running gate). Appends fail with
    /// [`AuditError::ReadOnly`].
    pub fn open_read_only(path: &Path) -> Result<AuditLog, AuditError> {
        let reader = schema::open_reader(path)?;
        Ok(AuditLog::new(path, None, None, reader, Arc::default()))
    }

    fn new(
        path: &Path,
        writer: Option<mpsc::Sender<Command>>,
        verifier: Option<VerifierKey>,
        reader: Connection,
        counters: Arc<Counters>,
    ) -> AuditLog {
        let inner = Inner {
            path: path.to_owned(),
            writer,
            verifier,
            reader: Mutex::new(reader),
            counters,
        };
        AuditLog {
            inner: Arc::new(inner),
        }
    }

    /// Append one event durably (committed and fsynced) and return its sequence number.
    /// Concurrent appends share one transaction.
    ///
    /// `Ok` only after the commit; any failure of the store or the writer is an `Err`, to this
    /// append and to every other append of the same batch. If the future is dropped after the
    /// event was queued, the event may still be recorded.
    pub async fn append(&self, event: Event) -> Result<u64, AuditError> {
        let writer = self.writer()?;
        let (reply, answer) = oneshot::channel();
        let row = Row::encode(&event)?;
        writer
            .send(Command::Append { row, reply })
            .await
            .map_err(|_| AuditError::WriterGone)?;
        answer.await.map_err(|_| AuditError::WriterGone)?
    }

    /// [`append`](Self::append) for synchronous callers; blocks the thread until committed.
    ///
    /// # Panics
    ///
    /// When called from within an asynchronous runtime (use `append` there).
    pub fn append_blocking(&self, event: Event) -> Result<u64, AuditError> {
        let writer = self.writer()?;
        let (reply, answer) = oneshot::channel();
        let row = Row::encode(&event)?;
        writer
            .blocking_send(Command::Append { row, reply })
            .map_err(|_| AuditError::WriterGone)?;
        answer.blocking_recv().map_err(|_| AuditError::WriterGone)?
    }

    /// Stop the writer after the appends already queued ahead of this call, and close the write
    /// connection. Later appends, from any clone, fail with [`AuditError::WriterGone`].
    /// Does nothing when the writer is already gone or the store is read-only.
    pub async fn shutdown(&self) {
        let Some(writer) = &self.inner.writer else {
            return;
        };
        let (done, finished) = oneshot::channel();
        if writer.send(Command::Shutdown { done }).await.is_ok() {
            let _ = finished.await;
        }
    }

    fn writer(&self) -> Result<&mpsc::Sender<Command>, AuditError> {
        self.inner.writer.as_ref().ok_or(AuditError::ReadOnly)
    }

    /// Events matching `query`, oldest first (with `limit`: the newest N, still oldest first).
    /// Reads through its own connection; works while a gate is writing.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<StoredEvent>, AuditError> {
        let mut sql = String::from("SELECT seq, body FROM events WHERE 1 = 1");
        let mut params: Vec<&dyn ToSql> = Vec::new();
        let filters = [
            ("ecosystem", &query.ecosystem),
            ("package", &query.package),
            ("action", &query.action),
        ];
        for (column, value) in filters {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                params.push(value);
            }
        }
        // SQLite reads a negative limit as "no limit".
        let limit = query
            .limit
            .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        params.push(&limit);

        let error = |e: rusqlite::Error| AuditError::Store(format!("cannot list events: {e}"));
        let reader = self.reader();
        let mut statement = reader.prepare_cached(&sql).map_err(error)?;
        let rows = statement
            .query_map(params.as_slice(), |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(error)?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, body) = row.map_err(error)?;
            events.push(decode(seq, &body)?);
        }
        events.reverse();
        Ok(events)
    }

    /// Up to `limit` events with a sequence number above `after`, oldest first: the way to read
    /// the whole log in pages (exports, the system of record), without holding it in memory.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, AuditError> {
        let error = |e: rusqlite::Error| AuditError::Store(format!("cannot read events: {e}"));
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let reader = self.reader();
        let mut statement = reader
            .prepare_cached("SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(error)?;
        let rows = statement
            .query_map([after, limit], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(error)?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, body) = row.map_err(error)?;
            events.push(decode(seq, &body)?);
        }
        Ok(events)
    }

    /// How many events the log holds (sequence numbers are gapless, so also the last one).
    pub fn count(&self) -> Result<u64, AuditError> {
        schema::last_seq(&self.reader())
            .map_err(|e| AuditError::Store(format!("cannot count events: {e}")))
    }

    /// Batches and events committed through this handle (and its clones) since it was opened.
    pub fn stats(&self) -> AppendStats {
        AppendStats {
            batches: self.inner.counters.batches.load(Ordering::Relaxed),
            events: self.inner.counters.events.load(Ordering::Relaxed),
        }
    }

    /// The file this handle reads and writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while listing leaves the connection itself usable.
        self.inner
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn decode(seq: i64, body: &str) -> Result<StoredEvent, AuditError> {
    let event = serde_json::from_str(body)
        .map_err(|e| AuditError::Store(format!("event {seq} is unreadable: {e}")))?;
    let seq = u64::try_from(seq)
        .map_err(|_| AuditError::Store(format!("event {seq} has a negative sequence number")))?;
    Ok(StoredEvent { seq, event })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked() -> Event {
        Event::Decision(DecisionEvent {
            time: "2026-01-02T03:04:05Z".parse().unwrap(),
            identity: "anonymous@127.0.0.1".to_owned(),
            ecosystem: "npm".to_owned(),
            package: "event-stream".to_owned(),
            version: Some("3.3.6".to_owned()),
            request: "artifact".to_owned(),
            action: "block".to_owned(),
            rules: vec!["moat.malicious".to_owned()],
            advisories: vec!["GHSA-mh6f-8j2x-4483".to_owned()],
            approved: vec!["3.3.5".to_owned()],
            message: Some("event-stream 3.3.6 is malicious".to_owned()),
        })
    }

    #[test]
    fn stored_body_is_tagged_json() {
        let body = serde_json::to_string_pretty(&blocked()).unwrap();
        insta::assert_snapshot!(body, @r#"
        {
          "type": "decision",
          "time": "2026-01-02T03:04:05Z",
          "identity": "anonymous@127.0.0.1",
          "ecosystem": "npm",
          "package": "event-stream",
          "version": "3.3.6",
          "request": "artifact",
          "action": "block",
          "rules": [
            "moat.malicious"
          ],
          "advisories": [
            "GHSA-mh6f-8j2x-4483"
          ],
          "approved": [
            "3.3.5"
          ],
          "message": "event-stream 3.3.6 is malicious"
        }
        "#);
    }

    #[test]
    fn body_decodes_back_to_the_event() {
        let body = serde_json::to_string(&blocked()).unwrap();
        let stored = decode(7, &body).unwrap();
        assert_eq!(stored.seq, 7);
        assert_eq!(stored.event, blocked());
        assert_eq!(stored.event.kind(), "decision");
    }

    #[test]
    fn unreadable_body_is_an_error_naming_the_seq() {
        let error = decode(3, "{not json").unwrap_err().to_string();
        assert!(error.contains("event 3 is unreadable"), "{error}");
    }
}
