//! `moat audit key|verify|checkpoint|prove|verify-proof` on a log written through the library.

use std::path::Path;

use moat_audit::{AuditLog, DecisionEvent, Event};
use moat_test_support::gate::{MoatOutput, run_moat};

use crate::MOAT;

fn moat_in(data: &Path, args: &[&str]) -> MoatOutput {
    let mut all: Vec<&str> = args.to_vec();
    let data = data.to_str().expect("utf-8 path");
    all.extend(["--data-dir", data]);
    run_moat(Path::new(MOAT), &all)
}

fn decision(package: &str) -> Event {
    Event::Decision(DecisionEvent {
        time: "2026-01-02T03:04:05Z".parse().expect("timestamp"),
        identity: "anonymous@127.0.0.1".to_owned(),
        ecosystem: "npm".to_owned(),
        package: package.to_owned(),
        version: Some("1.0.0".to_owned()),
        request: "artifact".to_owned(),
        action: "allow".to_owned(),
        rules: Vec::new(),
        advisories: Vec::new(),
        approved: Vec::new(),
        message: None,
        repeats: None,
    })
}

/// Append `names` to the log in `data`, closing it afterwards.
fn append(data: &Path, names: &[&str]) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let log = AuditLog::open(&data.join("audit.db")).expect("open");
        for name in names {
            log.append(decision(name)).await.expect("append");
        }
        log.shutdown().await;
    });
}

fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("directory");
    for name in ["audit.db", "audit.db-wal"] {
        let _ = std::fs::remove_file(to.join(name));
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).expect("copy");
        }
    }
}

#[test]
fn audit_verify_prove_and_offline_proof_round_trip() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    append(&data, &["a", "b", "c"]);

    let key = moat_in(&data, &["audit", "key"]);
    key.assert_success();
    let key = key.stdout.trim().to_owned();
    assert!(key.starts_with("moat-audit/"), "{key}");

    let verified = moat_in(&data, &["audit", "verify"]);
    verified.assert_success();
    assert!(
        verified.stdout.starts_with("ok: 3 events, 3 checkpoints"),
        "{verified}"
    );

    let proof = moat_in(&data, &["audit", "prove", "1", "--json"]);
    proof.assert_success();
    assert_eq!(proof.json()["seq"], 2, "{proof}");
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, &proof.stdout).expect("write proof");
    // Offline: only the file and the public key, no data dir.
    let offline = run_moat(
        Path::new(MOAT),
        &[
            "audit",
            "verify-proof",
            proof_file.to_str().expect("utf-8"),
            "--key",
            &key,
        ],
    );
    offline.assert_success();
    assert!(
        offline.stdout.starts_with("ok: event index 1 (seq 2)"),
        "{offline}"
    );

    let forged = proof
        .stdout
        .replace("\"package\\\":\\\"b\\\"", "\"package\\\":\\\"x\\\"");
    assert_ne!(forged, proof.stdout, "the leaf was not found to forge");
    std::fs::write(&proof_file, forged).expect("write proof");
    let refused = run_moat(
        Path::new(MOAT),
        &[
            "audit",
            "verify-proof",
            proof_file.to_str().expect("utf-8"),
            "--key",
            &key,
        ],
    );
    assert!(!refused.status.success(), "{refused}");
    assert!(refused.stderr.contains("does not verify"), "{refused}");
}

#[test]
fn audit_verify_against_a_saved_checkpoint_catches_a_rollback() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let old = dir.path().join("old");
    std::fs::create_dir_all(&data).expect("data dir");
    append(&data, &["a", "b", "c"]);
    copy_store(&data, &old);
    append(&data, &["d", "e"]);

    let saved = moat_in(&data, &["audit", "checkpoint"]);
    saved.assert_success();
    let saved_file = dir.path().join("checkpoint.txt");
    std::fs::write(&saved_file, &saved.stdout).expect("write checkpoint");
    let saved_path = saved_file.to_str().expect("utf-8");
    moat_in(&data, &["audit", "verify", "--against", saved_path]).assert_success();

    copy_store(&old, &data);
    let rolled_back = moat_in(&data, &["audit", "verify", "--against", saved_path]);
    assert_eq!(rolled_back.status.code(), Some(1), "{rolled_back}");
    assert!(
        rolled_back.stdout.contains("first bad index 3 (seq 4)"),
        "{rolled_back}"
    );
    let json = moat_in(
        &data,
        &["audit", "verify", "--against", saved_path, "--json"],
    );
    assert_eq!(json.status.code(), Some(1), "{json}");
    assert_eq!(json.json()["first_bad_index"], 3, "{json}");
}

/// The gate serves its newest checkpoint and proofs that check out with `moat audit key`.
#[test]
fn gate_serves_checkpoint_and_proofs_of_its_own_decisions() {
    use moat_audit::merkle::{verify_consistency, verify_inclusion};
    use moat_audit::{Checkpoint, ConsistencyProof, InclusionProof, VerifierKey};
    use moat_test_support::clients::{Client, Workspace};
    use moat_test_support::raw_http;

    let env = crate::Env::start();
    let workspace = Workspace::new();
    Client::Npm
        .add(&workspace, &env.registry(), &["tiny-pad@^1.0.0"])
        .assert_success();
    let key = env.gate.run(&["audit", "key"]);
    key.assert_success();
    let key = VerifierKey::parse(key.stdout.trim()).expect("verifier key");

    let note = raw_http::get(env.gate.url(), "/-/audit/checkpoint");
    assert_eq!(note.status, 200, "{}", note.text());
    let checkpoint = Checkpoint::open(&note.text(), &key).expect("signed by the log's key");
    assert!(checkpoint.size >= 2, "{checkpoint:?}");

    let last = checkpoint.size - 1;
    let inclusion = raw_http::get(
        env.gate.url(),
        &format!(
            "/-/audit/proof/inclusion?index={last}&size={}",
            checkpoint.size
        ),
    );
    assert_eq!(inclusion.status, 200, "{}", inclusion.text());
    let proof: InclusionProof = serde_json::from_value(inclusion.json()).expect("proof");
    verify_inclusion(
        last,
        checkpoint.size,
        &proof.leaf_hash,
        &proof.proof,
        &checkpoint.root,
    )
    .expect("inclusion");

    let consistency = raw_http::get(
        env.gate.url(),
        &format!("/-/audit/proof/consistency?from=1&to={}", checkpoint.size),
    );
    assert_eq!(consistency.status, 200, "{}", consistency.text());
    let proof: ConsistencyProof = serde_json::from_value(consistency.json()).expect("proof");
    let first = moat_audit::merkle::root_of(&[proof_leaf(&env)]);
    verify_consistency(1, checkpoint.size, &first, &checkpoint.root, &proof.proof)
        .expect("consistency");

    env.gate.run(&["audit", "verify"]).assert_success();
}

/// The leaf hash of the log's first event, as the gate proves it.
fn proof_leaf(env: &crate::Env) -> moat_audit::Hash {
    let first =
        moat_test_support::raw_http::get(env.gate.url(), "/-/audit/proof/inclusion?index=0&size=1");
    let proof: moat_audit::InclusionProof = serde_json::from_value(first.json()).expect("proof");
    proof.leaf_hash
}
