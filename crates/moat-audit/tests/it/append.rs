use std::collections::HashMap;

use moat_audit::ListQuery;

use crate::{decision, package};

on_both_backends! {
#[tokio::test]
async fn append_then_list_round_trips(store) {
    let log = store.open();
    let event = decision("npm", "left-pad", "allow");
    let seq = log.append(event.clone()).await.unwrap();
    assert_eq!(seq, 1);

    let stored = log.list(&ListQuery::default()).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].seq, 1);
    assert_eq!(stored[0].event, event);
    assert_eq!(log.count().unwrap(), 1);
}
}

on_both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_gapless_ascending_seqs(store) {
    let log = store.open();
    let mut tasks = Vec::new();
    for task in 0..64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..100 {
                let name = format!("task-{task}-event-{i}");
                let seq = log.append(decision("npm", &name, "allow")).await.unwrap();
                seqs.push((seq, name));
            }
            seqs
        }));
    }
    let mut answered = HashMap::new();
    for task in tasks {
        for (seq, name) in task.await.unwrap() {
            assert!(
                answered.insert(seq, name).is_none(),
                "seq {seq} handed out twice"
            );
        }
    }
    let mut seqs: Vec<u64> = answered.keys().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=6400).collect::<Vec<u64>>());

    // Each append was answered with the seq its own event was stored under.
    let stored = log.list(&ListQuery::default()).unwrap();
    assert_eq!(stored.len(), 6400);
    for (expected, event) in (1..).zip(&stored) {
        assert_eq!(event.seq, expected);
        assert_eq!(package(&event.event), answered[&event.seq]);
    }
    // 64 concurrent writers share transactions.
    let stats = log.stats();
    assert_eq!(stats.events, 6400);
    assert!(stats.batches <= 6400);
}
}

on_both_backends! {
#[tokio::test]
async fn reopen_keeps_events_and_continues_the_sequence(store) {
    let log = store.open();
    for name in ["a", "b", "c"] {
        log.append(decision("npm", name, "allow")).await.unwrap();
    }
    log.shutdown().await;
    drop(log);

    let log = store.open();
    assert_eq!(log.count().unwrap(), 3);
    let seq = log.append(decision("npm", "d", "block")).await.unwrap();
    assert_eq!(seq, 4);
    let names: Vec<_> = log
        .list(&ListQuery::default())
        .unwrap()
        .iter()
        .map(|stored| package(&stored.event).to_owned())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
}
}

on_both_backends! {
#[test]
fn append_blocking_works_without_a_runtime(store) {
    let log = store.open();
    assert_eq!(
        log.append_blocking(decision("PyPI", "requests", "warn"))
            .unwrap(),
        1
    );
    assert_eq!(
        log.append_blocking(decision("PyPI", "flask", "allow"))
            .unwrap(),
        2
    );
    assert_eq!(log.count().unwrap(), 2);
}
}
