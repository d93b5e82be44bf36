//! The system of record: tables derived from the log, live (synced as the log grows) and rebuilt
//! from scratch, and the questions `moat report` asks of them.

use moat_audit::record::{Record, ReportQuery};
use moat_audit::{AuditLog, DecisionEvent, Event, SessionStart};

use crate::store;

fn at(time: &str) -> jiff::Timestamp {
    time.parse().expect("timestamp")
}

fn start(session: &str, agent: &str, operator: &str, time: &str) -> Event {
    Event::SessionStart(SessionStart {
        time: at(time),
        session: session.to_owned(),
        operator: operator.to_owned(),
        agent: agent.to_owned(),
        command: vec!["npm".to_owned(), "install".to_owned()],
        workspace: "/work/app".to_owned(),
        read_only: Vec::new(),
        backend: "embedded".to_owned(),
        policy: "default".to_owned(),
        host: "build-1".to_owned(),
        enforced: vec!["network".to_owned()],
        waived: Vec::new(),
    })
}

fn end(session: &str, time: &str) -> Event {
    crate::session_end(session, time, None)
}

/// A decision by `identity` on `ecosystem`/`name`@`version` (`request`, `action`) at `time`.
fn decided(
    identity: &str,
    (ecosystem, name, version): (&str, &str, Option<&str>),
    request: &str,
    action: &str,
    time: &str,
) -> Event {
    let blocked = action == "block";
    Event::Decision(DecisionEvent {
        time: at(time),
        identity: identity.to_owned(),
        ecosystem: ecosystem.to_owned(),
        package: name.to_owned(),
        version: version.map(str::to_owned),
        request: request.to_owned(),
        action: action.to_owned(),
        rules: if blocked {
            vec!["moat.vulnerable".to_owned()]
        } else {
            Vec::new()
        },
        advisories: if blocked {
            vec!["GHSA-p6mc-m468-83gw".to_owned()]
        } else {
            Vec::new()
        },
        approved: if blocked {
            vec!["4.17.21".to_owned()]
        } else {
            Vec::new()
        },
        message: blocked.then(|| format!("{name} {} is vulnerable", version.unwrap_or("?"))),
        repeats: None,
    })
}

/// A day of activity in three rounds: two agents of two operators, an anonymous client.
fn rounds() -> Vec<Vec<Event>> {
    let a = "session:a1";
    let b = "session:b1";
    vec![
        vec![
            start("a1", "claude", "alice", "2026-03-01T09:00:00Z"),
            decided(
                a,
                ("npm", "lodash", None),
                "metadata",
                "allow",
                "2026-03-01T09:00:01Z",
            ),
            decided(
                a,
                ("npm", "lodash", Some("4.17.20")),
                "artifact",
                "block",
                "2026-03-01T09:00:02Z",
            ),
            decided(
                a,
                ("npm", "lodash", Some("4.17.21")),
                "artifact",
                "allow",
                "2026-03-01T09:00:03Z",
            ),
        ],
        vec![
            start("b1", "codex", "bob", "2026-03-01T10:00:00Z"),
            decided(
                b,
                ("PyPI", "requests", Some("2.32.3")),
                "artifact",
                "warn",
                "2026-03-01T10:00:01Z",
            ),
            decided(
                b,
                ("egress", "api.github.com:443", None),
                "connect",
                "allow",
                "2026-03-01T10:00:02Z",
            ),
            decided(
                b,
                ("egress", "evil.example:443", None),
                "connect",
                "block",
                "2026-03-01T10:00:03Z",
            ),
            decided(
                a,
                ("npm", "lodash", Some("4.17.21")),
                "artifact",
                "allow",
                "2026-03-01T10:00:04Z",
            ),
            end("a1", "2026-03-01T10:30:00Z"),
        ],
        vec![
            decided(
                "anonymous@127.0.0.1",
                ("crates.io", "serde", Some("1.0.210")),
                "artifact",
                "allow",
                "2026-03-02T08:00:00Z",
            ),
            decided(
                b,
                ("crates.io", "serde", Some("1.0.210")),
                "artifact",
                "allow",
                "2026-03-02T08:00:01Z",
            ),
            decided(
                b,
                ("npm", "lodash", Some("4.17.21")),
                "version",
                "allow",
                "2026-03-02T08:00:02Z",
            ),
        ],
    ]
}

async fn append_all(log: &AuditLog, events: Vec<Event>) {
    for event in events {
        log.append(event).await.expect("append");
    }
}

/// The log of [`rounds`], with a record synced after every round (the live tables).
async fn live() -> (tempfile::TempDir, AuditLog, Record) {
    let (dir, _path, log) = store();
    let mut record = Record::open(&dir.path().join("record.db")).expect("open record");
    for round in rounds() {
        append_all(&log, round).await;
        let synced = record.sync(&log).expect("sync");
        assert!(!synced.rebuilt, "{synced:?}");
    }
    (dir, log, record)
}

#[tokio::test]
async fn a_rebuild_equals_the_live_tables() {
    let (dir, log, mut live) = live().await;
    let live_rows = live.dump().unwrap();
    assert!(live_rows.len() > 10, "{live_rows:#?}");

    let mut fresh = Record::open(&dir.path().join("rebuilt.db")).unwrap();
    let report = fresh.rebuild(&log).unwrap();
    assert_eq!((report.folded, report.through), (13, 13));
    assert_eq!(fresh.dump().unwrap(), live_rows);

    // Rebuilding the live record in place gives the same rows again.
    live.rebuild(&log).unwrap();
    assert_eq!(live.dump().unwrap(), live_rows);
    // And a sync with nothing new changes nothing.
    assert_eq!(live.sync(&log).unwrap().folded, 0);
    assert_eq!(live.dump().unwrap(), live_rows);
}

#[tokio::test]
async fn two_records_syncing_one_file_fold_each_event_once() {
    let (dir, log, live) = live().await;
    let path = dir.path().join("shared.db");
    let mut first = Record::open(&path).unwrap();
    let mut second = Record::open(&path).unwrap();
    append_all(&log, rounds().remove(0)).await;
    let (one, two) = (first.sync(&log).unwrap(), second.sync(&log).unwrap());
    assert_eq!((one.folded, two.folded), (17, 0));
    let mut again = Record::open(&dir.path().join("again.db")).unwrap();
    again.sync(&log).unwrap();
    assert_eq!(second.dump().unwrap(), again.dump().unwrap());
    drop(live);
}

#[tokio::test]
async fn the_report_answers_who_ran_what_consumed_and_was_refused() {
    let (_dir, _log, record) = live().await;
    let all = record.report(&ReportQuery::default()).unwrap();

    // Which agents run, who operates them: a1 ended, b1 has no end.
    let agents: Vec<_> = all
        .agents
        .iter()
        .map(|a| (a.agent.as_str(), a.operator.as_str(), a.sessions, a.running))
        .collect();
    assert_eq!(agents, [("claude", "alice", 1, 0), ("codex", "bob", 1, 1)]);
    assert_eq!(all.sessions[0].ended, Some(at("2026-03-01T10:30:00Z")));
    assert_eq!(all.sessions[1].ended, None);

    // Which packages and versions each agent consumed: artifacts only, blocked ones not.
    let consumed: Vec<_> = all
        .packages
        .iter()
        .map(|p| {
            (
                p.agent.as_deref(),
                p.name.as_str(),
                p.version.as_str(),
                p.downloads,
                p.action.as_str(),
            )
        })
        .collect();
    assert_eq!(
        consumed,
        [
            (Some("claude"), "lodash", "4.17.21", 2, "allow"),
            (Some("codex"), "requests", "2.32.3", 1, "warn"),
            (None, "serde", "1.0.210", 1, "allow"),
            (Some("codex"), "serde", "1.0.210", 1, "allow"),
        ]
    );

    // What was blocked and why: the registry refusal and the egress refusal, with reasons.
    let blocked: Vec<_> = all
        .blocked
        .iter()
        .map(|b| {
            (
                b.seq,
                b.agent.as_deref(),
                b.name.as_str(),
                b.message.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        blocked,
        [
            (
                3,
                Some("claude"),
                "lodash",
                Some("lodash 4.17.20 is vulnerable")
            ),
            (
                8,
                Some("codex"),
                "evil.example:443",
                Some("evil.example:443 ? is vulnerable")
            ),
        ]
    );
    assert_eq!(all.blocked[0].advisories, ["GHSA-p6mc-m468-83gw"]);
    assert_eq!(all.blocked[0].approved, ["4.17.21"]);
    let hosts: Vec<_> = all
        .egress
        .iter()
        .map(|e| (e.host.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("api.github.com:443", "allow"),
            ("evil.example:443", "block")
        ]
    );

    // Who installed serde: an anonymous client and codex (bob).
    let serde = record
        .report(&ReportQuery {
            package: Some("serde".to_owned()),
            ..ReportQuery::default()
        })
        .unwrap();
    let who: Vec<_> = serde
        .packages
        .iter()
        .map(|p| (p.identity.as_str(), p.operator.as_deref()))
        .collect();
    assert_eq!(
        who,
        [("anonymous@127.0.0.1", None), ("session:b1", Some("bob"))]
    );
    assert_eq!(serde.sessions.len(), 1);
    assert!(serde.egress.is_empty());

    // A version pin narrows it; a version nobody fetched finds nothing.
    let pinned = |spec: &str| {
        record
            .report(&ReportQuery {
                package: Some(spec.to_owned()),
                ..ReportQuery::default()
            })
            .unwrap()
    };
    assert_eq!(pinned("lodash@4.17.20").blocked.len(), 1);
    assert!(pinned("lodash@4.17.20").packages.is_empty());
    assert_eq!(pinned("lodash@4.17.20").agents[0].agent, "claude");
    assert!(pinned("lodash@1.0.0").packages.is_empty());

    // By agent and by operator: only their sessions' rows, anonymous ones left out.
    let codex = record
        .report(&ReportQuery {
            agent: Some("codex".to_owned()),
            ..ReportQuery::default()
        })
        .unwrap();
    assert!(
        codex
            .packages
            .iter()
            .all(|p| p.agent.as_deref() == Some("codex"))
    );
    assert_eq!(codex.packages.len(), 2);
    assert_eq!(codex.egress.len(), 2);
    let alice = record
        .report(&ReportQuery {
            operator: Some("alice".to_owned()),
            ..ReportQuery::default()
        })
        .unwrap();
    assert_eq!(alice.sessions.len(), 1);
    assert_eq!(alice.blocked.len(), 1);

    // Since: what happened on the second day, and the sessions still running then.
    let day_two = record
        .report(&ReportQuery {
            since: Some(at("2026-03-02T00:00:00Z")),
            ..ReportQuery::default()
        })
        .unwrap();
    assert_eq!(day_two.packages.len(), 2);
    assert!(day_two.blocked.is_empty());
    let open: Vec<_> = day_two
        .sessions
        .iter()
        .map(|s| s.session.as_str())
        .collect();
    assert_eq!(open, ["b1"]);
}

#[tokio::test]
async fn a_record_of_another_log_is_rebuilt() {
    let (dir, _log, mut record) = live().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = AuditLog::open(&other_dir.path().join("audit.db")).unwrap();
    append_all(
        &other,
        vec![start("z9", "aider", "carol", "2026-04-01T00:00:00Z")],
    )
    .await;
    let synced = record.sync(&other).unwrap();
    assert!(synced.rebuilt);
    assert_eq!(synced.through, 1);
    let report = record.report(&ReportQuery::default()).unwrap();
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.sessions[0].agent, "aider");
    assert!(report.packages.is_empty());
    drop(dir);
}

#[tokio::test]
async fn a_long_log_is_folded_in_pages() {
    let (dir, _path, log) = store();
    let downloads = 5000;
    let appends: Vec<_> = (0..downloads)
        .map(|i| {
            let log = log.clone();
            let version = format!("1.0.{}", i % 7);
            tokio::spawn(async move {
                let event = decided(
                    "anonymous@127.0.0.1",
                    ("npm", "left-pad", Some(&version)),
                    "artifact",
                    "allow",
                    "2026-03-01T09:00:00Z",
                );
                log.append(event).await
            })
        })
        .collect();
    for append in appends {
        append.await.unwrap().unwrap();
    }
    let mut record = Record::open(&dir.path().join("record.db")).unwrap();
    let synced = record.sync(&log).unwrap();
    assert_eq!((synced.folded, synced.through), (downloads, downloads));
    let packages = record.report(&ReportQuery::default()).unwrap().packages;
    assert_eq!(packages.len(), 7);
    assert_eq!(packages.iter().map(|p| p.downloads).sum::<u64>(), downloads);
}

/// `event`, a decision, as the tally of `count` answers repeating seq `of`, the last at `last`.
fn tally(event: Event, of: u64, count: u64, last: &str) -> Event {
    let Event::Decision(decision) = event else {
        unreachable!("a decision");
    };
    Event::Decision(DecisionEvent {
        repeats: Some(moat_audit::Repeats {
            of,
            count,
            last: at(last),
        }),
        ..decision
    })
}

#[tokio::test]
async fn a_tally_counts_as_the_answers_it_stands_for() {
    let (dir, _path, log) = store();
    let me = "session:t1";
    let artifact = |time| {
        decided(
            me,
            ("npm", "lodash", Some("4.17.21")),
            "artifact",
            "allow",
            time,
        )
    };
    let refused = |time| {
        decided(
            me,
            ("npm", "lodash", Some("4.17.20")),
            "artifact",
            "block",
            time,
        )
    };
    let egress = |time| {
        decided(
            me,
            ("egress", "example.com:443", None),
            "connect",
            "block",
            time,
        )
    };
    append_all(
        &log,
        vec![
            start("t1", "claude", "alice", "2026-04-01T10:00:00Z"),
            artifact("2026-04-01T10:00:01Z"),
            refused("2026-04-01T10:00:02Z"),
            egress("2026-04-01T10:00:03Z"),
            tally(
                artifact("2026-04-01T10:00:04Z"),
                2,
                5,
                "2026-04-01T10:00:05Z",
            ),
            tally(
                refused("2026-04-01T10:00:04Z"),
                3,
                3,
                "2026-04-01T10:00:06Z",
            ),
            tally(egress("2026-04-01T10:00:04Z"), 4, 2, "2026-04-01T10:00:07Z"),
            end("t1", "2026-04-01T10:01:00Z"),
        ],
    )
    .await;
    let mut record = Record::open(&dir.path().join("record.db")).unwrap();
    record.sync(&log).unwrap();
    let report = record.report(&ReportQuery::default()).unwrap();

    let package = &report.packages[0];
    assert_eq!(
        (package.version.as_str(), package.downloads),
        ("4.17.21", 6)
    );
    assert_eq!(
        (package.first, package.last),
        (at("2026-04-01T10:00:01Z"), at("2026-04-01T10:00:05Z"))
    );
    // One refusal, refused four times: one row.
    assert_eq!(report.blocked.len(), 2, "{:#?}", report.blocked);
    let lodash = &report.blocked[0];
    assert_eq!((lodash.seq, lodash.requests), (3, 4));
    assert_eq!(lodash.last, at("2026-04-01T10:00:06Z"));
    let host = &report.egress[0];
    assert_eq!((host.host.as_str(), host.requests), ("example.com:443", 3));
    assert_eq!(host.last, at("2026-04-01T10:00:07Z"));

    // A rebuild folds the same counts.
    let mut fresh = Record::open(&dir.path().join("rebuilt.db")).unwrap();
    fresh.rebuild(&log).unwrap();
    assert_eq!(fresh.dump().unwrap(), record.dump().unwrap());
}
