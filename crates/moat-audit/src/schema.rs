//! Opening the SQLite file: pragmas, the schema and its version.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::AuditError;

/// The schema this crate writes, stored in `PRAGMA user_version`.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// How long a connection waits for another one's lock before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 2: the events (`body` is the event as canonical JSON, the leaf of the Merkle tree;
/// the columns beside it exist for filtering), the tree's complete subtrees (`nodes`, level 0
/// being the leaf hashes) and one signed checkpoint per committed batch. All three tables are
/// append-only. There is deliberately no secondary index: each one cost the group-committing
/// writer about 40% of its throughput (`cargo bench -p moat-audit`), and `list` is a rare scan.
/// Query tables for the system of record are derived from the log, not maintained on its
/// write path.
const SCHEMA_V2: &str = "
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
CREATE TABLE nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER nodes_no_update BEFORE UPDATE ON nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
CREATE TRIGGER nodes_no_delete BEFORE DELETE ON nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
PRAGMA user_version = 2;
";

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

/// Open a read-only connection on an existing store.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, AuditError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let error = |e: rusqlite::Error| {
        AuditError::Store(format!("cannot open {} for reading: {e}", path.display()))
    };
    let conn = Connection::open_with_flags(path, flags).map_err(error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    let version = user_version(&conn).map_err(error)?;
    if version == 1 {
        return Err(version_one(path));
    }
    if version != SCHEMA_VERSION {
        return Err(AuditError::Store(format!(
            "{} is not a moat audit store of schema version {SCHEMA_VERSION} (found {version})",
            path.display()
        )));
    }
    Ok(conn)
}

/// Create the schema in an empty file; refuse versions this crate does not know.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), AuditError> {
    let error =
        |e: rusqlite::Error| AuditError::Store(format!("cannot set up {}: {e}", path.display()));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(error)?;
    match user_version(&tx).map_err(error)? {
        0 => tx.execute_batch(SCHEMA_V2).map_err(error)?,
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
         moat writes version 2 and does not convert it: move it aside (e.g. to audit-v1.db, \
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
        assert_eq!(user_version(&open_reader(&path).unwrap()).unwrap(), 2);
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
