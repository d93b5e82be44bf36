//! Tamper evidence: every kind of change to the stored log is found by `verify`, which names
//! the first bad index; a clean log verifies; proofs check offline with only the public key.
//! Tests get around the append-only triggers the way an attacker with the file would: by
//! dropping them first.

use std::path::Path;

use moat_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use moat_audit::{AuditLog, ProofBundle, VerifierKey, VerifyReport, verify_bundle};
use rusqlite::Connection;

use crate::{decision, store};

/// A log of `count` events, each appended alone (so each has its own checkpoint).
async fn filled(count: usize) -> (tempfile::TempDir, std::path::PathBuf, AuditLog) {
    let (dir, path, log) = store();
    for i in 0..count {
        let action = if i % 3 == 0 { "block" } else { "allow" };
        log.append(decision("npm", &format!("package-{i}"), action))
            .await
            .expect("append");
    }
    (dir, path, log)
}

/// A raw connection without the append-only triggers.
fn attacker(path: &Path) -> Connection {
    let raw = Connection::open(path).expect("raw connection");
    for table in ["events", "nodes", "checkpoints"] {
        raw.execute_batch(&format!(
            "DROP TRIGGER {table}_no_update; DROP TRIGGER {table}_no_delete;"
        ))
        .expect("drop triggers");
    }
    raw
}

fn verify(path: &Path, key: &VerifierKey, against: Option<&str>) -> VerifyReport {
    AuditLog::open_read_only(path)
        .expect("open read-only")
        .verify(key, against)
        .expect("verify runs")
}

fn assert_bad(report: &VerifyReport, index: u64, kind: &str) {
    assert!(!report.is_clean(), "tampering went unnoticed: {report:#?}");
    assert_eq!(report.first_bad_index, Some(index), "{report:#?}");
    assert!(
        report.problems.iter().any(|problem| problem.kind == kind),
        "no {kind} problem: {report:#?}"
    );
}

#[tokio::test]
async fn a_clean_log_verifies() {
    let (_dir, path, log) = filled(10).await;
    let key = log.verifier().unwrap();
    let report = verify(&path, &key, None);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.size, 10);
    assert_eq!(report.checkpoints, 10);
    let latest = log.checkpoint().unwrap().unwrap();
    assert_eq!(report.root, latest.checkpoint.root);
    // And against its own latest checkpoint.
    assert!(verify(&path, &key, Some(&latest.note)).is_clean());
}

#[tokio::test]
async fn an_edited_event_is_found_by_its_index() {
    let (_dir, path, log) = filled(10).await;
    attacker(&path)
        .execute(
            "UPDATE events SET body = replace(body, '\"allow\"', '\"block\"') WHERE seq = 5",
            [],
        )
        .unwrap();
    assert_bad(
        &verify(&path, &log.verifier().unwrap(), None),
        4,
        "leaf-mismatch",
    );
}

#[tokio::test]
async fn a_deleted_event_is_found_by_its_index() {
    let (_dir, path, log) = filled(10).await;
    attacker(&path)
        .execute("DELETE FROM events WHERE seq = 7", [])
        .unwrap();
    assert_bad(
        &verify(&path, &log.verifier().unwrap(), None),
        6,
        "event-missing",
    );
}

#[tokio::test]
async fn reordered_events_are_found_by_the_first_moved_index() {
    let (_dir, path, log) = filled(10).await;
    let raw = attacker(&path);
    // Swap two events by renumbering them.
    raw.execute_batch(
        "UPDATE events SET seq = -3 WHERE seq = 3;
         UPDATE events SET seq = 3 WHERE seq = 8;
         UPDATE events SET seq = 8 WHERE seq = -3;",
    )
    .unwrap();
    assert_bad(
        &verify(&path, &log.verifier().unwrap(), None),
        2,
        "leaf-mismatch",
    );
}

#[tokio::test]
async fn a_truncated_log_is_found_by_its_first_missing_index() {
    let (_dir, path, log) = filled(10).await;
    let key = log.verifier().unwrap();
    let saved = log.checkpoint().unwrap().unwrap().note;
    let raw = attacker(&path);
    raw.execute("DELETE FROM events WHERE seq > 7", []).unwrap();
    assert_bad(&verify(&path, &key, None), 7, "checkpoint-beyond-log");

    // A careful attacker also removes the nodes and checkpoints of the removed events: the log
    // left is self-consistent, and only a checkpoint saved elsewhere shows what is missing.
    raw.execute_batch(
        "DELETE FROM nodes WHERE ((idx + 1) << level) > 7;
         DELETE FROM checkpoints WHERE size > 7;",
    )
    .unwrap();
    assert!(verify(&path, &key, None).is_clean());
    assert_bad(&verify(&path, &key, Some(&saved)), 7, "against-truncated");
}

#[tokio::test]
async fn a_rollback_to_an_older_copy_is_found_against_a_saved_checkpoint() {
    let (dir, path, log) = filled(5).await;
    let key = log.verifier().unwrap();
    let old_copy = dir.path().join("old.db");
    Connection::open(&path)
        .unwrap()
        .execute("VACUUM INTO ?1", [old_copy.to_str().unwrap()])
        .unwrap();
    for i in 0..4 {
        log.append(decision("PyPI", &format!("later-{i}"), "block"))
            .await
            .unwrap();
    }
    let saved = log.checkpoint().unwrap().unwrap().note;
    log.shutdown().await;
    drop(log);

    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::copy(&old_copy, &path).unwrap();
    // The old copy is a valid log on its own...
    assert!(verify(&path, &key, None).is_clean());
    // ...but not an extension of what was seen before.
    assert_bad(&verify(&path, &key, Some(&saved)), 5, "against-truncated");
}

#[tokio::test]
async fn a_rewritten_history_is_not_an_extension_of_a_saved_checkpoint() {
    let (_dir, path, log) = filled(6).await;
    let key = log.verifier().unwrap();
    let saved = log.checkpoint().unwrap().unwrap().note;
    attacker(&path)
        .execute(
            "UPDATE events SET body = replace(body, '\"block\"', '\"allow\"') WHERE seq = 4",
            [],
        )
        .unwrap();
    let report = verify(&path, &key, Some(&saved));
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.kind == "against-inconsistent"),
        "{report:#?}"
    );
    assert_eq!(report.first_bad_index, Some(3));
}

#[tokio::test]
async fn an_edited_node_hash_is_found_by_the_first_index_it_covers() {
    let (_dir, path, log) = filled(10).await;
    attacker(&path)
        .execute(
            "UPDATE nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 2",
            [],
        )
        .unwrap();
    assert_bad(
        &verify(&path, &log.verifier().unwrap(), None),
        4,
        "node-mismatch",
    );
}

#[tokio::test]
async fn an_edited_checkpoint_is_found_by_the_first_index_it_covers() {
    let (_dir, path, log) = filled(10).await;
    attacker(&path)
        .execute(
            "UPDATE checkpoints SET note = replace(note, char(10) || '6' || char(10), \
             char(10) || '7' || char(10)) WHERE size = 6",
            [],
        )
        .unwrap();
    assert_bad(
        &verify(&path, &log.verifier().unwrap(), None),
        5,
        "checkpoint-signature",
    );
}

#[tokio::test]
async fn a_store_whose_tree_does_not_match_its_checkpoint_will_not_open_for_writing() {
    let (_dir, path, log) = filled(4).await;
    log.shutdown().await;
    drop(log);
    attacker(&path)
        .execute(
            "UPDATE nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 0",
            [],
        )
        .unwrap();
    let error = AuditLog::open(&path).unwrap_err().to_string();
    assert!(
        error.contains("does not match its last signed checkpoint"),
        "{error}"
    );
}

#[tokio::test]
async fn proofs_from_stored_hashes_verify_against_checkpoints() {
    let (_dir, path, log) = filled(13).await;
    let first = log.checkpoint().unwrap().unwrap().checkpoint;
    for i in 0..6 {
        log.append(decision("crates.io", &format!("more-{i}"), "allow"))
            .await
            .unwrap();
    }
    let second = log.checkpoint().unwrap().unwrap().checkpoint;
    assert_eq!((first.size, second.size), (13, 19));

    let consistency = log.consistency_proof(first.size, second.size).unwrap();
    verify_consistency(
        first.size,
        second.size,
        &first.root,
        &second.root,
        &consistency.proof,
    )
    .unwrap();
    let reader = AuditLog::open_read_only(&path).unwrap();
    for index in 0..second.size {
        let proof = reader.inclusion_proof(index, None).unwrap();
        assert_eq!(proof.size, second.size);
        verify_inclusion(
            index,
            proof.size,
            &proof.leaf_hash,
            &proof.proof,
            &second.root,
        )
        .unwrap();
        let old = reader.inclusion_proof(index.min(12), Some(13)).unwrap();
        verify_inclusion(old.index, 13, &old.leaf_hash, &old.proof, &first.root).unwrap();
    }
    assert!(reader.inclusion_proof(19, None).is_err());
    assert!(reader.consistency_proof(5, 20).is_err());
}

/// An offline verifier holds only the public key string and the JSON `moat audit prove` prints.
#[tokio::test]
async fn an_offline_proof_verifies_with_only_the_public_key() {
    let (_dir, _path, log) = filled(9).await;
    let public_key = log.verifier().unwrap().to_string();
    let json = serde_json::to_string(&log.prove(4).unwrap()).unwrap();
    drop(log);

    let key = VerifierKey::parse(&public_key).unwrap();
    let bundle: ProofBundle = serde_json::from_str(&json).unwrap();
    let checkpoint = verify_bundle(&bundle, &key).unwrap();
    assert_eq!(checkpoint.size, 9);
    assert_eq!(bundle.seq, 5);
    assert!(
        bundle.leaf.contains("\"package\":\"package-4\""),
        "{}",
        bundle.leaf
    );
    assert_eq!(
        leaf_hash(bundle.leaf.as_bytes()),
        leaf_hash(bundle.leaf.as_bytes())
    );

    let mut edited = bundle.clone();
    edited.leaf = edited.leaf.replace("package-4", "package-5");
    assert!(verify_bundle(&edited, &key).is_err());
    let mut moved = bundle.clone();
    moved.index = 5;
    moved.seq = 6;
    assert!(verify_bundle(&moved, &key).is_err());
    let other = moat_audit::SignerKey::generate().unwrap().verifier();
    assert!(verify_bundle(&bundle, &other).is_err());
}

#[tokio::test]
async fn the_signing_key_is_private_and_required_once_the_log_has_checkpoints() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_dir, path, log) = filled(2).await;
    let key_path = moat_audit::key_path(&path);
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    log.shutdown().await;
    drop(log);
    std::fs::remove_file(&key_path).unwrap();
    let error = AuditLog::open(&path).unwrap_err().to_string();
    assert!(error.contains("audit.key"), "{error}");
    assert!(
        !key_path.exists(),
        "a new key must not replace the lost one"
    );
}
