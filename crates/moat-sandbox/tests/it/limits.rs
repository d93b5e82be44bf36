//! Resource limits: enforced where the host can, skipped with a printed reason where not.

use std::time::Duration;

use moat_sandbox::{Backend, CgroupSupport, ExitStatus, Placement, probe_cgroups};

use crate::support::{INIT, Session, python};

const MIB: u64 = 1024 * 1024;

/// Where this host can enforce the `limit` limit (`pick` takes it from the probe), or `None`
/// once it has printed why the calling test is skipped.
fn placement_or_skip(
    limit: &str,
    pick: impl FnOnce(&CgroupSupport) -> Option<Placement>,
) -> Option<Placement> {
    let cgroups = probe_cgroups();
    let placement = pick(&cgroups);
    if placement.is_none() {
        eprintln!(
            "skipped: this host cannot enforce a {limit} limit ({})",
            cgroups.notes.join("; ")
        );
    }
    placement
}

#[test]
fn a_fork_loop_stops_at_the_pids_limit() {
    let Some(placement) = placement_or_skip("pids", |cgroups| cgroups.pids.clone()) else {
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
    if placement_or_skip("memory", |cgroups| cgroups.memory.clone()).is_none() {
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

/// The timeout asks the agent to end (SIGTERM: the shell dies of it) and ends the whole
/// sandbox, the shell's background child included.
#[test]
fn the_timeout_ends_the_agent_with_sigterm_and_the_whole_sandbox() {
    let mut session = Session::new();
    // Long enough for the agent to have started: before it has, a timeout kills at once.
    session.limits.timeout = Some(Duration::from_secs(2));
    let spec = session.spec("sleep 60 & sleep 60");
    let ran = session.run_spec(&spec);
    assert!(ran.outcome.timed_out, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.status(), ExitStatus::Signal(libc::SIGTERM));
    assert_eq!(ran.outcome.reason.as_deref(), Some("timed out after 2s"));
}

/// An agent that ignores SIGTERM is killed, with the whole sandbox, once the grace has passed.
#[test]
fn an_agent_that_ignores_sigterm_is_killed_after_the_grace() {
    let mut session = Session::new();
    session.limits.timeout = Some(Duration::from_secs(2));
    session.limits.stop_grace = Some(Duration::from_millis(300));
    let spec = session.spec("trap '' TERM; sleep 60 & wait; sleep 60");
    let ran = session.run_spec(&spec);
    assert!(ran.outcome.timed_out, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.status(), ExitStatus::Signal(libc::SIGKILL));
}

#[test]
fn cpu_limit_is_recorded_as_enforced() {
    if placement_or_skip("cpu", |cgroups| cgroups.cpu.clone()).is_none() {
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

/// A stop asks the agent to end with SIGTERM: a shell dies of it, one that traps it exits as it
/// chooses; either way the session is marked stopped and nothing of it is left.
#[test]
fn stop_asks_the_agent_to_end_and_keeps_its_status() {
    for (script, status) in [
        (
            "echo READY; sleep 60 & sleep 60",
            ExitStatus::Signal(libc::SIGTERM),
        ),
        (
            "trap 'exit 5' TERM; echo READY; sleep 60 & wait",
            ExitStatus::Code(5),
        ),
    ] {
        let session = Session::new();
        let outcome = session.run_stopped(&session.spec(script), &Backend::Embedded, 1);
        assert!(outcome.stopped && !outcome.timed_out, "{outcome:?}");
        assert_eq!(outcome.status(), status, "{script}");
        assert_eq!(outcome.reason.as_deref(), Some("stopped"));
    }
}

/// A second stop does not wait for the grace: it kills at once.
#[test]
fn a_second_stop_kills_at_once() {
    let mut session = Session::new();
    session.limits.stop_grace = Some(Duration::from_secs(600));
    let spec = session.spec("trap '' TERM; echo READY; sleep 60 & wait; sleep 60");
    let outcome = session.run_stopped(&spec, &Backend::Embedded, 2);
    assert!(outcome.stopped, "{outcome:?}");
    assert_eq!(outcome.status(), ExitStatus::Signal(libc::SIGKILL));
}

/// A session with a cgroup of its own leaves its run work once the agent has exited (removing
/// the group, which needs the init gone), so `on_exit` says to wait for the run
/// (`Teardown::Run`, not `Kernel`); once the run returns, the group is gone.
#[test]
fn a_session_cgroup_is_waited_for_and_removed() {
    let Some(placement) = placement_or_skip("pids", |cgroups| cgroups.pids.clone()) else {
        return;
    };
    let mut session = Session::new();
    session.limits.pids = Some(64);
    let heard = std::sync::Mutex::new(None);
    let outcome = moat_sandbox::run_admitted(
        &session.spec("true"),
        moat_sandbox::Init::Program(std::path::Path::new(INIT)),
        &moat_sandbox::Stop::new().expect("stop"),
        moat_sandbox::Entry::admitted(&session.admission()).expect("entry"),
        Box::new(|_, teardown| *heard.lock().expect("heard") = Some(teardown)),
    )
    .expect("the sandbox runs");
    assert!(outcome.status().success(), "{outcome:?}");
    assert_eq!(
        heard.into_inner().expect("heard"),
        Some(moat_sandbox::Teardown::Run)
    );
    // The session's groups are named `moat-<pid>-<n>`, this process's pid.
    let ours = format!("moat-{}-", std::process::id());
    let left: Vec<String> = std::fs::read_dir(&placement.parent)
        .expect("the cgroup parent")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&ours))
        .collect();
    assert!(
        left.is_empty(),
        "left in {}: {left:?}",
        placement.parent.display()
    );
}
