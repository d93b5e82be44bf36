//! What only the podman backend has: its exit, timeout and stop handling through `podman`,
//! limits through podman's cgroups, a local image or root directory, the stdin frame through
//! `podman run -i`, and its setup failures. The escape tests and the gate port run under both
//! backends (`escape.rs`, `gate.rs`).
//!
//! Each test skips with a printed reason when podman is not installed or cannot run a
//! container here (the probe says why). With `MOAT_REQUIRE_PODMAN=1` a skip is a failure
//! instead, so CI that installs podman cannot pass vacuously.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use moat_sandbox::{Backend, ExitStatus, SandboxError};

use crate::support::{INIT, INIT_OVERRIDE, NPMRC, Session, podman, python};

#[test]
fn podman_exit_status_timeout_and_stop_are_honoured() {
    let Some(backend) = podman("podman_exit_status_timeout_and_stop_are_honoured") else {
        return;
    };
    let session = Session::new();
    let code = session.run_backend(&session.spec("exit 7"), &backend);
    assert_eq!(
        code.outcome.status(),
        ExitStatus::Code(7),
        "{:?}",
        code.outcome
    );
    assert!(code.outcome.usage.user_cpu + code.outcome.usage.system_cpu > Duration::ZERO);

    let mut timed = Session::new();
    // Long enough for the container to have started: before its agent has, a timeout kills.
    timed.limits.timeout = Some(Duration::from_secs(4));
    // The agent gets SIGTERM (the shell dies of it), as with the embedded backend.
    let ran = timed.run_backend(&timed.spec("sleep 60 & sleep 60"), &backend);
    assert!(ran.outcome.timed_out, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.status(), ExitStatus::Signal(libc::SIGTERM));
    assert!(
        ran.outcome.duration < Duration::from_secs(15),
        "{:?}",
        ran.outcome
    );

    // An agent that traps SIGTERM exits as it chooses; one that ignores it is killed after the
    // grace.
    for (script, status) in [
        (
            "trap 'exit 5' TERM; echo READY; sleep 60 & wait",
            ExitStatus::Code(5),
        ),
        (
            "trap '' TERM; echo READY; sleep 60 & wait; sleep 60",
            ExitStatus::Signal(libc::SIGKILL),
        ),
    ] {
        let mut stopped = Session::new();
        stopped.limits.stop_grace = Some(Duration::from_secs(1));
        let outcome = stopped.run_stopped(&stopped.spec(script), &backend, 1);
        assert!(outcome.stopped && !outcome.timed_out, "{outcome:?}");
        assert_eq!(outcome.status(), status, "{script}: {outcome:?}");
        assert_eq!(outcome.reason.as_deref(), Some("stopped"));
    }
}

#[test]
fn podman_a_fork_loop_and_memory_hog_stop_at_the_limits() {
    let Some(backend) = podman("podman_a_fork_loop_and_memory_hog_stop_at_the_limits") else {
        return;
    };
    let mut session = Session::new();
    session.limits.pids = Some(16);
    session.limits.memory = Some(64 * 1024 * 1024);
    let spec = session.spec(&format!(
        "{}\n{}\necho python exited $?",
        python(
            "import os, time\ncount = 0\ntry:\n    for _ in range(500):\n        pid = os.fork()\n        if pid == 0:\n            time.sleep(30)\n            os._exit(0)\n        count += 1\n    print(\"FORK-UNLIMITED\", count)\nexcept OSError as error:\n    print(\"fork stopped\", count, error.errno)"
        ),
        python("data = b\"x\" * (512 * 1024 * 1024)\nprint(\"ALLOCATED\", len(data))")
    ));
    let outcome = moat_sandbox::run_backend(
        &backend,
        &spec,
        &session.admission(),
        Path::new(INIT),
        &moat_sandbox::Stop::new().expect("stop"),
    );
    let outcome = match outcome {
        Err(SandboxError::Unavailable { what, .. }) => {
            eprintln!("skipped: podman cannot enforce the limits here: {what}");
            return;
        }
        other => other.expect("the sandbox runs"),
    };
    let stdout = fs::read_to_string(session.workspace().join(".stdout")).unwrap_or_default();
    eprintln!("{stdout}\n{outcome:?}");
    assert!(stdout.contains("SCRIPT-DONE"), "{stdout}");
    assert!(stdout.contains("fork stopped"), "{stdout}");
    assert!(!stdout.contains("FORK-UNLIMITED"), "{stdout}");
    assert!(!stdout.contains("ALLOCATED"), "{stdout}");
    for limit in ["pids limit", "memory limit"] {
        assert!(
            outcome.enforced.iter().any(|held| held.starts_with(limit)),
            "{:?}",
            outcome.enforced
        );
    }
}

/// A minimal root of the host's own binaries (no `/usr`, real `/bin` and `/lib` directories),
/// or `None` when this host lays them out differently.
fn minimal_root(dir: &Path) -> Option<()> {
    let files = [
        ("/usr/bin/dash", "bin/sh"),
        ("/usr/bin/cat", "bin/cat"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        (
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "lib/x86_64-linux-gnu/libgcc_s.so.1",
        ),
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
    ];
    for (source, target) in files {
        let target = dir.join(target);
        fs::create_dir_all(target.parent()?).ok()?;
        fs::copy(source, &target).ok()?;
    }
    fs::create_dir_all(dir.join("etc")).ok()?;
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").ok()?;
    Some(())
}

#[test]
fn podman_a_local_image_or_root_directory_replaces_the_host_root() {
    let Some(Backend::Podman { program, .. }) =
        podman("podman_a_local_image_or_root_directory_replaces_the_host_root")
    else {
        return;
    };
    let root = tempfile::tempdir().expect("root dir");
    if minimal_root(root.path()).is_none() {
        eprintln!("skipped: this host's dash, cat and C library are not at Debian's x86_64 paths");
        return;
    }
    let script =
        "cat ~/.npmrc\ntest -e /usr/bin/python3 && echo HOST-USR-VISIBLE\necho from-image > made";

    let session = Session::new();
    let directory = Backend::Podman {
        program: program.clone(),
        image: Some(root.path().display().to_string()),
    };
    let ran = session.run_backend(&session.spec(script), &directory);
    ran.completed()
        .expect(std::str::from_utf8(NPMRC).expect("utf-8").trim())
        .refute("HOST-USR-VISIBLE");
    assert_eq!(
        fs::read_to_string(session.workspace().join("made")).expect("made"),
        "from-image\n"
    );

    let tarball = root.path().with_extension("tar");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("tar");
    assert!(packed.success());
    let name = format!("localhost/moat-test-minimal:{}", std::process::id());
    let imported = Command::new(&program)
        .args(["import", "--quiet"])
        .arg(&tarball)
        .arg(&name)
        .output()
        .expect("podman import");
    let _ = fs::remove_file(&tarball);
    assert!(
        imported.status.success(),
        "podman import: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let session = Session::new();
    let image = Backend::Podman {
        program: program.clone(),
        image: Some(name.clone()),
    };
    let ran = session.run_backend(&session.spec(script), &image);
    let _ = Command::new(&program)
        .args(["rmi", "--force", &name])
        .output();
    ran.completed()
        .expect(std::str::from_utf8(NPMRC).expect("utf-8").trim())
        .refute("HOST-USR-VISIBLE");
    assert_eq!(
        fs::read_to_string(session.workspace().join("made")).expect("made"),
        "from-image\n"
    );
}

#[test]
fn podman_the_stdin_frame_reaches_the_agent() {
    let Some(backend) = podman("podman_the_stdin_frame_reaches_the_agent") else {
        return;
    };
    let session = Session::new();
    let mut spec = session.spec(
        "head -n1 | rev > frame\nenv > seen\ngrep -r -a -o -E 'frame-secret-valu[e]' /proc/*/environ /proc/*/cmdline /home /tmp /etc /run >> seen 2>/dev/null\ntrue",
    );
    spec.stdin_prefix = Some(b"MOAT-SECRETS {\"API_KEY\":\"frame-secret-value\"}\n".to_vec());
    session.run_backend(&spec, &backend).completed();
    let frame = fs::read_to_string(session.workspace().join("frame")).expect("frame");
    let expected: String = "MOAT-SECRETS {\"API_KEY\":\"frame-secret-value\"}"
        .chars()
        .rev()
        .collect();
    assert_eq!(frame, format!("{expected}\n"));
    let seen = fs::read_to_string(session.workspace().join("seen")).expect("seen");
    assert!(
        !seen.contains("frame-secret-value"),
        "the frame leaked:\n{seen}"
    );
}

#[test]
fn podman_setup_failures_are_errors_that_say_why() {
    let Some(Backend::Podman { program, .. }) =
        podman("podman_setup_failures_are_errors_that_say_why")
    else {
        return;
    };
    let session = Session::new();
    let stop = moat_sandbox::Stop::new().expect("stop");
    let missing_image = Backend::Podman {
        program: program.clone(),
        image: Some("localhost/moat-no-such-image:never".to_owned()),
    };
    let error = moat_sandbox::run_backend(
        &missing_image,
        &session.spec("true"),
        &session.admission(),
        Path::new(INIT),
        &stop,
    )
    .expect_err("no such image");
    assert!(
        matches!(error, SandboxError::Setup(_)) && error.to_string().contains("no-such-image"),
        "{error}"
    );

    let admission = moat_sandbox::Admission {
        gate_socket: session.gate_dir.path().join("absent.sock"),
        ..session.admission()
    };
    let error = moat_sandbox::run_backend(
        &Backend::Podman {
            program,
            image: None,
        },
        &session.spec("true"),
        &admission,
        Path::new(INIT),
        &stop,
    )
    .expect_err("a missing socket cannot be mounted");
    assert!(error.to_string().contains("gate socket"), "{error}");
}

/// Rootless podman (`--userns keep-id`): the session runs as the caller, and what the agent
/// writes in the workspace belongs to the caller. On a host with hybrid cgroups, where crun
/// refuses and only root can hide the cgroup2 mount, podman is pointed at runc.
///
/// Runs when `MOAT_TEST_ROOTLESS_USER` names an unprivileged user with subordinate ids (`.ci/run`
/// makes one): the test, as root, re-runs itself as that user. Without the variable it says so
/// and passes; with `MOAT_REQUIRE_ROOTLESS_PODMAN=1` that is a failure instead.
#[test]
fn podman_rootless_runs_the_session_as_the_caller() {
    const TEST: &str = "podman::podman_rootless_runs_the_session_as_the_caller";
    if std::env::var_os(ROOTLESS_CHILD).is_none() {
        match std::env::var("MOAT_TEST_ROOTLESS_USER") {
            Ok(user) if !user.is_empty() => rerun_as(&user, TEST),
            _ => {
                assert!(
                    std::env::var_os("MOAT_REQUIRE_ROOTLESS_PODMAN").is_none(),
                    "MOAT_REQUIRE_ROOTLESS_PODMAN is set but MOAT_TEST_ROOTLESS_USER is not"
                );
                eprintln!(
                    "skipped {TEST}: set MOAT_TEST_ROOTLESS_USER to an unprivileged user with subordinate ids"
                );
            }
        }
        return;
    }
    let uid = rustix::process::getuid().as_raw();
    assert_ne!(uid, 0, "the child run is not root");
    eprintln!("{ROOTLESS_MARK} {uid}");
    let report = moat_sandbox::probe_podman(Path::new("podman"), None)
        .unwrap_or_else(|error| panic!("rootless podman cannot run here: {error}"));
    assert!(report.rootless, "{report:?}");
    let hybrid = {
        let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let kinds: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split_once(" - ")?.1.split(' ').next())
            .collect();
        kinds.contains(&"cgroup") && kinds.contains(&"cgroup2")
    };
    if hybrid {
        assert!(
            report.workarounds.iter().any(|w| w.contains("runc")),
            "a hybrid host, rootless: podman must be pointed at runc: {:?}",
            report.workarounds
        );
    }
    let backend = Backend::Podman {
        program: report.program.clone(),
        image: None,
    };
    let session = Session::new();
    let ran = session.run_backend(
        &session.spec("id -u\necho made > made-inside\nls -n made-inside"),
        &backend,
    );
    ran.completed().held("podman container");
    assert!(
        ran.outcome
            .enforced
            .iter()
            .any(|held| held.contains("rootless")),
        "{:?}",
        ran.outcome.enforced
    );
    let made = fs::metadata(session.workspace().join("made-inside")).expect("the agent's file");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&made),
        uid,
        "the agent's file belongs to the caller (keep-id)"
    );
}

/// Set in the child run of [`podman_rootless_runs_the_session_as_the_caller`].
const ROOTLESS_CHILD: &str = "MOAT_TEST_ROOTLESS_CHILD";
/// What that child prints once it runs the test's body as the unprivileged user.
const ROOTLESS_MARK: &str = "rootless child runs as uid";

/// Re-runs `test` alone in a child of this test binary as `user`, with a clean environment, a
/// runtime directory of its own and its home; the child must pass. The test binary and the
/// init are copied where `user` can run them (the checkout may be private to root).
fn rerun_as(user: &str, test: &str) {
    let passwd = Command::new("getent")
        .args(["passwd", user])
        .output()
        .expect("getent");
    let entry = String::from_utf8_lossy(&passwd.stdout).trim().to_owned();
    let fields: Vec<&str> = entry.split(':').collect();
    let (Some(uid), Some(gid), Some(home)) = (fields.get(2), fields.get(3), fields.get(5)) else {
        panic!("MOAT_TEST_ROOTLESS_USER={user}: no such user ({entry:?})");
    };
    let (uid, gid): (u32, u32) = (uid.parse().expect("uid"), gid.parse().expect("gid"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (binary, init, runtime) = (
        dir.path().join("it"),
        dir.path().join("moat-sandbox-init"),
        dir.path().join("run"),
    );
    fs::copy(std::env::current_exe().expect("test binary"), &binary).expect("copy the test");
    fs::copy(INIT, &init).expect("copy the init");
    fs::create_dir(&runtime).expect("runtime dir");
    for path in [
        dir.path(),
        binary.as_path(),
        init.as_path(),
        runtime.as_path(),
    ] {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
    let output = Command::new("runuser")
        .args(["-u", user, "--", "env", "-i"])
        .arg(format!("HOME={home}"))
        .arg(format!("XDG_RUNTIME_DIR={}", runtime.display()))
        // An unprivileged user's usual PATH: no sbin directories (Debian puts runc in /usr/sbin).
        .arg("PATH=/usr/local/bin:/usr/bin:/bin")
        .arg(format!("{ROOTLESS_CHILD}=1"))
        .arg(format!("{INIT_OVERRIDE}={}", init.display()))
        .arg(&binary)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .current_dir(dir.path())
        .output()
        .expect("runuser");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{printed}");
    assert!(output.status.success(), "the run as {user} failed");
    assert!(
        printed.contains(&format!("{ROOTLESS_MARK} {uid}")),
        "the child did not run the test as {user}"
    );
}
