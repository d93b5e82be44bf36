//! SQLite schema versions. Version 3 keys tree nodes by the last leaf they cover; a version-2
//! store (nodes keyed by `(level, idx)`, as a moat before it wrote them) is read as it is by a
//! reader, which must not convert it (an older gate may still be writing it), and converted by
//! the writer, the same log verifying before and after.

use moat_audit::{AuditLog, verify_bundle};
use rusqlite::Connection;

use crate::decision;

/// Lay the nodes out as schema version 2 did, as an older moat left the store.
fn downgrade_to_version_2(path: &std::path::Path) {
    Connection::open(path)
        .expect("open the store")
        .execute_batch(
            "CREATE TABLE nodes_v2 (
                 level INTEGER NOT NULL,
                 idx   INTEGER NOT NULL,
                 hash  BLOB NOT NULL,
                 PRIMARY KEY (level, idx)
             ) WITHOUT ROWID;
             INSERT INTO nodes_v2 (level, idx, hash) SELECT level, idx, hash FROM nodes;
             DROP TRIGGER nodes_no_update;
             DROP TRIGGER nodes_no_delete;
             DROP TABLE nodes;
             ALTER TABLE nodes_v2 RENAME TO nodes;
             CREATE TRIGGER nodes_no_update BEFORE UPDATE ON nodes
             BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
             CREATE TRIGGER nodes_no_delete BEFORE DELETE ON nodes
             BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
             PRAGMA user_version = 2;",
        )
        .expect("downgrade");
}

fn user_version(path: &std::path::Path) -> i64 {
    Connection::open(path)
        .expect("open the store")
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version")
}

/// Every leaf's proof against the newest checkpoint, checked with only the public key.
fn every_proof_verifies(log: &AuditLog, key: &moat_audit::VerifierKey, size: u64) {
    for index in 0..size {
        let bundle = log.prove(index).expect("prove");
        verify_bundle(&bundle, key).unwrap_or_else(|e| panic!("leaf {index}: {e}"));
    }
}

/// Every inclusion proof in the tree of 37 leaves, and consistency proofs from each smaller
/// tree to it, as hash lists.
fn proofs(log: &AuditLog) -> Vec<Vec<moat_audit::merkle::Hash>> {
    let inclusion = (0..37).map(|index| {
        log.inclusion_proof(index, Some(37))
            .expect("inclusion")
            .proof
    });
    let consistency =
        (1..37).map(|from| log.consistency_proof(from, 37).expect("consistency").proof);
    inclusion.chain(consistency).collect()
}

#[tokio::test]
async fn a_version_2_store_is_read_as_it_is_and_converted_by_the_writer() {
    let (_dir, path, log) = crate::store();
    // Appended one at a time: 37 batches, a tree with nodes on six levels.
    for i in 0..37 {
        log.append(decision("npm", &format!("package-{i}"), "allow"))
            .await
            .expect("append");
    }
    let key = log.verifier().expect("verifier");
    let root = log
        .checkpoint()
        .expect("checkpoint")
        .expect("one")
        .checkpoint
        .root;
    log.shutdown().await;
    drop(log);
    downgrade_to_version_2(&path);

    let reader = AuditLog::open_read_only(&path).expect("a reader opens a version-2 store");
    let report = reader.verify(&key, None).expect("verify runs");
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!((report.size, report.root), (37, root));
    every_proof_verifies(&reader, &key, 37);
    let before = proofs(&reader);
    drop(reader);
    assert_eq!(user_version(&path), 2, "a reader never converts");

    let log = AuditLog::open(&path).expect("the writer converts a version-2 store");
    assert_eq!(user_version(&path), 3);
    assert_eq!(
        proofs(&log),
        before,
        "the same tree, read through the new key"
    );
    let keyed_by_last_leaf: i64 = Connection::open(&path)
        .expect("open")
        .query_row(
            "SELECT COUNT(*) FROM nodes WHERE last = ((idx + 1) << level) - 1",
            [],
            |row| row.get(0),
        )
        .expect("count");
    let nodes: i64 = Connection::open(&path)
        .expect("open")
        .query_row("SELECT COUNT(*) FROM nodes", [], |row| row.get(0))
        .expect("count");
    assert_eq!(keyed_by_last_leaf, nodes);
    for i in 37..50 {
        log.append(decision("npm", &format!("package-{i}"), "block"))
            .await
            .expect("append after the conversion");
    }
    let report = AuditLog::open_read_only(&path)
        .expect("reader")
        .verify(&key, None)
        .expect("verify runs");
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.size, 50);
    every_proof_verifies(&log, &key, 50);
}
