use std::collections::HashMap;

use moat_audit::{AuditError, AuditLog, ListQuery};

use crate::backend::Backend;
use crate::{decision, package};

on_both_backends! {
#[tokio::test]
async fn recorded_events_cannot_be_updated_or_deleted(store) {
    let log = store.open();
    log.append(decision("npm", "event-stream", "block"))
        .await
        .unwrap();

    let update = store.sql("UPDATE events SET action = 'allow' WHERE seq = 1");
    let error = update.unwrap_err();
    assert!(error.contains("append-only"), "{error}");
    let error = store.sql("DELETE FROM events").unwrap_err();
    assert!(error.contains("append-only"), "{error}");
    if store.backend() == Backend::Postgres {
        let error = store.sql("TRUNCATE events").unwrap_err();
        assert!(error.contains("append-only"), "{error}");
    }

    let stored = log.list(&ListQuery::default()).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event, decision("npm", "event-stream", "block"));
}
}

on_both_backends! {
#[tokio::test]
async fn tree_nodes_and_checkpoints_cannot_be_updated_or_deleted(store) {
    let log = store.open();
    log.append(decision("npm", "event-stream", "block"))
        .await
        .unwrap();
    for statement in [
        "UPDATE nodes SET hash = hash || hash",
        "DELETE FROM nodes",
        "UPDATE checkpoints SET note = ''",
        "DELETE FROM checkpoints",
    ] {
        let error = store.sql(statement).unwrap_err();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
}
}

on_both_backends! {
/// No record, no answer (store side): when the store refuses the write, every append of the
/// batch gets an `Err`, nothing is stored, and the sequence stays gapless afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn append_failure_is_reported_not_swallowed(store) {
    let log = store.open();
    assert_eq!(
        log.append(decision("npm", "before", "allow"))
            .await
            .unwrap(),
        1
    );

    // Make every insert fail inside the writer's own transaction.
    store.fail_inserts(None);

    let mut appends = Vec::new();
    for i in 0..32 {
        let log = log.clone();
        let name = format!("refused-{i}");
        appends.push(tokio::spawn(async move {
            log.append(decision("npm", &name, "block")).await
        }));
    }
    for append in appends {
        let result = append.await.unwrap();
        let Err(AuditError::Store(message)) = &result else {
            panic!("append must fail with a store error, got {result:?}");
        };
        assert!(message.contains("injected failure"), "{message}");
    }
    assert_eq!(log.count().unwrap(), 1);

    // Once the store accepts writes again, appends succeed and continue the sequence.
    store.allow_inserts();
    assert_eq!(
        log.append(decision("npm", "after", "allow")).await.unwrap(),
        2
    );
}
}

on_both_backends! {
/// When one event of a batch is refused, the whole batch is rolled back: every `Ok` seq is
/// stored under that seq, every `Err` left no row, and the stored seqs stay gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ok_means_stored_and_err_means_not_stored(store) {
    let log = store.open();
    store.fail_inserts(Some("poison"));

    let mut appends = Vec::new();
    for i in 0..400 {
        let log = log.clone();
        let name = if i % 7 == 0 {
            "poison".to_owned()
        } else {
            format!("good-{i}")
        };
        appends.push(tokio::spawn(async move {
            let result = log.append(decision("npm", &name, "allow")).await;
            (name, result)
        }));
    }
    let mut accepted = HashMap::new();
    for append in appends {
        let (name, result) = append.await.unwrap();
        match result {
            Ok(seq) => {
                assert_ne!(name, "poison");
                accepted.insert(seq, name);
            }
            Err(error) => assert!(error.to_string().contains("injected failure"), "{error}"),
        }
    }
    let stored = log.list(&ListQuery::default()).unwrap();
    assert_eq!(stored.len(), accepted.len());
    for (expected, event) in (1..).zip(&stored) {
        assert_eq!(event.seq, expected);
        assert_eq!(package(&event.event), accepted[&event.seq]);
    }
}
}

on_both_backends! {
#[tokio::test]
async fn append_after_shutdown_fails_with_writer_gone(store) {
    let log = store.open();
    let clone = log.clone();
    log.append(decision("npm", "a", "allow")).await.unwrap();
    log.shutdown().await;

    let refused = clone.append(decision("npm", "b", "allow")).await;
    assert!(
        matches!(refused, Err(AuditError::WriterGone)),
        "{refused:?}"
    );
    log.shutdown().await;
    assert_eq!(log.count().unwrap(), 1);
}
}

#[test]
fn open_on_an_unwritable_path_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let path = file.join("audit.db");

    let error = AuditLog::open(&path).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, AuditError::Store(_)), "{error:?}");
    assert!(message.contains("cannot open"), "{message}");
    assert!(message.contains("not-a-directory/audit.db"), "{message}");
}

#[test]
fn open_refuses_a_file_that_is_not_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    std::fs::write(&path, "this is not a database, just some text long enough").unwrap();

    let error = AuditLog::open(&path).unwrap_err().to_string();
    assert!(error.contains("cannot open"), "{error}");
}

on_both_backends! {
#[test]
fn open_refuses_a_newer_schema(store) {
    match store.backend() {
        Backend::Sqlite => store.sql("PRAGMA user_version = 4").unwrap(),
        Backend::Postgres => {
            drop(store.open());
            store
                .attack("INSERT INTO moat_audit_schema (version) VALUES (4)");
        }
    }
    let error = store.try_open().unwrap_err().to_string();
    assert!(error.contains("schema version 4"), "{error}");
}
}

#[test]
fn open_postgres_on_an_unreachable_server_fails_clearly() {
    let url =
        moat_audit::PostgresUrl::parse("postgres://moat:secret@127.0.0.1:1/none?connect_timeout=2")
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    for error in [
        AuditLog::open_postgres(&url, &key).unwrap_err(),
        AuditLog::open_postgres_read_only(&url, &key).unwrap_err(),
    ] {
        let message = error.to_string();
        assert!(matches!(error, AuditError::Store(_)), "{error:?}");
        assert!(
            message.contains("cannot connect to postgres://moat:***@127.0.0.1:1/none"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
    }
    assert!(
        !key.exists(),
        "no key is made for a log that could not be opened"
    );
}

#[test]
fn read_only_open_of_a_database_without_the_schema_fails() {
    let Some(database) = crate::backend::database() else {
        return;
    };
    let url = moat_audit::PostgresUrl::parse(&database.url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let error = AuditLog::open_postgres_read_only(&url, &dir.path().join("audit.key"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a moat audit store"), "{error}");
}
