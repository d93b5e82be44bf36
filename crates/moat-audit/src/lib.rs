//! moat's audit store: a tamper-evident Merkle log of gate decisions and sessions in SQLite (WAL,
//! `synchronous=FULL`) or PostgreSQL (`synchronous_commit = on`), written *before* the gate
//! answers. Appends from concurrent requests are group-committed by one writer thread: one
//! transaction and one fsync per batch.
//!
//! Each event is stored as canonical JSON (RFC 8785, [`canonical`]); those bytes are a leaf of
//! an RFC 6962 Merkle tree ([`merkle`]: SHA-256, `0x00` leaf and `0x01` node prefixes) whose
//! complete subtrees are stored beside the events, and each batch ends with a checkpoint signed
//! with the log's Ed25519 key as a C2SP signed note ([`note`]), all in the batch's transaction.
//! Each checkpoint also names the SHA-256 of the previous signed note (one extension line,
//! `previous <base64>`): the checkpoints form one chain, so removing or altering any of them
//! breaks a link, and verification checks the newest signature and follows the chain instead of
//! checking one signature per batch.
//! The key lives beside a SQLite store (`audit.key`, mode 0600, created on first open), and for a
//! PostgreSQL log in the gate's data directory, never in the database; its key name is the log's
//! origin. [`AuditLog::verify`] recomputes everything; inclusion and consistency
//! proofs come from stored hashes; [`verify_bundle`] checks one event offline with only the
//! public key.
//!
//! Guarantees: [`AuditLog::append`] answers `Ok(seq)` only after the event's transaction (event,
//! tree nodes, signed checkpoint) is committed and fsynced; any store or writer failure is an
//! `Err` (never a silent success, never a hang). [`AuditLog::record_decision`], the gate's way
//! in, also answers `Ok` for an answer identical to a committed decision, counted and tallied
//! a second later ([`tally`]: a crash loses at most those counts, never a decision). Sequence
//! numbers are 1-based, gapless and ascending; leaf indexes are `seq - 1`. The crate exposes no
//! update or delete, and SQLite triggers abort any `UPDATE` or `DELETE` made behind its back;
//! the proofs, not the triggers, are the protection. Opening a store whose tree does not match its last signed checkpoint
//! fails, so the writer never signs on top of a tampered history.
//!
//! Storage (schema version 3, `PRAGMA user_version`): `events(seq, time, kind, ecosystem,
//! package, version, action, body)`, `body` being the leaf, the other columns for
//! [`AuditLog::list`] filters; `nodes(last, level, idx, hash)`, keyed by the last leaf a node
//! covers so that appends write only the B-tree's rightmost pages; `checkpoints(size, note)`.
//! The writer converts a version-2 store (nodes keyed by `(level, idx)`) when it opens it;
//! readers read either. A version-1 store is refused with a message saying to move it aside; it
//! is not converted.
//!
//! PostgreSQL ([`AuditLog::open_postgres`], selected by a `postgres://` [`StoreLocation`]) is for
//! fleets where several gates share one log: the same tables and columns as SQLite's version 2
//! (`bytea` hashes), a
//! `moat_audit_schema(version)` record, triggers aborting UPDATE, DELETE and TRUNCATE. Each batch
//! takes the log's advisory lock in its transaction and continues from wherever the log ends
//! (another gate may have appended), so sequence numbers stay gapless across gates. **Every gate
//! writing one log must hold the same signing key** (copy `audit.key` to each gate's data
//! directory): a gate with another key refuses to open the log, or fails its batch when it
//! finds a checkpoint it cannot verify. The gates should connect as a role granted only
//! `SELECT, INSERT` on the tables (see [`POSTGRES_SCHEMA`] for the grants); the first open, as
//! the owner, creates the schema. Connections are not encrypted (no TLS): use a Unix socket,
//! loopback or a trusted network.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::postgres::{PgReader, PgWriter, off_runtime};
use crate::schema::NodeKey;
use crate::store::{Lite, Pg, Read};
use crate::tally::{Seen, Tally};
use crate::writer::{Command, Counters, Row, Sink};

pub mod canonical;
pub mod export;
pub mod merkle;
pub mod note;
mod postgres;
pub mod record;
mod schema;
mod store;
pub mod tally;
mod tree;
mod verify;
mod writer;

pub use crate::merkle::{Hash, ProofError};
pub use crate::note::{Checkpoint, NoteError, SignerKey, VerifierKey};
pub use crate::postgres::SCHEMA as POSTGRES_SCHEMA;
pub use crate::store::{PostgresUrl, StoreLocation};
pub use crate::tree::{
    BundleError, ConsistencyProof, InclusionProof, ProofBundle, SignedCheckpoint, verify_bundle,
};
pub use crate::verify::{Problem, VerifyReport};
pub use crate::writer::{CHANNEL_CAPACITY, MAX_BATCH};

/// The signing key's file name, in the store's directory (SQLite) or the gate's data directory
/// (PostgreSQL).
pub const KEY_FILE: &str = "audit.key";

/// Where the signing key of the SQLite store at `store` lives: `audit.key` beside it.
pub fn key_path(store: &Path) -> PathBuf {
    store::sqlite_key_path(store)
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
    /// Set on a tally ([`tally`]): this event stands for `count` answers identical to the
    /// decision recorded as `of`, given from `time` to `last`, not for one answer of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<Repeats>,
}

impl DecisionEvent {
    /// How many answers this event stands for: 1, or a tally's count.
    pub fn answers(&self) -> u64 {
        self.repeats.as_ref().map_or(1, |repeats| repeats.count)
    }

    /// When the last answer it stands for was given.
    pub fn last_time(&self) -> jiff::Timestamp {
        self.repeats
            .as_ref()
            .map_or(self.time, |repeats| repeats.last)
    }
}

/// What a tally event counts: answers identical to an earlier recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Repeats {
    /// The seq of the decision these answers repeat.
    pub of: u64,
    /// How many answers, the first at the event's `time`.
    pub count: u64,
    /// When the last of them was given.
    pub last: jiff::Timestamp,
}

/// How [`AuditLog::record_decision`] records repeated answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepeatMode {
    /// Count answers identical to a recorded decision and append the counts a second later
    /// ([`tally`]).
    #[default]
    Tally,
    /// Append every answer in full.
    Record,
}

/// What [`AuditLog::record_decision`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Appended in full, as this seq.
    Appended(u64),
    /// Counted as a repeat of a committed decision, to be tallied.
    Counted,
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
    /// The workspace directory (host path), which the agent may write.
    pub workspace: String,
    /// Host paths the agent may read (`--ro`), as the sandbox binds them. Absent from records
    /// without any (and from every record written before it was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// The `kind` of an [`Event::SessionEnd`].
const SESSION_END_KIND: &str = "session-end";

impl Event {
    /// The event's type as stored in the `kind` column and the JSON `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Decision(_) => "decision",
            Event::SessionStart(_) => "session-start",
            Event::SessionEnd(_) => SESSION_END_KIND,
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
    /// The store refused (disk full, read-only, corrupt, locked, unreachable server).
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
    location: StoreLocation,
    key_path: PathBuf,
    /// `None` when opened read-only.
    writer: Option<mpsc::Sender<Command>>,
    /// The signing key's public half; `None` when opened read-only (read from the key file
    /// when asked for).
    verifier: Option<VerifierKey>,
    reader: Reader,
    counters: Arc<Counters>,
    tally: Tally,
    /// [`RepeatMode::Tally`] when set.
    tallying: AtomicBool,
}

/// The connection reads go through.
enum Reader {
    Sqlite(Mutex<Connection>, NodeKey),
    /// On a thread of its own (see `postgres.rs`).
    Postgres(PgReader),
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("location", &self.inner.location)
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
        AuditLog::open_sqlite(path, &key_path(path))
    }

    /// Open an existing store for reading (listing, proofs, verification) without starting a
    /// writer (for `moat audit` beside a running gate). Appends fail with
    /// [`AuditError::ReadOnly`].
    pub fn open_read_only(path: &Path) -> Result<AuditLog, AuditError> {
        let location = StoreLocation::Sqlite(path.to_owned());
        AuditLog::open_location_read_only(&location, &key_path(path))
    }

    /// Open the log at `location` for writing, its signing key at `key_path` (see
    /// [`StoreLocation::key_path`]).
    pub fn open_location(
        location: &StoreLocation,
        key_path: &Path,
    ) -> Result<AuditLog, AuditError> {
        match location {
            StoreLocation::Sqlite(path) => AuditLog::open_sqlite(path, key_path),
            StoreLocation::Postgres(url) => AuditLog::open_postgres(url, key_path),
        }
    }

    /// Open the log at `location` for reading; the signing key, when asked for, is read from
    /// `key_path`.
    pub fn open_location_read_only(
        location: &StoreLocation,
        key_path: &Path,
    ) -> Result<AuditLog, AuditError> {
        match location {
            StoreLocation::Sqlite(path) => {
                let (reader, key) = schema::open_reader(path)?;
                Ok(AuditLog::new(
                    location.clone(),
                    key_path.to_owned(),
                    None,
                    None,
                    Reader::Sqlite(Mutex::new(reader), key),
                    Arc::default(),
                ))
            }
            StoreLocation::Postgres(url) => AuditLog::open_postgres_read_only(url, key_path),
        }
    }

    fn open_sqlite(path: &Path, key_path: &Path) -> Result<AuditLog, AuditError> {
        let conn = schema::open_writer(path)?;
        // The writer's connection has converted the store to the current schema.
        let has_checkpoint = tree::last_checkpoint(&mut Lite(&conn, NodeKey::LastLeaf))?.is_some();
        let key = signing_key(key_path, has_checkpoint)?;
        let verifier = key.verifier();
        let frontier = tree::check_head(&mut Lite(&conn, NodeKey::LastLeaf), &verifier)?;
        let (reader, node_key) = schema::open_reader(path)?;
        let counters = Arc::new(Counters::default());
        let writer = writer::spawn(Sink::Sqlite(conn), key, frontier, Arc::clone(&counters))?;
        Ok(AuditLog::new(
            StoreLocation::Sqlite(path.to_owned()),
            key_path.to_owned(),
            Some(writer),
            Some(verifier),
            Reader::Sqlite(Mutex::new(reader), node_key),
            counters,
        ))
    }

    /// Open (creating the schema if the database has none) the PostgreSQL log at `url`, start
    /// the writer thread. The signing key is read from `key_path` (in the gate's data
    /// directory), or created there (mode 0600) when there is none and the log is empty; every
    /// gate writing the log must have the same key. Fails if the server cannot be reached, the
    /// database holds another schema, the key is missing or another than the one that signed
    /// the log, or the tree does not match its last signed checkpoint.
    pub fn open_postgres(url: &PostgresUrl, key_path: &Path) -> Result<AuditLog, AuditError> {
        let (sink, key, frontier) = off_runtime(|| {
            let mut client = postgres::open_writer(url)?;
            let has_checkpoint = tree::last_checkpoint(&mut Pg(&mut client))?.is_some();
            let key = signing_key(key_path, has_checkpoint)?;
            let frontier = tree::check_head(&mut Pg(&mut client), &key.verifier())?;
            let sink = PgWriter::new(url, client, key.verifier())?;
            Ok::<_, AuditError>((Box::new(sink), key, frontier))
        })?;
        let verifier = key.verifier();
        let counters = Arc::new(Counters::default());
        // From here on the client lives on the writer thread; it must not be dropped here.
        let writer = writer::spawn(Sink::Postgres(sink), key, frontier, Arc::clone(&counters))?;
        let reader = PgReader::start(url)?;
        Ok(AuditLog::new(
            StoreLocation::Postgres(url.clone()),
            key_path.to_owned(),
            Some(writer),
            Some(verifier),
            Reader::Postgres(reader),
            counters,
        ))
    }

    /// Open the PostgreSQL log at `url` for reading, without a writer; the signing key, when
    /// asked for ([`verifier`](Self::verifier)), is read from `key_path`.
    pub fn open_postgres_read_only(
        url: &PostgresUrl,
        key_path: &Path,
    ) -> Result<AuditLog, AuditError> {
        let reader = PgReader::start(url)?;
        Ok(AuditLog::new(
            StoreLocation::Postgres(url.clone()),
            key_path.to_owned(),
            None,
            None,
            Reader::Postgres(reader),
            Arc::default(),
        ))
    }

    fn new(
        location: StoreLocation,
        key_path: PathBuf,
        writer: Option<mpsc::Sender<Command>>,
        verifier: Option<VerifierKey>,
        reader: Reader,
        counters: Arc<Counters>,
    ) -> AuditLog {
        let inner = Inner {
            location,
            key_path,
            writer,
            verifier,
            reader,
            counters,
            tally: Tally::default(),
            tallying: AtomicBool::new(true),
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

    /// How [`record_decision`](Self::record_decision) records repeated answers from now on
    /// (default [`RepeatMode::Tally`]).
    pub fn set_repeat_mode(&self, mode: RepeatMode) {
        self.inner
            .tallying
            .store(mode == RepeatMode::Tally, Ordering::Relaxed);
    }

    /// Record the decision behind one answer: `Ok` means the answer may be given. The decision
    /// is appended in full ([`append`](Self::append)), unless an identical one (but for its
    /// time) is already committed and remembered: then the answer is only counted, and the
    /// counts are appended a second later as a tally event ([`tally`]). Must be called within
    /// a Tokio runtime (the tally is written by a task of its own).
    pub async fn record_decision(&self, event: DecisionEvent) -> Result<Recorded, AuditError> {
        // A repeat is answered on the strength of its committed record only while the log
        // still takes appends: once the writer is gone, nothing is answered.
        if self.writer()?.is_closed() {
            return Err(AuditError::WriterGone);
        }
        if !self.inner.tallying.load(Ordering::Relaxed) {
            return self
                .append(Event::Decision(event))
                .await
                .map(Recorded::Appended);
        }
        let event = match self.inner.tally.see(event) {
            Seen::Counted { schedule } => {
                if schedule {
                    let log = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(tally::INTERVAL).await;
                        if let Err(err) = log.flush_repeats().await {
                            tracing::error!(error = %err, "cannot append the tally of repeated answers");
                        }
                    });
                }
                return Ok(Recorded::Counted);
            }
            Seen::New(event) => event,
        };
        let appended = self.append(Event::Decision(event.clone())).await;
        let seq = appended.inspect_err(|_| {
            // The store is failing: no more answers on the strength of earlier records.
            self.inner.tally.forget();
        })?;
        self.inner.tally.remember(event, seq);
        Ok(Recorded::Appended(seq))
    }

    /// Append the tallies of the answers counted so far (see [`tally`]), in one batch. Called
    /// every second while answers are counted, before a session's end is recorded, and by
    /// [`shutdown`](Self::shutdown). The counts are gone from memory either way: on `Err`
    /// they are lost, the error says how many answers, and every remembered decision is
    /// forgotten, so that the next answers wait for full appends (which fail while the store
    /// does).
    pub async fn flush_repeats(&self) -> Result<(), AuditError> {
        let tallies = self.inner.tally.take(jiff::Timestamp::now());
        if tallies.is_empty() {
            return Ok(());
        }
        let answers: u64 = tallies.iter().map(DecisionEvent::answers).sum();
        let events = tallies.into_iter().map(Event::Decision).collect();
        self.append_all(events).await.map(drop).map_err(|err| {
            self.inner.tally.forget();
            AuditError::Store(format!(
                "{err} (repeated answers whose count is lost: {answers})"
            ))
        })
    }

    /// Append `events` in one batch where the writer can: all are queued before any reply is
    /// awaited. Their seqs, in order.
    pub async fn append_all(&self, events: Vec<Event>) -> Result<Vec<u64>, AuditError> {
        let writer = self.writer()?;
        let mut answers = Vec::with_capacity(events.len());
        for event in &events {
            let (reply, answer) = oneshot::channel();
            let row = Row::encode(event)?;
            writer
                .send(Command::Append { row, reply })
                .await
                .map_err(|_| AuditError::WriterGone)?;
            answers.push(answer);
        }
        let mut seqs = Vec::with_capacity(answers.len());
        for answer in answers {
            seqs.push(answer.await.map_err(|_| AuditError::WriterGone)??);
        }
        Ok(seqs)
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
    /// Answers are no longer counted from here on, and those counted are appended first.
    pub async fn shutdown(&self) {
        let Some(writer) = &self.inner.writer else {
            return;
        };
        self.inner.tally.close();
        if let Err(err) = self.flush_repeats().await {
            tracing::error!(error = %err, "cannot append the tally of repeated answers");
        }
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
        let query = query.clone();
        let rows = self.read(move |store| store.list(&query))?;
        let mut events = rows
            .into_iter()
            .map(|(seq, body)| decode(seq, &body))
            .collect::<Result<Vec<_>, _>>()?;
        events.reverse();
        Ok(events)
    }

    /// Up to `limit` events with a sequence number above `after`, oldest first: the way to read
    /// the whole log in pages (exports, the system of record), without holding it in memory.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, AuditError> {
        Ok(self
            .leaves_after(after, limit)?
            .into_iter()
            .map(|(stored, _)| stored)
            .collect())
    }

    /// [`events_after`](Self::events_after), each event with its leaf: the stored canonical
    /// JSON, byte for byte as the tree hashes it (for exports that let others recompute roots).
    pub fn leaves_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(StoredEvent, String)>, AuditError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read(move |store| store.events_after(after, limit))?;
        rows.into_iter()
            .map(|(seq, body)| Ok((decode(seq, &body)?, body)))
            .collect()
    }

    /// Whether the end of session `session` is on record. A scan of the log (there is no index),
    /// for the rare gate that must know before it records an end, such as one for a session
    /// whose close got no answer because its gate died.
    pub fn session_end_recorded(&self, session: &str) -> Result<bool, AuditError> {
        let text = session.to_owned();
        let rows = self.read(move |store| store.containing(SESSION_END_KIND, &text))?;
        for (seq, body) in rows {
            // The text may appear elsewhere in a body (a reason, a command): only the field counts.
            if matches!(decode(seq, &body)?.event, Event::SessionEnd(end) if end.session == session)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// How many events the log holds (sequence numbers are gapless, so also the last one).
    pub fn count(&self) -> Result<u64, AuditError> {
        self.read(|store| store.last_seq())
    }

    /// Batches and events committed through this handle (and its clones) since it was opened.
    pub fn stats(&self) -> AppendStats {
        AppendStats {
            batches: self.inner.counters.batches.load(Ordering::Relaxed),
            events: self.inner.counters.events.load(Ordering::Relaxed),
        }
    }

    /// The file this handle reads and writes; for a PostgreSQL log, its signing key file.
    pub fn path(&self) -> &Path {
        match &self.inner.location {
            StoreLocation::Sqlite(path) => path,
            StoreLocation::Postgres(_) => &self.inner.key_path,
        }
    }

    /// Where the log is stored.
    pub fn location(&self) -> &StoreLocation {
        &self.inner.location
    }

    /// The signing key's file.
    pub fn key_path(&self) -> &Path {
        &self.inner.key_path
    }

    /// Run `read` on this handle's reader connection.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut dyn Read) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        match &self.inner.reader {
            Reader::Sqlite(conn, key) => {
                // A panic while reading leaves the connection itself usable.
                let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                read(&mut Lite(&conn, *key))
            }
            Reader::Postgres(reader) => reader.run(move |client| read(&mut Pg(client))),
        }
    }

    /// Run `read` on one snapshot of the log (one read transaction).
    fn read_snapshot<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut dyn Read) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        match &self.inner.reader {
            Reader::Sqlite(conn, key) => {
                let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                let tx = conn
                    .unchecked_transaction()
                    .map_err(|e| AuditError::Store(format!("cannot start a read: {e}")))?;
                read(&mut Lite(&tx, *key))
            }
            Reader::Postgres(reader) => reader.run_snapshot(move |tx| read(tx)),
        }
    }
}

/// The signing key at `path`: loaded, or created when there is none and the log has no
/// checkpoint yet (a new key cannot vouch for existing checkpoints).
fn signing_key(path: &Path, has_checkpoint: bool) -> Result<SignerKey, AuditError> {
    if has_checkpoint && !path.exists() {
        return Err(AuditError::Key(format!(
            "{} is missing but the log has signed checkpoints: restore it from a backup \
             (a new key cannot vouch for them)",
            path.display()
        )));
    }
    let loaded = if path.exists() {
        SignerKey::load(path)
    } else {
        SignerKey::load_or_generate(path)
    };
    loaded.map_err(|e| AuditError::Key(e.to_string()))
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
            repeats: None,
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

    fn start(read_only: &[&str]) -> Event {
        Event::SessionStart(SessionStart {
            time: "2026-01-02T03:04:05Z".parse().unwrap(),
            session: "s1".to_owned(),
            operator: "alice".to_owned(),
            agent: "claude".to_owned(),
            command: vec!["claude".to_owned()],
            workspace: "/work/app".to_owned(),
            read_only: read_only.iter().map(|path| (*path).to_owned()).collect(),
            backend: "embedded".to_owned(),
            policy: "e654dbd9f62733c2".to_owned(),
            host: "build-1".to_owned(),
            enforced: vec!["landlock".to_owned()],
            waived: Vec::new(),
        })
    }

    #[test]
    fn a_start_without_read_only_paths_is_stored_as_before_they_were_kept() {
        // The body is the Merkle leaf: a start without `--ro` paths must encode exactly as
        // every start written before the field existed, and such a body must still decode.
        let before = r#"{"agent":"claude","backend":"embedded","command":["claude"],"enforced":["landlock"],"host":"build-1","operator":"alice","policy":"e654dbd9f62733c2","session":"s1","time":"2026-01-02T03:04:05Z","type":"session-start","waived":[],"workspace":"/work/app"}"#;
        assert_eq!(canonical::to_canonical(&start(&[])).unwrap(), before);
        assert_eq!(decode(1, before).unwrap().event, start(&[]));

        let with = canonical::to_canonical(&start(&["/srv/docs"])).unwrap();
        assert!(with.contains(r#""read_only":["/srv/docs"]"#), "{with}");
        assert_eq!(decode(2, &with).unwrap().event, start(&["/srv/docs"]));
    }

    #[test]
    fn unreadable_body_is_an_error_naming_the_seq() {
        let error = decode(3, "{not json").unwrap_err().to_string();
        assert!(error.contains("event 3 is unreadable"), "{error}");
    }
}
