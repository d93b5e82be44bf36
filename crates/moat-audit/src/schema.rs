//! Opening the SQLite file: pragmas, the schema and its version.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::AuditError;

/// The schema this crate writes, stored in `PRAGMA user_version`.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// How long a connection waits for another one's lock before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a store keys its tree nodes: the one difference between schema versions 2 and 3, which
/// readers of either must know to find a node by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKey {
    /// Version 2: `PRIMARY KEY (level, idx)`. A batch's new nodes land on one page per level of
    /// the tree, so each commit wrote about twice the pages it needed to.
    LevelIndex,
    /// Version 3: `PRIMARY KEY (last, level)`, `last` being the last leaf the node covers,
    /// `((idx + 1) << level) - 1`. Every node an append creates covers the new leaf last, so a
    /// batch writes only the B-tree's rightmost pages: the gate served 7% more audited requests
    /// per second with it (BENCHMARKS.md). `idx` stays a column, for readers and ad-hoc SQL.
    LastLeaf,
}

/// Version 3's `nodes` table and its append-only triggers, for [`SCHEMA_V3`] and [`V2_TO_V3`].
macro_rules! nodes_v3 {
    () => {
        "
CREATE TABLE nodes (
    last  INTEGER NOT NULL,
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (last, level)
) WITHOUT ROWID;
CREATE TRIGGER nodes_no_update BEFORE UPDATE ON nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
CREATE TRIGGER nodes_no_delete BEFORE DELETE ON nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
"
    };
}

/// Version 3: the events (`body` is the event as canonical JSON, the leaf of the Merkle tree;
/// the columns beside it exist for filtering), the tree's complete subtrees (`nodes`, level 0
/// being the leaf hashes; see [`NodeKey::LastLeaf`] for its key) and one signed checkpoint per
/// committed batch. All three tables are append-only. There is deliberately no secondary index:
/// each one cost the group-committing writer about 40% of its throughput (`cargo bench -p
/// moat-audit`), and `list` is a rare scan. Query tables for the system of record are derived
/// from the log, not maintained on its write path.
const SCHEMA_V3: &str = concat!(
    "
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    time      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    ecosystem TEXT,
    package   TEXT,
    version   TEXT,
    action    TEXT,
    body      TEXT NOT NULL
);
CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
",
    nodes_v3!(),
    "PRAGMA user_version = 3;"
);

/// Version 2 to 3: the same node rows, keyed by `(last, level)`. Nothing signed changes (a
/// node's key is not part of any hash), so the log verifies as before.
const V2_TO_V3: &str = concat!(
    "
DROP TRIGGER nodes_no_update;
DROP TRIGGER nodes_no_delete;
ALTER TABLE nodes RENAME TO nodes_v2;
",
    nodes_v3!(),
    "
INSERT INTO nodes (last, level, idx, hash)
    SELECT ((idx + 1) << level) - 1, level, idx, hash FROM nodes_v2 ORDER BY 1, 2;
DROP TABLE nodes_v2;
PRAGMA user_version = 3;
"
);

/// Open (creating if needed) the writer's connection: WAL, `synchronous=FULL`, schema in place.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, AuditError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let error = |e: rusqlite::Error| {
        AuditError::Store(format!("cannot open {} for writing: {e}", path.display()))
    };
    let mut conn = Connection::open_with_flags(path, flags).map_err(error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::Store(format!(
            "cannot enable WAL on {} (journal mode is {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(error)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Open a read-only connection on an existing store of version 2 or 3 (a reader never
/// converts: an older gate may still be writing a version-2 store), and how it keys its nodes.
pub(crate) fn open_reader(path: &Path) -> Result<(Connection, NodeKey), AuditError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let error = |e: rusqlite::Error| {
        AuditError::Store(format!("cannot open {} for reading: {e}", path.display()))
    };
    let conn = Connection::open_with_flags(path, flags).map_err(error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    let key = match user_version(&conn).map_err(error)? {
        1 => return Err(version_one(path)),
        2 => NodeKey::LevelIndex,
        SCHEMA_VERSION => NodeKey::LastLeaf,
        version => {
            return Err(AuditError::Store(format!(
                "{} is not a moat audit store of schema version 2 or {SCHEMA_VERSION} (found {version})",
                path.display()
            )));
        }
    };
    Ok((conn, key))
}

/// Create the schema in an empty file, convert a version-2 store, refuse versions this crate
/// does not know.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), AuditError> {
    let error =
        |e: rusqlite::Error| AuditError::Store(format!("cannot set up {}: {e}", path.display()));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(error)?;
    match user_version(&tx).map_err(error)? {
        0 => tx.execute_batch(SCHEMA_V3).map_err(error)?,
        2 => {
            tracing::info!(path = %path.display(), "converting the audit store to schema version 3 (tree nodes keyed by their last leaf)");
            tx.execute_batch(V2_TO_V3).map_err(error)?;
        }
        SCHEMA_VERSION => {}
        1 => return Err(version_one(path)),
        other => {
            return Err(AuditError::Store(format!(
                "{} has schema version {other}; this moat supports {SCHEMA_VERSION}",
                path.display()
            )));
        }
    }
    tx.commit().map_err(error)
}

/// A version-1 store is not converted: re-signing its events now would vouch for a history
/// that nothing protected when it was written.
fn version_one(path: &Path) -> AuditError {
    AuditError::Store(format!(
        "{} is an audit log of schema version 1 (no Merkle tree, no signed checkpoints); this \
         moat writes version 3 and does not convert it: move it aside (e.g. to audit-v1.db, \
         still readable with sqlite3) and the next start creates a new, verifiable log",
        path.display()
    ))
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// The highest sequence number stored, 0 for an empty log.
pub(crate) fn last_seq(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
        row.get(0)
    })?;
    u64::try_from(seq).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_connection_is_wal_with_full_sync_and_versioned_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let conn = open_writer(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "2 is FULL");
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(last_seq(&conn).unwrap(), 0);
        drop(conn);

        // Opening again keeps the schema rather than recreating it.
        let again = open_writer(&path).unwrap();
        assert_eq!(user_version(&again).unwrap(), SCHEMA_VERSION);
        let (reader, key) = open_reader(&path).unwrap();
        assert_eq!(user_version(&reader).unwrap(), SCHEMA_VERSION);
        assert_eq!(key, NodeKey::LastLeaf);
    }

    #[test]
    fn reader_refuses_a_database_without_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let error = open_reader(&path).unwrap_err().to_string();
        assert!(error.contains("not a moat audit store"), "{error}");
    }
}

#[cfg(test)]
mod version_one_tests {
    use super::*;

    #[test]
    fn a_version_one_store_is_refused_with_a_way_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY); PRAGMA user_version = 1;",
            )
            .unwrap();
        for error in [
            open_writer(&path).unwrap_err(),
            open_reader(&path).unwrap_err(),
        ] {
            let message = error.to_string();
            assert!(message.contains("schema version 1"), "{message}");
            assert!(message.contains("move it aside"), "{message}");
        }
    }
}
