//! Tamper evidence: every kind of change to the stored log is found by `verify`, which names
//! the first bad index; a clean log verifies; proofs check offline with only the public key.
//! Tests get around the append-only triggers the way an attacker with the database would: by
//! dropping (SQLite) or disabling (PostgreSQL, as a superuser) them first.

use moat_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use moat_audit::{AuditLog, ProofBundle, VerifierKey, VerifyReport, verify_bundle};
use rusqlite::Connection;

use crate::backend::{Backend, TestStore};
use crate::decision;

/// A log of `count` events in `store`, each appended alone (so each has its own checkpoint).
async fn filled(store: &TestStore, count: usize) -> AuditLog {
    let log = store.open();
    for i in 0..count {
        let action = if i % 3 == 0 { "block" } else { "allow" };
        log.append(decision("npm", &format!("package-{i}"), action))
            .await
            .expect("append");
    }
    log
}

fn verify(store: &TestStore, key: &VerifierKey, against: Option<&str>) -> VerifyReport {
    store.read_only().verify(key, against).expect("verify runs")
}

/// 32 zero bytes, in the store's SQL.
fn zero_hash(store: &TestStore) -> &'static str {
    match store.backend() {
        Backend::Sqlite => "zeroblob(32)",
        Backend::Postgres => "decode(repeat('00', 32), 'hex')",
    }
}

fn assert_bad(report: &VerifyReport, index: u64, kind: &str) {
    assert!(!report.is_clean(), "tampering went unnoticed: {report:#?}");
    assert_eq!(report.first_bad_index, Some(index), "{report:#?}");
    assert!(
        report.problems.iter().any(|problem| problem.kind == kind),
        "no {kind} problem: {report:#?}"
    );
}

on_both_backends! {
#[tokio::test]
async fn a_clean_log_verifies(store) {
    let log = filled(&store, 10).await;
    let key = log.verifier().unwrap();
    let report = verify(&store, &key, None);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.size, 10);
    assert_eq!(report.checkpoints, 10);
    let latest = log.checkpoint().unwrap().unwrap();
    assert_eq!(report.root, latest.checkpoint.root);
    // And against its own latest checkpoint.
    assert!(verify(&store, &key, Some(&latest.note)).is_clean());
}
}

on_both_backends! {
#[tokio::test]
async fn an_edited_event_is_found_by_its_index(store) {
    let log = filled(&store, 10).await;
    store.attack("UPDATE events SET body = replace(body, '\"allow\"', '\"block\"') WHERE seq = 5");
    assert_bad(
        &verify(&store, &log.verifier().unwrap(), None),
        4,
        "leaf-mismatch",
    );
}
}

on_both_backends! {
#[tokio::test]
async fn a_deleted_event_is_found_by_its_index(store) {
    let log = filled(&store, 10).await;
    store.attack("DELETE FROM events WHERE seq = 7");
    assert_bad(
        &verify(&store, &log.verifier().unwrap(), None),
        6,
        "event-missing",
    );
}
}

on_both_backends! {
#[tokio::test]
async fn reordered_events_are_found_by_the_first_moved_index(store) {
    let log = filled(&store, 10).await;
    // Swap two events by renumbering them.
    store.attack(
        "UPDATE events SET seq = -3 WHERE seq = 3;
         UPDATE events SET seq = 3 WHERE seq = 8;
         UPDATE events SET seq = 8 WHERE seq = -3;",
    );
    assert_bad(
        &verify(&store, &log.verifier().unwrap(), None),
        2,
        "leaf-mismatch",
    );
}
}

on_both_backends! {
#[tokio::test]
async fn a_truncated_log_is_found_by_its_first_missing_index(store) {
    let log = filled(&store, 10).await;
    let key = log.verifier().unwrap();
    let saved = log.checkpoint().unwrap().unwrap().note;
    store.attack("DELETE FROM events WHERE seq > 7");
    assert_bad(&verify(&store, &key, None), 7, "checkpoint-beyond-log");

    // A careful attacker also removes the nodes and checkpoints of the removed events: the log
    // left is self-consistent, and only a checkpoint saved elsewhere shows what is missing.
    store.attack(
        "DELETE FROM nodes WHERE ((idx + 1) << level) > 7;
         DELETE FROM checkpoints WHERE size > 7;",
    );
    assert!(verify(&store, &key, None).is_clean());
    assert_bad(&verify(&store, &key, Some(&saved)), 7, "against-truncated");
}
}

/// SQLite only: a PostgreSQL database is not rolled back by copying a file.
#[tokio::test]
async fn a_rollback_to_an_older_copy_is_found_against_a_saved_checkpoint() {
    let store = TestStore::sqlite();
    let path = store.dir.path().join("audit.db");
    let log = filled(&store, 5).await;
    let key = log.verifier().unwrap();
    let old_copy = store.dir.path().join("old.db");
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
    assert!(verify(&store, &key, None).is_clean());
    // ...but not an extension of what was seen before.
    assert_bad(&verify(&store, &key, Some(&saved)), 5, "against-truncated");
}

on_both_backends! {
#[tokio::test]
async fn a_rewritten_history_is_not_an_extension_of_a_saved_checkpoint(store) {
    let log = filled(&store, 6).await;
    let key = log.verifier().unwrap();
    let saved = log.checkpoint().unwrap().unwrap().note;
    store.attack("UPDATE events SET body = replace(body, '\"block\"', '\"allow\"') WHERE seq = 4");
    let report = verify(&store, &key, Some(&saved));
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.kind == "against-inconsistent"),
        "{report:#?}"
    );
    assert_eq!(report.first_bad_index, Some(3));
}
}

on_both_backends! {
#[tokio::test]
async fn an_edited_node_hash_is_found_by_the_first_index_it_covers(store) {
    let log = filled(&store, 10).await;
    store.attack(&format!(
        "UPDATE nodes SET hash = {} WHERE level = 1 AND idx = 2",
        zero_hash(&store)
    ));
    assert_bad(
        &verify(&store, &log.verifier().unwrap(), None),
        4,
        "node-mismatch",
    );
}
}

on_both_backends! {
#[tokio::test]
async fn an_edited_checkpoint_is_found_by_the_first_index_it_covers(store) {
    let log = filled(&store, 10).await;
    store.attack("UPDATE checkpoints SET note = replace(note, '\n6\n', '\n7\n') WHERE size = 6");
    assert_bad(
        &verify(&store, &log.verifier().unwrap(), None),
        5,
        "checkpoint-signature",
    );
}
}

on_both_backends! {
#[tokio::test]
async fn each_checkpoint_names_the_one_before_it(store) {
    let log = filled(&store, 3).await;
    let notes: Vec<_> = log.checkpoints_after(0, 10).unwrap();
    assert_eq!(notes.len(), 3);
    assert_eq!(notes[0].checkpoint.previous, None);
    for pair in notes.windows(2) {
        assert_eq!(
            pair[1].checkpoint.previous,
            Some(moat_audit::note::note_hash(&pair[0].note))
        );
        assert!(pair[1].note.contains("\nprevious "), "{}", pair[1].note);
    }
}
}

on_both_backends! {
#[tokio::test]
async fn a_removed_checkpoint_breaks_the_chain(store) {
    // Every event stays covered by a later checkpoint: only the chain tells.
    let log = filled(&store, 10).await;
    store.attack("DELETE FROM checkpoints WHERE size = 6");
    assert_bad(
        &verify(&store, &log.verifier().unwrap(), None),
        5,
        "checkpoint-chain",
    );
}
}

on_both_backends! {
#[tokio::test]
async fn a_checkpoint_with_a_forged_signature_is_found_though_its_successor_is_intact(store) {
    let log = filled(&store, 10).await;
    // Swap checkpoint 6's signature for checkpoint 5's: its text is intact, its signature is not.
    let five = log.checkpoints_after(4, 1).unwrap().remove(0).note;
    let signature = five.rsplit("\n\n").next().unwrap().to_owned();
    let six = log.checkpoints_after(5, 1).unwrap().remove(0).note;
    let forged = format!("{}\n{signature}", moat_audit::note::note_text(&six));
    store.attack(&format!(
        "UPDATE checkpoints SET note = '{}' WHERE size = 6",
        forged.replace('\'', "''")
    ));
    let report = verify(&store, &log.verifier().unwrap(), None);
    assert_bad(&report, 5, "checkpoint-signature");
    assert!(
        report.problems.iter().any(|problem| problem.kind == "checkpoint-chain"),
        "{report:#?}"
    );
}
}

on_both_backends! {
#[tokio::test]
async fn a_store_whose_tree_does_not_match_its_checkpoint_will_not_open_for_writing(store) {
    let log = filled(&store, 4).await;
    log.shutdown().await;
    drop(log);
    store.attack(&format!(
        "UPDATE nodes SET hash = {} WHERE level = 2 AND idx = 0",
        zero_hash(&store)
    ));
    let error = store.try_open().unwrap_err().to_string();
    assert!(
        error.contains("does not match its last signed checkpoint"),
        "{error}"
    );
}
}

on_both_backends! {
#[tokio::test]
async fn proofs_from_stored_hashes_verify_against_checkpoints(store) {
    let log = filled(&store, 13).await;
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
    let reader = store.read_only();
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
}

on_both_backends! {
/// An offline verifier holds only the public key string and the JSON `moat audit prove` prints.
#[tokio::test]
async fn an_offline_proof_verifies_with_only_the_public_key(store) {
    let log = filled(&store, 9).await;
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
}

on_both_backends! {
#[tokio::test]
async fn the_signing_key_is_private_and_required_once_the_log_has_checkpoints(store) {
    use std::os::unix::fs::PermissionsExt as _;
    let log = filled(&store, 2).await;
    let key_path = &store.key_path;
    let mode = std::fs::metadata(key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    log.shutdown().await;
    drop(log);
    std::fs::remove_file(key_path).unwrap();
    let error = store.try_open().unwrap_err().to_string();
    assert!(error.contains("audit.key"), "{error}");
    assert!(
        !key_path.exists(),
        "a new key must not replace the lost one"
    );
}
}
