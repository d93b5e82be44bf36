use moat_audit::{AuditError, AuditLog, ListQuery};

use crate::{decision, package, session_end};

const TIME: &str = "2026-12-02T00:00:00Z";

/// Packages of the events `query` returns, in order.
fn packages(log: &AuditLog, query: &ListQuery) -> Vec<String> {
    let stored = log.list(query).expect("list");
    stored
        .iter()
        .map(|stored| package(&stored.event).to_owned())
        .collect()
}

async fn fill(log: &AuditLog) {
    let events = [
        ("npm", "lodash", "allow"),
        ("npm", "event-stream", "block"),
        ("PyPI", "requests", "allow"),
        ("npm", "lodash", "warn"),
        ("crates.io", "serde", "allow"),
        ("PyPI", "ctx", "block"),
        ("npm", "lodash", "block"),
    ];
    for (ecosystem, name, action) in events {
        log.append(decision(ecosystem, name, action))
            .await
            .expect("append");
    }
}

on_both_backends! {
#[tokio::test]
async fn filters_combine_with_and(store) {
    let log = store.open();
    fill(&log).await;

    let by_ecosystem = ListQuery {
        ecosystem: Some("PyPI".to_owned()),
        ..ListQuery::default()
    };
    assert_eq!(packages(&log, &by_ecosystem), ["requests", "ctx"]);

    let by_action = ListQuery {
        action: Some("block".to_owned()),
        ..ListQuery::default()
    };
    assert_eq!(
        packages(&log, &by_action),
        ["event-stream", "ctx", "lodash"]
    );

    let by_package_and_action = ListQuery {
        package: Some("lodash".to_owned()),
        action: Some("allow".to_owned()),
        ..ListQuery::default()
    };
    let stored = log.list(&by_package_and_action).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].seq, 1);

    let nothing = ListQuery {
        ecosystem: Some("crates.io".to_owned()),
        package: Some("lodash".to_owned()),
        ..ListQuery::default()
    };
    assert!(log.list(&nothing).unwrap().is_empty());
}
}

on_both_backends! {
#[tokio::test]
async fn limit_returns_the_newest_oldest_first(store) {
    let log = store.open();
    fill(&log).await;

    let newest_two = ListQuery {
        limit: Some(2),
        ..ListQuery::default()
    };
    let seqs: Vec<u64> = log
        .list(&newest_two)
        .unwrap()
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs, [6, 7]);

    let newest_lodash = ListQuery {
        limit: Some(2),
        package: Some("lodash".to_owned()),
        ..ListQuery::default()
    };
    let seqs: Vec<u64> = log
        .list(&newest_lodash)
        .unwrap()
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs, [4, 7]);

    let zero = ListQuery {
        limit: Some(0),
        ..ListQuery::default()
    };
    assert!(log.list(&zero).unwrap().is_empty());
    let more_than_stored = ListQuery {
        limit: Some(usize::MAX),
        ..ListQuery::default()
    };
    assert_eq!(log.list(&more_than_stored).unwrap().len(), 7);
}
}

on_both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_sees_consistent_prefixes_while_writing(store) {
    let log = store.open();
    let mut writers = Vec::new();
    for task in 0..16 {
        let log = log.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..100 {
                let name = format!("{task}-{i}");
                log.append(decision("npm", &name, "allow")).await.unwrap();
            }
        }));
    }
    let reader = store.read_only();
    let mut done = false;
    while !done {
        done = writers.iter().all(|writer| writer.is_finished());
        for handle in [&log, &reader] {
            let seqs: Vec<u64> = handle
                .list(&ListQuery::default())
                .unwrap()
                .iter()
                .map(|s| s.seq)
                .collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        }
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(reader.count().unwrap(), 1600);
}
}

on_both_backends! {
#[tokio::test]
async fn read_only_handle_lists_but_cannot_append(store) {
    let log = store.open();
    fill(&log).await;

    let reader = store.read_only();
    assert_eq!(reader.list(&ListQuery::default()).unwrap().len(), 7);
    let refused = reader.append(decision("npm", "x", "allow")).await;
    assert!(matches!(refused, Err(AuditError::ReadOnly)), "{refused:?}");
    reader.shutdown().await;
    assert_eq!(log.append(decision("npm", "y", "allow")).await.unwrap(), 8);
}
}

#[test]
fn read_only_open_of_a_missing_store_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let error = AuditLog::open_read_only(&missing).unwrap_err();
    assert!(error.to_string().contains("missing.db"), "{error}");
    assert!(!missing.exists());
}

on_both_backends! {
#[tokio::test]
async fn events_and_checkpoints_read_in_pages(store) {
    let log = store.open();
    fill(&log).await;

    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let page = log.events_after(after, 3).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().unwrap().seq;
        seqs.extend(page.iter().map(|stored| stored.seq));
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        package(&log.events_after(6, 10).unwrap()[0].event),
        "lodash"
    );

    // Sequential appends commit one batch each: one checkpoint per size.
    let sizes: Vec<u64> = log
        .checkpoints_after(2, 100)
        .unwrap()
        .iter()
        .map(|signed| signed.checkpoint.size)
        .collect();
    assert_eq!(sizes, [3, 4, 5, 6, 7]);
    assert_eq!(log.checkpoints_after(0, 1).unwrap()[0].checkpoint.size, 1);
    assert!(log.checkpoints_after(7, 10).unwrap().is_empty());
}
}

on_both_backends! {
#[tokio::test]
async fn a_sessions_end_is_found_by_its_id_and_by_nothing_else(store) {
    let log = store.open();
    fill(&log).await;
    assert!(!log.session_end_recorded("a1b2c3").expect("lookup"), "an empty log has no end");
    // Another session's end that only mentions the id in its reason does not count.
    log.append(session_end("ffff00", TIME, Some("stopped by a1b2c3")))
        .await
        .expect("append");
    assert!(!log.session_end_recorded("a1b2c3").expect("lookup"));
    log.append(session_end("a1b2c3", TIME, None)).await.expect("append");
    assert!(log.session_end_recorded("a1b2c3").expect("lookup"));
    assert!(log.session_end_recorded("ffff00").expect("lookup"));
    assert!(!log.session_end_recorded("a1b2").expect("lookup"), "a prefix is not the id");
}
}
