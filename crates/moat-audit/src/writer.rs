//! The writer thread: owns the write connection and group-commits queued appends, one
//! transaction (and one fsync) per batch, on SQLite or PostgreSQL ([`Sink`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, SignerKey, note_hash};
use crate::postgres::PgWriter;
use crate::schema::NodeKey;
use crate::store::{Lite, Read as _};
use crate::{AuditError, Event, SessionEnd, SessionStart, canonical, tree};

/// How many appends may wait for the writer before `append` itself waits (backpressure).
pub const CHANNEL_CAPACITY: usize = 4096;

/// The most appends written in one transaction.
pub const MAX_BATCH: usize = 1024;

const INSERT: &str =
    "INSERT INTO events (seq, time, kind, ecosystem, package, version, action, body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// The node's key, its last leaf, is computed from its level and index (see `schema::NodeKey`).
const INSERT_NODE: &str =
    "INSERT INTO nodes (last, level, idx, hash) VALUES (((?2 + 1) << ?1) - 1, ?1, ?2, ?3)";

/// The newest checkpoint note, which the batch's own checkpoint chains to.
const LAST_NOTE: &str = "SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1";

const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (size, note) VALUES (?1, ?2)";

/// An event encoded for storage, done by the caller so the writer thread only writes.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) time: String,
    pub(crate) kind: &'static str,
    pub(crate) ecosystem: Option<String>,
    pub(crate) package: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) action: Option<String>,
    /// The event as canonical JSON: the leaf.
    pub(crate) body: String,
    pub(crate) leaf: Hash,
}

impl Row {
    pub(crate) fn encode(event: &Event) -> Result<Row, AuditError> {
        let body = canonical::to_canonical(event)
            .map_err(|e| AuditError::Store(format!("cannot encode event: {e}")))?;
        let leaf = leaf_hash(body.as_bytes());
        let row = match event {
            Event::Decision(decision) => Row {
                time: decision.time.to_string(),
                kind: event.kind(),
                ecosystem: Some(decision.ecosystem.clone()),
                package: Some(decision.package.clone()),
                version: decision.version.clone(),
                action: Some(decision.action.clone()),
                body,
                leaf,
            },
            Event::SessionStart(SessionStart { time, .. })
            | Event::SessionEnd(SessionEnd { time, .. }) => Row {
                time: time.to_string(),
                kind: event.kind(),
                ecosystem: None,
                package: None,
                version: None,
                action: None,
                body,
                leaf,
            },
        };
        Ok(row)
    }
}

/// A request to the writer thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// Write this row; answer with its sequence number once committed.
    Append {
        row: Row,
        reply: oneshot::Sender<Result<u64, AuditError>>,
    },
    /// Finish the batch in hand, close the connection, then answer.
    Shutdown { done: oneshot::Sender<()> },
}

/// Counts of committed work, for benchmarks and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) events: AtomicU64,
}

pub(crate) type Pending = (Row, oneshot::Sender<Result<u64, AuditError>>);

/// Where the writer writes.
pub(crate) enum Sink {
    /// This writer is the only one: it knows where the log ends.
    Sqlite(Connection),
    /// Other gates may append too: each batch reads where the log ends, under the log's lock.
    Postgres(Box<PgWriter>),
}

/// Start the writer thread on `sink`; the returned sender is its only way in.
/// `frontier` is the tree as stored, already checked against the last checkpoint.
pub(crate) fn spawn(
    sink: Sink,
    key: SignerKey,
    frontier: Frontier,
    counters: Arc<Counters>,
) -> Result<mpsc::Sender<Command>, AuditError> {
    let next_seq = frontier.size() + 1;
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let writer = Writer {
        sink,
        next_seq,
        frontier,
        key,
        counters,
    };
    std::thread::Builder::new()
        .name("moat-audit-writer".to_owned())
        .spawn(move || writer.run(receiver))
        .map_err(|e| AuditError::Store(format!("cannot start the audit writer thread: {e}")))?;
    Ok(sender)
}

struct Writer {
    sink: Sink,
    /// The sequence number of the next row (SQLite; PostgreSQL reads it per batch); only
    /// advanced after a commit.
    next_seq: u64,
    /// The tree as committed (`size == next_seq - 1`); only advanced after a commit.
    frontier: Frontier,
    key: SignerKey,
    counters: Arc<Counters>,
}

impl Writer {
    /// Serve until every sender is dropped, a shutdown arrives, or the store is unusable.
    /// Returning drops the receiver: queued and later appends then fail with `WriterGone`.
    fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = receiver.blocking_recv() {
            let mut shutdown = None;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append { row, reply } => batch.push((row, reply)),
                    Command::Shutdown { done } => {
                        shutdown = Some(done);
                        break;
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = receiver.try_recv().ok();
                }
            }
            let healthy = batch.is_empty() || self.commit(&mut batch);
            if let Some(done) = shutdown {
                drop(receiver);
                match self.sink {
                    Sink::Sqlite(conn) => drop(conn.close()),
                    Sink::Postgres(writer) => drop(writer),
                }
                let _ = done.send(());
                return;
            }
            if !healthy {
                return;
            }
        }
    }

    /// Write and answer one batch; false when the connection can no longer be trusted.
    fn commit(&mut self, batch: &mut Vec<Pending>) -> bool {
        let written = match &mut self.sink {
            Sink::Sqlite(conn) => {
                write_sqlite(conn, self.next_seq, &self.frontier, batch, &self.key)
                    .map(|frontier| (self.next_seq, frontier))
                    .map_err(|e| AuditError::Store(e.to_string()))
            }
            Sink::Postgres(writer) => writer.write(&self.frontier, batch, &self.key),
        };
        match written {
            Ok((first, frontier)) => {
                self.frontier = frontier;
                let count = batch.len() as u64;
                self.next_seq = first + count;
                // Counted before answering: a caller that got its seq sees its batch counted.
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters.events.fetch_add(count, Ordering::Relaxed);
                for (offset, (_, reply)) in batch.drain(..).enumerate() {
                    // A caller that stopped waiting still has its event recorded.
                    let _ = reply.send(Ok(first + offset as u64));
                }
                true
            }
            Err(error) => {
                let message = error.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(AuditError::Store(message.clone())));
                }
                self.recover()
            }
        }
    }

    /// After a failed batch (rolled back when its transaction dropped): re-read where the log
    /// ends, since a failed commit may still have reached the disk. False if that is impossible.
    /// A PostgreSQL writer reads where the log ends at every batch, and reconnects if needed.
    fn recover(&mut self) -> bool {
        let Sink::Sqlite(conn) = &self.sink else {
            return true;
        };
        if !conn.is_autocommit() {
            return false;
        }
        let Ok(last) = Lite(conn, NodeKey::LastLeaf).last_seq() else {
            return false;
        };
        if last == self.frontier.size() {
            self.next_seq = last + 1;
            return true;
        }
        match tree::load_frontier(&mut Lite(conn, NodeKey::LastLeaf), last) {
            Ok(frontier) => {
                self.frontier = frontier;
                self.next_seq = last + 1;
                true
            }
            Err(_) => false,
        }
    }
}

/// Write the batch, its tree nodes and its signed checkpoint in one SQLite transaction; the tree
/// after it, to be kept once committed.
fn write_sqlite(
    conn: &mut Connection,
    first: u64,
    committed: &Frontier,
    batch: &[Pending],
    key: &SignerKey,
) -> rusqlite::Result<Frontier> {
    let mut frontier = committed.clone();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        let mut insert_node = tx.prepare_cached(INSERT_NODE)?;
        for (offset, (row, _)) in batch.iter().enumerate() {
            let seq = i64::try_from(first + offset as u64)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            insert.execute(params![
                seq,
                row.time,
                row.kind,
                row.ecosystem,
                row.package,
                row.version,
                row.action,
                row.body,
            ])?;
            frontier.push(row.leaf, |level, index, hash| {
                let index = i64::try_from(index)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                insert_node.execute(params![level, index, hash.0.as_slice()])?;
                Ok::<_, rusqlite::Error>(())
            })?;
        }
        let previous: Option<String> = tx
            .prepare_cached(LAST_NOTE)?
            .query_row([], |row| row.get(0))
            .optional()?;
        let checkpoint = Checkpoint {
            origin: key.name().to_owned(),
            size: frontier.size(),
            root: frontier.root(),
            previous: previous.as_deref().map(note_hash),
        };
        let note = key.sign(&checkpoint.to_text());
        let size = i64::try_from(checkpoint.size)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        tx.prepare_cached(INSERT_CHECKPOINT)?
            .execute(params![size, note])?;
    }
    tx.commit()?;
    Ok(frontier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DecisionEvent;

    #[test]
    fn decision_fills_the_filter_columns() {
        let event = Event::Decision(DecisionEvent {
            time: "2026-01-02T03:04:05Z".parse().unwrap(),
            identity: "anonymous@127.0.0.1".to_owned(),
            ecosystem: "PyPI".to_owned(),
            package: "requests".to_owned(),
            version: None,
            request: "metadata".to_owned(),
            action: "allow".to_owned(),
            rules: Vec::new(),
            advisories: Vec::new(),
            approved: Vec::new(),
            message: None,
            repeats: None,
        });
        let row = Row::encode(&event).unwrap();
        assert_eq!(row.time, "2026-01-02T03:04:05Z");
        assert_eq!(row.kind, "decision");
        assert_eq!(row.ecosystem.as_deref(), Some("PyPI"));
        assert_eq!(row.package.as_deref(), Some("requests"));
        assert_eq!(row.version, None);
        assert_eq!(row.action.as_deref(), Some("allow"));
        let decoded: Event = serde_json::from_str(&row.body).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(row.leaf, leaf_hash(row.body.as_bytes()));
        assert!(
            row.body
                .starts_with("{\"action\":\"allow\",\"advisories\":[]"),
            "{}",
            row.body
        );
    }
}
