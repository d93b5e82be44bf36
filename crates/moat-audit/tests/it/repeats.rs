//! Repeated answers: `record_decision` appends a decision in full once, counts the identical
//! answers after it, and appends the counts as tally events (see `moat_audit::tally`).

use std::time::Duration;

use moat_audit::{
    AuditError, AuditLog, DecisionEvent, Event, ListQuery, Recorded, RepeatMode, Repeats,
};

/// The decision `crate::decision` builds, at `second` past its fixed time.
fn answer(package: &str, second: i64) -> DecisionEvent {
    let Event::Decision(mut decision) = crate::decision("npm", package, "allow") else {
        unreachable!("crate::decision builds a decision");
    };
    decision.time = decision
        .time
        .checked_add(jiff::SignedDuration::from_secs(second))
        .expect("time");
    decision
}

fn decisions(log: &AuditLog) -> Vec<(u64, DecisionEvent)> {
    log.list(&ListQuery::default())
        .expect("list")
        .into_iter()
        .map(|stored| match stored.event {
            Event::Decision(decision) => (stored.seq, decision),
            other @ (Event::SessionStart(_) | Event::SessionEnd(_)) => {
                panic!("not a decision: {other:?}")
            }
        })
        .collect()
}

on_both_backends! {
#[tokio::test]
async fn an_identical_answer_is_counted_and_its_tally_appended_once(store) {
    let log = store.open();
    assert_eq!(
        log.record_decision(answer("left-pad", 0)).await.unwrap(),
        Recorded::Appended(1)
    );
    for second in [1, 2, 4, 3] {
        assert_eq!(
            log.record_decision(answer("left-pad", second)).await.unwrap(),
            Recorded::Counted
        );
    }
    // Another package is another decision.
    assert_eq!(
        log.record_decision(answer("right-pad", 5)).await.unwrap(),
        Recorded::Appended(2)
    );
    assert_eq!(log.count().unwrap(), 2);

    log.flush_repeats().await.unwrap();
    let stored = decisions(&log);
    assert_eq!(stored.len(), 3);
    let (seq, tally) = &stored[2];
    assert_eq!(*seq, 3);
    assert_eq!(
        *tally,
        DecisionEvent {
            repeats: Some(Repeats {
                of: 1,
                count: 4,
                last: answer("left-pad", 4).time,
            }),
            ..answer("left-pad", 1)
        }
    );
    assert_eq!(tally.answers(), 4);
    // Nothing more to tally; the tally is signed and verifies like any event.
    log.flush_repeats().await.unwrap();
    assert_eq!(log.count().unwrap(), 3);
    let report = log.verify(&log.verifier().unwrap(), None).unwrap();
    assert!(report.is_clean(), "{report:#?}");
}
}

on_both_backends! {
#[tokio::test]
async fn in_record_mode_every_answer_is_appended_in_full(store) {
    let log = store.open();
    log.set_repeat_mode(RepeatMode::Record);
    for second in 0..3 {
        assert_eq!(
            log.record_decision(answer("left-pad", second)).await.unwrap(),
            Recorded::Appended(second as u64 + 1)
        );
    }
    log.flush_repeats().await.unwrap();
    assert!(decisions(&log).iter().all(|(_, d)| d.repeats.is_none()));
    assert_eq!(log.count().unwrap(), 3);
}
}

on_both_backends! {
#[tokio::test]
async fn shutdown_appends_the_counts_first(store) {
    let log = store.open();
    log.record_decision(answer("left-pad", 0)).await.unwrap();
    log.record_decision(answer("left-pad", 1)).await.unwrap();
    log.record_decision(answer("left-pad", 2)).await.unwrap();
    log.shutdown().await;
    let reader = store.read_only();
    let stored = decisions(&reader);
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[1].1.repeats,
        Some(Repeats { of: 1, count: 2, last: answer("left-pad", 2).time })
    );
}
}

on_both_backends! {
#[tokio::test]
async fn the_counts_are_appended_unasked(store) {
    let log = store.open();
    log.record_decision(answer("left-pad", 0)).await.unwrap();
    log.record_decision(answer("left-pad", 1)).await.unwrap();
    // Appended by a task of the log's own within about a second; the deadline only stops a
    // broken build from hanging.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while log.count().unwrap() < 2 {
        assert!(std::time::Instant::now() < deadline, "the tally was never appended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(decisions(&log)[1].1.answers(), 1);
}
}

on_both_backends! {
/// No record, no answer: a repeat is answered on the strength of its committed record only
/// while the store takes appends. A failure forgets every remembered decision, so the next
/// answers wait for full appends, which fail until the store recovers; the counts that could
/// not be appended are reported lost.
#[tokio::test]
async fn a_failing_store_answers_no_more_repeats(store) {
    let log = store.open();
    log.record_decision(answer("left-pad", 0)).await.unwrap();
    store.fail_inserts(None);
    // The failure is not known yet: this answer is counted (the window the tally documents).
    assert_eq!(
        log.record_decision(answer("left-pad", 1)).await.unwrap(),
        Recorded::Counted
    );
    let Err(AuditError::Store(message)) = log.flush_repeats().await else {
        panic!("the tally cannot be appended to a failing store");
    };
    assert!(message.ends_with("(repeated answers whose count is lost: 1)"), "{message}");
    for second in 2..4 {
        assert!(log.record_decision(answer("left-pad", second)).await.is_err());
    }
    store.allow_inserts();
    assert_eq!(
        log.record_decision(answer("left-pad", 4)).await.unwrap(),
        Recorded::Appended(2)
    );
}
}

on_both_backends! {
#[tokio::test]
async fn after_shutdown_a_repeat_is_refused(store) {
    let log = store.open();
    log.record_decision(answer("left-pad", 0)).await.unwrap();
    log.shutdown().await;
    assert!(matches!(
        log.record_decision(answer("left-pad", 1)).await,
        Err(AuditError::WriterGone)
    ));
}
}
