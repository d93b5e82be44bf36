//! Crash safety: the gate is killed with SIGKILL while decisions are in flight and restarted on
//! the same data dir. Every decision a client received an answer for is in the log (the gate
//! records before it answers), the log verifies, and the restarted gate keeps appending.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use moat_test_support::gate::{GateArgs, MoatGate};
use moat_test_support::npm::{FixtureRegistry, Package};
use moat_test_support::raw_http::{self, RawResponse};

use crate::{MOAT, POLICY};

/// One package with many versions: each `/-/why/npm/crash-pkg/<version>` is a distinct
/// decision, and after the first request the packument is cached, so the audit log is what the
/// requests wait on.
const PACKAGE: &str = "crash-pkg";
/// Versions requested under load; one more is kept for after the restart.
const UNDER_LOAD: usize = 600;
/// Concurrent clients.
const CLIENTS: usize = 24;
/// The gate is killed once this many answers have arrived (not after a sleep).
const KILL_AFTER: usize = 150;

fn version(index: usize) -> String {
    format!("1.0.{index}")
}

/// What the clients saw, shared with the test thread.
#[derive(Default)]
struct Progress {
    /// Versions whose decision came back complete (200 with the verdict JSON).
    answered: Vec<String>,
    /// Answers that were not a decision: never expected from a live gate.
    unexpected: Vec<String>,
    /// Requests sent so far.
    sent: usize,
    /// Clients that stopped (the gate went away, or no versions left).
    stopped: usize,
}

struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
    next: AtomicUsize,
}

/// A complete answer to `/-/why/npm/crash-pkg/<version>?format=json`: the verdict on that
/// version, parsed in full.
fn is_decision(response: &RawResponse, version: &str) -> bool {
    let Ok(verdict) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
        return false;
    };
    response.status == 200 && verdict["package"] == PACKAGE && verdict["version"] == version
}

/// Request versions until there are none left or the gate is gone.
fn client(gate: &str, shared: &Shared) {
    loop {
        let index = shared.next.fetch_add(1, Ordering::SeqCst);
        if index >= UNDER_LOAD {
            break;
        }
        let version = version(index);
        shared.progress.lock().unwrap().sent += 1;
        let path = format!("/-/why/npm/{PACKAGE}/{version}?format=json");
        let Ok(response) = raw_http::try_request(gate, "GET", &path, &[]) else {
            // Killed before or while answering: this decision may or may not be recorded.
            break;
        };
        let mut progress = shared.progress.lock().unwrap();
        if is_decision(&response, &version) {
            progress.answered.push(version);
        } else if response.status == 200 {
            // Cut off by the kill mid-body: an answer was on its way, so the decision was
            // recorded, but the client cannot tell which; not counted as answered.
        } else {
            let text = response.text();
            progress
                .unexpected
                .push(format!("{version}: {} {text}", response.status));
        }
        drop(progress);
        shared.changed.notify_all();
    }
    shared.progress.lock().unwrap().stopped += 1;
    shared.changed.notify_all();
}

/// The versions of `crash-pkg` the log holds a `why` decision for.
fn logged_versions(gate: &MoatGate) -> BTreeSet<String> {
    let listed = gate.run(&["audit", "list", "--json", "--package", PACKAGE]);
    listed.assert_success();
    listed
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|stored| &stored["event"])
        .filter(|event| event["type"] == "decision" && event["request"] == "why")
        .filter_map(|event| event["version"].as_str().map(str::to_owned))
        .collect()
}

fn assert_verifies(gate: &MoatGate) -> u64 {
    let verified = gate.run(&["audit", "verify", "--json"]);
    verified.assert_success();
    verified.json()["size"].as_u64().expect("size")
}

#[test]
fn answered_decisions_survive_a_sigkill_and_the_log_keeps_growing() {
    let versions: Vec<String> = (0..=UNDER_LOAD).map(version).collect();
    let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
    let upstream = FixtureRegistry::start([Package::new(PACKAGE).versions(&versions)]);
    let (advisories, popular) = (crate::advisories(), crate::popular());
    let data = tempfile::Builder::new()
        .prefix("moat-data-")
        .tempdir()
        .expect("temp dir");
    // Each start listens on a fresh port: only the data dir (the audit log) is shared.
    let start_gate = || {
        let args = GateArgs::new(upstream.url(), advisories.path(), popular.path(), POLICY)
            .data_dir(data.path());
        MoatGate::start(Path::new(MOAT), args)
    };
    let mut gate = start_gate();
    let url = gate.url().to_owned();

    let shared = Arc::new(Shared {
        progress: Mutex::new(Progress::default()),
        changed: Condvar::new(),
        next: AtomicUsize::new(0),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, shared) = (url.clone(), Arc::clone(&shared));
            std::thread::spawn(move || client(&url, &shared))
        })
        .collect();

    let progress = shared
        .changed
        .wait_while(shared.progress.lock().unwrap(), |progress| {
            progress.answered.len() < KILL_AFTER && progress.stopped < CLIENTS
        })
        .unwrap();
    assert!(
        progress.answered.len() >= KILL_AFTER,
        "the clients stopped after {} answers: {:?}\n--- gate ---\n{}",
        progress.answered.len(),
        progress.unexpected,
        gate.output()
    );
    let in_flight = progress.sent - progress.answered.len() - progress.unexpected.len();
    drop(progress);
    // `Child::kill` is SIGKILL: no shutdown, no flush, no destructor runs in the gate.
    gate.stop();
    for client in clients {
        client.join().expect("client thread");
    }
    let progress = shared.progress.lock().unwrap();
    assert!(progress.unexpected.is_empty(), "{:?}", progress.unexpected);
    let answered: BTreeSet<String> = progress.answered.iter().cloned().collect();
    let sent = progress.sent;
    drop(progress);

    // The log as the kill left it verifies, and holds every answered decision.
    let size = assert_verifies(&gate);
    let logged = logged_versions(&gate);
    eprintln!(
        "killed with {in_flight} requests in flight; {} answered of {sent} sent, {} logged",
        answered.len(),
        logged.len()
    );
    let missing: Vec<&String> = answered.difference(&logged).collect();
    assert!(missing.is_empty(), "answered but not logged: {missing:?}");
    assert!(
        logged.len() <= sent,
        "more decisions logged ({}) than requests sent ({sent})",
        logged.len()
    );

    // The restarted gate opens the same log and keeps appending to it.
    let gate = start_gate();
    let last = version(UNDER_LOAD);
    let path = format!("/-/why/npm/{PACKAGE}/{last}?format=json");
    let response = raw_http::get(gate.url(), &path);
    assert!(is_decision(&response, &last), "{}", response.text());
    assert!(logged_versions(&gate).contains(&last));
    assert!(assert_verifies(&gate) > size);
}
