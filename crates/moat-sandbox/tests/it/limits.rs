//! Resource limits: enforced where the host can, skipped with a printed reason where not.

use std::time::Duration;

use moat_sandbox::{ExitStatus, probe_cgroups};

use crate::support::{Session, python};

const MIB: u64 = 1024 * 1024;

#[test]
fn a_fork_loop_stops_at_the_pids_limit() {
    let cgroups = probe_cgroups();
    let Some(placement) = cgroups.pids else {
        eprintln!(
            "skipped: this host cannot enforce a pids limit ({})",
            cgroups.notes.join("; ")
        );
        return;
    };
    let mut session = Session::new();
    session.limits.pids = Some(16);
    let ran = session.run(&python(
        "import os, time\ncount = 0\ntry:\n    for _ in range(500):\n        pid = os.fork()\n        if pid == 0:\n            time.sleep(30)\n            os._exit(0)\n        count += 1\n    print(\"FORK-UNLIMITED\", count)\nexcept OSError as error:\n    print(\"fork stopped\", count, error.errno)",
    ));
    ran.completed()
        .refute("FORK-UNLIMITED")
        .expect("fork stopped");
    assert!(
        ran.outcome
            .enforced
            .iter()
            .any(|held| held.starts_with("pids limit")),
        "{:?} ({:?})",
        ran.outcome.enforced,
        placement.version
    );
}

#[test]
fn allocating_past_the_memory_limit_fails() {
    let cgroups = probe_cgroups();
    if cgroups.memory.is_none() {
        eprintln!(
            "skipped: this host cannot enforce a memory limit ({})",
            cgroups.notes.join("; ")
        );
        return;
    }
    let mut session = Session::new();
    session.limits.memory = Some(64 * MIB);
    let ran = session.run(&format!(
        "{}\necho python exited $?",
        python("data = b\"x\" * (512 * 1024 * 1024)\nprint(\"ALLOCATED\", len(data))")
    ));
    ran.completed().refute("ALLOCATED");
    assert!(
        ran.outcome
            .enforced
            .iter()
            .any(|held| held.starts_with("memory limit")),
        "{:?}",
        ran.outcome.enforced
    );
}

#[test]
fn the_timeout_kills_the_whole_sandbox() {
    let mut session = Session::new();
    session.limits.timeout = Some(Duration::from_millis(500));
    let spec = session.spec("sleep 60 & sleep 60");
    let ran = session.run_spec(&spec);
    assert!(ran.outcome.timed_out, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.status(), ExitStatus::Signal(9));
    assert_eq!(ran.outcome.reason.as_deref(), Some("timed out after 0.5s"));
}

#[test]
fn cpu_limit_is_recorded_as_enforced() {
    let cgroups = probe_cgroups();
    if cgroups.cpu.is_none() {
        eprintln!(
            "skipped: this host cannot enforce a cpu limit ({})",
            cgroups.notes.join("; ")
        );
        return;
    }
    let mut session = Session::new();
    session.limits.cpus = Some(0.5);
    let ran = session.run("true");
    ran.completed();
    assert!(
        ran.outcome
            .enforced
            .iter()
            .any(|held| held.starts_with("cpu limit")),
        "{:?}",
        ran.outcome.enforced
    );
}

#[test]
fn stop_kills_the_whole_sandbox() {
    let session = Session::new();
    let spec = session.spec("sleep 60 & sleep 60");
    let stop = moat_sandbox::Stop::new().expect("stop");
    let trigger = stop.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        trigger.stop();
    });
    let outcome = moat_sandbox::run_with_stop(
        &spec,
        &session.admission(),
        std::path::Path::new(env!("CARGO_BIN_EXE_moat-sandbox-init")),
        &stop,
    )
    .expect("the sandbox runs");
    stopper.join().expect("stopper");
    assert!(outcome.stopped && !outcome.timed_out, "{outcome:?}");
    assert_eq!(outcome.status(), ExitStatus::Signal(9));
    assert_eq!(outcome.reason.as_deref(), Some("stopped"));
}
