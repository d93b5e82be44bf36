use std::collections::HashMap;

use moat_audit::{AuditError, AuditLog, ListQuery};
use rusqlite::Connection;

use crate::{decision, package, store};

#[tokio::test]
async fn recorded_events_cannot_be_updated_or_deleted() {
    let (_dir, path, log) = store();
    log.append(decision("npm", "event-stream", "block"))
        .await
        .unwrap();

    let raw = Connection::open(&path).unwrap();
    let update = raw.execute("UPDATE events SET action = 'allow' WHERE seq = 1", []);
    let error = update.unwrap_err().to_string();
    assert!(error.contains("append-only"), "{error}");
    let delete = raw.execute("DELETE FROM events", []);
    let error = delete.unwrap_err().to_string();
    assert!(error.contains("append-only"), "{error}");

    let stored = log.list(&ListQuery::default()).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event, decision("npm", "event-stream", "block"));
}

#[tokio::test]
async fn tree_nodes_and_checkpoints_cannot_be_updated_or_deleted() {
    let (_dir, path, log) = store();
    log.append(decision("npm", "event-stream", "block"))
        .await
        .unwrap();
    let raw = Connection::open(&path).unwrap();
    for statement in [
        "UPDATE nodes SET hash = zeroblob(32)",
        "DELETE FROM nodes",
        "UPDATE checkpoints SET note = ''",
        "DELETE FROM checkpoints",
    ] {
        let error = raw.execute(statement, []).unwrap_err().to_string();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
}

/// No record, no answer (store side): when SQLite refuses the write, every append of the
/// batch gets an `Err`, nothing is stored, and the sequence stays gapless afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn append_failure_is_reported_not_swallowed() {
    let (_dir, path, log) = store();
    assert_eq!(
        log.append(decision("npm", "before", "allow"))
            .await
            .unwrap(),
        1
    );

    // Make every insert fail inside the writer's own transaction.
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER fail_inserts BEFORE INSERT ON events
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();

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
    raw.execute_batch("DROP TRIGGER fail_inserts").unwrap();
    assert_eq!(
        log.append(decision("npm", "after", "allow")).await.unwrap(),
        2
    );
}

/// When one event of a batch is refused, the whole batch is rolled back: every `Ok` seq is
/// stored under that seq, every `Err` left no row, and the stored seqs stay gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ok_means_stored_and_err_means_not_stored() {
    let (_dir, path, log) = store();
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.package = 'poison'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();

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

#[tokio::test]
async fn append_after_shutdown_fails_with_writer_gone() {
    let (_dir, _path, log) = store();
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
fn open_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 3")
        .unwrap();

    let error = AuditLog::open(&path).unwrap_err().to_string();
    assert!(error.contains("schema version 3"), "{error}");
}

#[test]
fn open_refuses_a_file_that_is_not_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    std::fs::write(&path, "this is not a database, just some text long enough").unwrap();

    let error = AuditLog::open(&path).unwrap_err().to_string();
    assert!(error.contains("cannot open"), "{error}");
}
