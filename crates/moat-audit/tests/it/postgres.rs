//! PostgreSQL only: several gates writing one log, and a writer role that cannot change history.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use moat_audit::{AuditLog, ListQuery, PostgresUrl, SignerKey};

use crate::backend::{Database, TestStore, run_sql, with_user};
use crate::{decision, package};

/// A second gate on the same log: its own data directory, holding a copy of the log's key.
fn second_gate(store: &TestStore, dir: &Path) -> PathBuf {
    let key = dir.join(moat_audit::KEY_FILE);
    std::fs::copy(&store.key_path, &key).expect("copy the signing key");
    key
}

fn url(store: &TestStore) -> PostgresUrl {
    PostgresUrl::parse(&store.database().url).expect("a postgres:// URL")
}

async fn append_many(log: &AuditLog, gate: &str, tasks: usize, each: usize) -> Vec<(u64, String)> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let log = log.clone();
        let gate = gate.to_owned();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..each {
                let name = format!("{gate}-{task}-{i}");
                let seq = log
                    .append(decision("npm", &name, "allow"))
                    .await
                    .expect("append");
                seqs.push((seq, name));
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for handle in handles {
        seqs.extend(handle.await.expect("appending task"));
    }
    seqs
}

/// Two gates (two writers, two connections) append to one log at once: each batch takes the
/// log's lock and continues from wherever the other gate left it, so the seqs stay gapless, each
/// `Ok(seq)` names the event stored there, and the whole log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gates_appending_at_once_share_one_gapless_log() {
    let Some(store) = TestStore::postgres() else {
        return;
    };
    let first = store.open();
    first
        .append(decision("npm", "first", "allow"))
        .await
        .unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let second = AuditLog::open_postgres(&url(&store), &second_gate(&store, other_dir.path()))
        .expect("the second gate opens the shared log");

    let (a, b) = tokio::join!(
        append_many(&first, "a", 8, 100),
        append_many(&second, "b", 8, 100)
    );
    let mut answered: HashMap<u64, String> = HashMap::from([(1, "first".to_owned())]);
    for (seq, name) in a.into_iter().chain(b) {
        assert!(
            answered.insert(seq, name).is_none(),
            "seq {seq} handed out twice"
        );
    }
    let stored = second.list(&ListQuery::default()).unwrap();
    assert_eq!(stored.len(), 1601);
    for (expected, event) in (1..).zip(&stored) {
        assert_eq!(event.seq, expected);
        assert_eq!(package(&event.event), answered[&event.seq]);
    }
    assert!(first.stats().batches > 0 && second.stats().batches > 0);

    let key = first.verifier().unwrap();
    let report = store.read_only().verify(&key, None).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.size, 1601);
    assert_eq!(
        report.checkpoints,
        first.stats().batches + second.stats().batches
    );
    // Each gate's next append continues after the other's.
    assert_eq!(
        first.append(decision("npm", "x", "allow")).await.unwrap(),
        1602
    );
    assert_eq!(
        second.append(decision("npm", "y", "allow")).await.unwrap(),
        1603
    );
}

/// Gates sharing a log must share its signing key: a gate with another key neither opens a log
/// signed by the first, nor appends on top of a checkpoint it cannot verify.
#[tokio::test]
async fn a_gate_with_another_key_cannot_write_a_shared_log() {
    let Some(store) = TestStore::postgres() else {
        return;
    };
    let other_dir = tempfile::tempdir().unwrap();
    let other_key = other_dir.path().join(moat_audit::KEY_FILE);
    // Both open the empty log, each with its own key...
    let first = store.open();
    let stranger = AuditLog::open_postgres(&url(&store), &other_key).unwrap();
    assert_ne!(first.verifier().unwrap(), stranger.verifier().unwrap());
    first.append(decision("npm", "a", "allow")).await.unwrap();
    // ...then the stranger finds a checkpoint it cannot verify, and refuses to sign after it.
    let refused = stranger.append(decision("npm", "b", "allow")).await;
    let error = refused.unwrap_err().to_string();
    assert!(
        error.contains("does not match its last signed checkpoint"),
        "{error}"
    );
    stranger.shutdown().await;
    let error = AuditLog::open_postgres(&url(&store), &other_key)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("does not match its last signed checkpoint"),
        "{error}"
    );
    assert_eq!(first.count().unwrap(), 1);
    assert!(SignerKey::load(&other_key).is_ok());
}

/// A role dropped with the test (after the privileges it holds in the test's database).
struct Role<'a> {
    database: &'a Database,
    name: String,
}

impl Drop for Role<'_> {
    fn drop(&mut self) {
        let _ = run_sql(&self.database.url, &format!("DROP OWNED BY {}", self.name));
        let _ = run_sql(&self.database.admin, &format!("DROP ROLE {}", self.name));
    }
}

/// The gates' role is granted only SELECT and INSERT (the grants in the crate docs): it
/// appends, but UPDATE, DELETE and TRUNCATE through it fail with "permission denied".
#[tokio::test]
async fn a_writer_role_without_update_or_delete_appends_but_cannot_change_history() {
    let Some(store) = TestStore::postgres() else {
        return;
    };
    // The owner creates the schema.
    let owner = store.open();
    owner
        .append(decision("npm", "by-owner", "allow"))
        .await
        .unwrap();
    owner.shutdown().await;

    let database = store.database();
    let role = Role {
        database,
        name: format!("{}_gate", database.name),
    };
    let password = "gate-password";
    run_sql(
        &database.admin,
        &format!("CREATE ROLE {} LOGIN PASSWORD '{password}'", role.name),
    )
    .unwrap();
    run_sql(
        &database.url,
        &format!(
            "GRANT CONNECT ON DATABASE {db} TO {role};
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT ON events, nodes, checkpoints TO {role};
             GRANT SELECT ON moat_audit_schema TO {role};",
            db = database.name,
            role = role.name
        ),
    )
    .unwrap();
    let gate_url = with_user(&database.url, &role.name, password);

    let gate = AuditLog::open_postgres(&PostgresUrl::parse(&gate_url).unwrap(), &store.key_path)
        .expect("the writer role opens the log");
    assert_eq!(
        gate.append(decision("npm", "by-gate", "block"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(gate.count().unwrap(), 2);

    for statement in [
        "UPDATE events SET action = 'allow' WHERE seq = 2",
        "DELETE FROM events WHERE seq = 2",
        "TRUNCATE events",
        "UPDATE nodes SET hash = hash",
        "DELETE FROM nodes",
        "UPDATE checkpoints SET note = ''",
        "DELETE FROM checkpoints",
        "UPDATE moat_audit_schema SET version = 3",
    ] {
        let error = run_sql(&gate_url, statement).unwrap_err();
        assert!(error.contains("permission denied"), "{statement}: {error}");
    }
    let report = gate.verify(&gate.verifier().unwrap(), None).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.size, 2);
    gate.shutdown().await;
    drop(gate);
}

/// Session events leave the filter columns NULL (arrays with NULLs in the batched insert).
#[tokio::test]
async fn session_events_round_trip_with_empty_filter_columns() {
    let Some(store) = TestStore::postgres() else {
        return;
    };
    let log = store.open();
    let end = moat_audit::Event::SessionEnd(moat_audit::SessionEnd {
        time: "2026-01-02T03:04:05Z".parse().unwrap(),
        session: "s-1".to_owned(),
        exit_code: Some(0),
        signal: None,
        duration_ms: 12,
        user_cpu_ms: 1,
        system_cpu_ms: 2,
        max_rss_kib: 3,
        reason: None,
    });
    log.append(decision("npm", "a", "allow")).await.unwrap();
    log.append(end.clone()).await.unwrap();
    let stored = log.list(&ListQuery::default()).unwrap();
    assert_eq!(stored[1].event, end);
    let only_npm = ListQuery {
        ecosystem: Some("npm".to_owned()),
        ..ListQuery::default()
    };
    assert_eq!(log.list(&only_npm).unwrap().len(), 1);
    assert_eq!(log.events_after(1, 10).unwrap()[0].event, end);
}
