//! The positive path: the workspace, `$HOME`, and the one way out.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use moat_sandbox::{Backend, SandboxError};

use crate::support::{INIT, NPMRC, Session, on_every_backend, python};

on_every_backend!(
    the_workspace_is_writable_and_home_has_its_files,
    the_gate_port_reaches_the_host_unix_socket,
    a_command_that_cannot_be_executed_is_not_started,
    a_script_without_an_interpreter_line_runs_with_sh,
    etc_has_the_ca_roots_and_time_zone_but_not_the_host_keys,
);

fn the_workspace_is_writable_and_home_has_its_files(backend: Backend) {
    let session = Session::new();
    fs::write(session.workspace().join("input"), "from the host").expect("input");
    let ran = session.run_on(
        &backend,
        "pwd\ncat input > copy\nmkdir -p build/out && echo built > build/out/artifact\ncat ~/.npmrc\ncat $HOME/.config/pip/pip.conf\necho home=$HOME\necho tmp > /tmp/x && cat /tmp/x\nid -u",
    );
    ran.completed()
        .expect(&session.workspace().display().to_string())
        .expect(std::str::from_utf8(NPMRC).expect("utf-8").trim())
        .expect("[global]")
        .expect("home=/home/agent")
        .expect("tmp");
    assert_eq!(
        fs::read_to_string(session.workspace().join("copy")).expect("copy"),
        "from the host"
    );
    assert_eq!(
        fs::read_to_string(session.workspace().join("build/out/artifact")).expect("artifact"),
        "built\n"
    );
    assert!(ran.outcome.status().success(), "{:?}", ran.outcome);
}

/// `/etc` shows the host's CA roots and time zone (`/etc/localtime` is a link into `/usr` on
/// Debian, which resolves only where `/usr` is) and none of its keys (`/etc/ssl/private`).
fn etc_has_the_ca_roots_and_time_zone_but_not_the_host_keys(backend: Backend) {
    let session = Session::new();
    let ran = session.run_on(
        &backend,
        "ls /etc/ssl/certs | grep -q . && echo HAS-CA-ROOTS\ntest -s /etc/localtime && echo HAS-TIME-ZONE\nls /etc/ssl/private && echo LISTED-HOST-KEYS",
    );
    ran.completed()
        .expect("HAS-CA-ROOTS")
        .refute("LISTED-HOST-KEYS");
    if fs::metadata("/etc/localtime").is_ok() {
        ran.expect("HAS-TIME-ZONE");
    }
}

fn the_gate_port_reaches_the_host_unix_socket(backend: Backend) {
    let session = Session::new();
    let server = session.echo_one_gate_request();
    let ran = session.run_on(
        &backend,
        &python(
            "import urllib.request\nprint(urllib.request.urlopen(\"http://127.0.0.1:7070/npm/left-pad\", timeout=10).read().decode())",
        ),
    );
    server.join().expect("server");
    ran.completed()
        .expect("gate saw GET /npm/left-pad HTTP/1.1");
    assert!(ran.outcome.status().success(), "{:?}", ran.outcome);
    ran.held("landlock-fs");
}

/// A command that is not on the sandbox's `PATH`, a file there that cannot be executed, or one
/// the kernel refuses only at its `execve`, is its own error (not a setup failure), with the
/// code a shell exits with for it.
fn a_command_that_cannot_be_executed_is_not_started(backend: Backend) {
    let session = Session::new();
    let not_executable = session.workspace().join("script.sh");
    fs::write(&not_executable, "#!/bin/sh\necho ran > ran\n").expect("script");
    for (program, expected) in [
        ("moat-no-such-command".to_owned(), 127),
        (not_executable.to_string_lossy().into_owned(), 126),
        // Found and executable, refused only at the `execve` (Landlock gives /proc no
        // execute), after the init has reported the agent's start.
        ("/proc/self/exe".to_owned(), 126),
    ] {
        let spec = moat_sandbox::Spec {
            command: vec![program.clone()],
            ..session.spec("true")
        };
        match session.try_run_backend(&spec, &backend) {
            Err(SandboxError::CommandNotStarted {
                program: named,
                code,
                ..
            }) => {
                assert_eq!(named, program);
                assert_eq!(code, expected, "{program}");
            }
            other => panic!("{program}: {other:?}"),
        }
    }
    assert!(!session.workspace().join("ran").exists());
}

/// An executable file the kernel cannot execute (no `#!` line) is run with `/bin/sh`, with its
/// arguments, as `execvp(3)` and the shells do.
fn a_script_without_an_interpreter_line_runs_with_sh(backend: Backend) {
    let session = Session::new();
    let script = session.workspace().join("plain-script");
    fs::write(&script, "echo \"ran by sh with $1\" > ran\n").expect("script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("mode");
    let spec = moat_sandbox::Spec {
        command: vec![
            script.to_string_lossy().into_owned(),
            "its-argument".to_owned(),
        ],
        ..session.spec("true")
    };
    let ran = session.run_backend(&spec, &backend);
    assert!(ran.outcome.status().success(), "{:?}", ran.outcome);
    let output = fs::read_to_string(session.workspace().join("ran")).expect("the script ran");
    assert_eq!(output, "ran by sh with its-argument\n");
}

#[test]
fn a_missing_gate_socket_is_a_setup_error() {
    let session = Session::new();
    let admission = moat_sandbox::Admission {
        gate_socket: session.gate_dir.path().join("absent.sock"),
        ..session.admission()
    };
    let error = moat_sandbox::run(
        &session.spec("true"),
        &admission,
        std::path::Path::new(env!("CARGO_BIN_EXE_moat-sandbox-init")),
    )
    .expect_err("a missing socket cannot be mounted");
    assert!(error.to_string().contains("gate socket"), "{error}");
}

#[test]
fn the_agent_exit_status_is_reported() {
    let session = Session::new();
    let code = session.run("exit 7");
    assert_eq!(code.outcome.status(), moat_sandbox::ExitStatus::Code(7));
    let killed = session.run("kill -9 $$");
    assert_eq!(killed.outcome.status(), moat_sandbox::ExitStatus::Signal(9));
}

#[test]
fn a_missing_init_program_is_a_spawn_error() {
    let session = Session::new();
    let spec = session.spec("true");
    let error = moat_sandbox::run(
        &spec,
        &session.admission(),
        std::path::Path::new("/nonexistent/moat"),
    )
    .expect_err("no init program");
    assert!(
        matches!(error, moat_sandbox::SandboxError::Spawn(_)),
        "{error}"
    );
}

#[test]
fn the_stdin_frame_reaches_the_agent_and_nowhere_else() {
    let session = Session::new();
    // The frame is stored reversed, so the only plain copy is the one on stdin; the pattern is
    // bracketed so grep's own command line does not match it.
    let mut spec = session.spec(
        "head -n1 | rev > frame\nenv > seen\ngrep -r -a -o -E 'frame-secret-valu[e]' /proc/*/environ /proc/*/cmdline /home /tmp /etc /run >> seen 2>/dev/null\ntrue",
    );
    spec.stdin_prefix = Some(b"MOAT-SECRETS {\"API_KEY\":\"frame-secret-value\"}\n".to_vec());
    let ran = session.run_spec(&spec);
    ran.completed();
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

/// A sandbox that cannot be built fails with the init's reason, not with a broken pipe, and
/// without waiting for the caller, who is still deciding whether to admit the session (and
/// admits it only once the run has returned: the admission finds nobody to read it).
#[test]
fn a_setup_failure_before_admission_is_reported_with_its_reason() {
    let session = Session::new();
    let mut spec = session.spec("true");
    let missing = session.workspace().join("removed-before-the-build");
    fs::create_dir(&missing).expect("dir");
    spec.ro_paths = vec![missing.clone()];
    let stop = moat_sandbox::Stop::new().expect("stop");
    let (door, entry) = moat_sandbox::door().expect("door");
    fs::remove_dir(&missing).expect("removed");
    let heard = std::sync::atomic::AtomicBool::new(false);
    let error = moat_sandbox::run_admitted(
        &spec,
        moat_sandbox::Init::Program(std::path::Path::new(INIT)),
        &stop,
        entry,
        Box::new(|_, _| heard.store(true, std::sync::atomic::Ordering::SeqCst)),
    )
    .expect_err("the sandbox cannot be built");
    door.admit(session.admission());
    door.confirm();
    assert!(
        !heard.load(std::sync::atomic::Ordering::SeqCst),
        "an exit was heard though no agent ran"
    );
    assert!(
        matches!(error, moat_sandbox::SandboxError::Setup(_)),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("removed-before-the-build"),
        "{error}"
    );
}

/// A sandbox sent its request but never run (its caller failed before it could watch it)
/// leaves no process behind: its init is killed and reaped.
#[test]
fn a_requested_sandbox_dropped_unrun_leaves_no_process() {
    let session = Session::new();
    let requested = moat_sandbox::request(
        &session.spec("true"),
        moat_sandbox::Init::Program(std::path::Path::new(INIT)),
    )
    .expect("requested");
    assert!(!children().is_empty(), "no init was started");
    drop(requested);
    assert!(children().is_empty(), "a child was left: {:?}", children());
}

/// The pids of this process's children (every thread's), from `/proc`.
fn children() -> Vec<u32> {
    children_of(std::process::id())
}

/// The pids of process `pid`'s children (every thread's), from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let listed = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            listed
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
    }
    pids
}

/// The init is already running and building the sandbox (so its start-up overlaps the caller's
/// own work: it is in a mount namespace of its own) but the agent is not when the session is
/// admitted, nor once admitted until the start is confirmed; and what the admission brings is
/// what the agent gets: the admitted socket is the way out, on the admitted port, with the
/// admitted environment and home files (the spec sent before holds none of them).
#[test]
fn the_init_waits_for_admission_and_the_admission_is_what_the_agent_gets() {
    let session = Session::new();
    let marker = session.workspace().join("agent-ran");
    let server = session.echo_one_gate_request();
    let spec = session.spec(&format!(
        "touch {}\necho \"admitted env: $ADMITTED\"\ncat $HOME/.admitted\n{}",
        marker.display(),
        python(
            "import urllib.request\nprint(urllib.request.urlopen(\"http://127.0.0.1:7171/admitted\", timeout=10).read().decode())"
        )
    ));
    let mut admission = session.admission();
    admission.gate_port = 7171;
    admission
        .env
        .push(("ADMITTED".to_owned(), "from-the-admission".to_owned()));
    admission.home_files.push((
        ".admitted".into(),
        b"home file from the admission\n".to_vec(),
    ));
    let stop = moat_sandbox::Stop::new().expect("stop");
    let (door, entry) = moat_sandbox::door().expect("door");
    // The caller's thread: looks at the init before it admits the session, and at the agent
    // before it confirms it.
    let caller = {
        let marker = marker.clone();
        std::thread::spawn(move || {
            let inits = (0..1000)
                .map(|_| {
                    let inits: Vec<u32> = children()
                        .into_iter()
                        .filter(|pid| {
                            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                                String::from_utf8_lossy(&cmdline).contains("__sandbox-init")
                            })
                        })
                        .collect();
                    if inits.is_empty() {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    inits
                })
                .find(|inits| !inits.is_empty())
                .unwrap_or_default();
            assert_eq!(inits.len(), 1, "the init runs before admission: {inits:?}");
            // It is the sandbox's pid 1 itself (`clone3` into a new pid namespace).
            let status = fs::read_to_string(format!("/proc/{}/status", inits[0])).expect("status");
            let nspid = status.lines().find_map(|line| line.strip_prefix("NSpid:"));
            assert_eq!(
                nspid.map(|ids| ids.split_whitespace().collect::<Vec<_>>()),
                Some(vec![inits[0].to_string().as_str(), "1"]),
                "the init is not pid 1 of a pid namespace of its own"
            );
            let own = fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
            let building = (0..1000).any(|_| {
                let entered =
                    fs::read_link(format!("/proc/{}/ns/mnt", inits[0])).is_ok_and(|ns| ns != own);
                if !entered {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                entered
            });
            assert!(
                building,
                "the init is not building the sandbox before admission"
            );
            assert!(!marker.exists(), "the agent ran before admission");
            // Admitted, the init prepares the agent's start, but starts nothing until confirmed.
            door.admit(admission);
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(!marker.exists(), "the agent ran before the confirmation");
            door.confirm();
        })
    };
    let outcome = moat_sandbox::run_admitted(
        &spec,
        moat_sandbox::Init::Program(std::path::Path::new(INIT)),
        &stop,
        entry,
        Box::new(|_, _| {}),
    )
    .expect("the sandbox runs");
    caller.join().expect("the caller's checks");
    server.join().expect("server");
    let ran = session.ran(outcome);
    ran.completed()
        .expect("admitted env: from-the-admission")
        .expect("home file from the admission")
        .expect("gate saw GET /admitted HTTP/1.1");
    assert!(marker.exists(), "the agent ran once admitted");
}

/// A session whose agent only touches a marker file in the workspace, admitted but not yet
/// confirmed: the marker's path (there once the agent ran), the spec, and the door's two sides.
fn admitted_to_touch_a_marker(
    session: &Session,
) -> (
    std::path::PathBuf,
    moat_sandbox::Spec,
    moat_sandbox::Door,
    moat_sandbox::Entry,
) {
    let marker = session.workspace().join("agent-ran");
    let spec = session.spec(&format!("touch {}", marker.display()));
    let (door, entry) = moat_sandbox::door().expect("door");
    door.admit(session.admission());
    (marker, spec, door, entry)
}

/// A session admitted but then refused (the caller could not record its start) starts no
/// agent, though the init had prepared everything for it: the run fails with the caller's
/// reason, and no exit is heard.
#[test]
fn a_session_refused_after_its_admission_starts_nothing() {
    let session = Session::new();
    let (marker, spec, door, entry) = admitted_to_touch_a_marker(&session);
    let heard = std::sync::atomic::AtomicBool::new(false);
    let error = std::thread::scope(|scope| {
        scope.spawn(move || {
            // Long enough for the init to have the admission and prepare the agent's start.
            std::thread::sleep(std::time::Duration::from_millis(300));
            door.refuse("the session start could not be recorded");
        });
        moat_sandbox::run_admitted(
            &spec,
            moat_sandbox::Init::Program(std::path::Path::new(INIT)),
            &moat_sandbox::Stop::new().expect("stop"),
            entry,
            Box::new(|_, _| heard.store(true, std::sync::atomic::Ordering::SeqCst)),
        )
    })
    .expect_err("the session is refused");
    assert!(
        matches!(&error, moat_sandbox::SandboxError::NotAdmitted(reason)
            if reason == "the session start could not be recorded"),
        "{error:?}"
    );
    assert!(!heard.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!marker.exists(), "the agent ran though refused");
}

/// A stop before the confirmation (`moat stop`, or a signal while the gate records the start)
/// ends the sandbox at once: no agent starts, and the outcome says it was stopped. The door is
/// neither confirmed nor refused meanwhile: only the stop can end the run (past a generous
/// bound the door refuses, so that a stop not heard fails the test instead of hanging it).
#[test]
fn a_stop_before_the_confirmation_ends_the_sandbox_unstarted() {
    let session = Session::new();
    let (marker, spec, door, entry) = admitted_to_touch_a_marker(&session);
    let stop = moat_sandbox::Stop::new().expect("stop");
    let heard = std::sync::atomic::AtomicBool::new(false);
    let (ended, ended_here) = std::sync::mpsc::channel::<()>();
    let result = std::thread::scope(|scope| {
        let stopper = stop.clone();
        scope.spawn(move || {
            // Long enough for the init to have the admission and prepare the agent's start.
            std::thread::sleep(std::time::Duration::from_millis(300));
            stopper.stop();
            if ended_here
                .recv_timeout(std::time::Duration::from_secs(30))
                .is_err()
            {
                door.refuse("the stop was not heard");
            }
        });
        let result = moat_sandbox::run_admitted(
            &spec,
            moat_sandbox::Init::Program(std::path::Path::new(INIT)),
            &stop,
            entry,
            Box::new(|_, _| heard.store(true, std::sync::atomic::Ordering::SeqCst)),
        );
        let _ = ended.send(());
        result
    });
    let outcome = result.expect("a stopped sandbox is an outcome");
    assert!(outcome.stopped, "{outcome:?}");
    assert_eq!(outcome.reason.as_deref(), Some("stopped"));
    assert!(!heard.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        !marker.exists(),
        "the agent ran though stopped before its confirmation"
    );
}

/// The caller hears of the agent's exit as soon as it is known (to record the session's end
/// while the sandbox is torn down), and only once nothing of the session is left: what the
/// agent left running in the background is killed and reaped by then, and its CPU time is in
/// the reported usage. The run returns the same outcome. With no cgroup of the session's, only
/// the kernel's teardown is left (the caller need not wait for it).
#[test]
fn the_exit_is_heard_once_nothing_of_the_session_is_left() {
    let session = Session::new();
    // A background process outliving the agent, named by an argument no other process has,
    // which burns CPU until it is killed.
    let marker = "6071.25";
    let spec = session.spec(&format!(
        "sh -c 'while :; do :; done' moat-orphan-{marker} &\nsleep 0.3\ntrue"
    ));
    let stop = moat_sandbox::Stop::new().expect("stop");
    let heard = std::sync::Mutex::new(None);
    let outcome = moat_sandbox::run_admitted(
        &spec,
        moat_sandbox::Init::Program(std::path::Path::new(INIT)),
        &stop,
        moat_sandbox::Entry::admitted(&session.admission()).expect("entry"),
        Box::new(|outcome, teardown| {
            let left: Vec<String> = fs::read_dir("/proc")
                .expect("/proc")
                .flatten()
                .filter_map(|entry| fs::read(entry.path().join("cmdline")).ok())
                .map(|cmdline| String::from_utf8_lossy(&cmdline).into_owned())
                .filter(|cmdline| cmdline.contains(&format!("moat-orphan-{marker}")))
                .collect();
            *heard.lock().expect("heard") = Some((outcome.clone(), left, teardown));
        }),
    )
    .expect("the sandbox runs");
    let (heard_outcome, left, teardown) = heard
        .into_inner()
        .expect("heard")
        .expect("the exit was heard");
    assert!(
        left.is_empty(),
        "still running when the exit was heard: {left:?}"
    );
    assert_eq!(heard_outcome, outcome);
    assert_eq!(teardown, moat_sandbox::Teardown::Kernel);
    assert!(outcome.status().success(), "{outcome:?}");
    assert!(
        outcome.usage.user_cpu + outcome.usage.system_cpu >= std::time::Duration::from_millis(100),
        "the background process's CPU time is not in the usage: {:?}",
        outcome.usage
    );
}

/// An init program that cannot be executed is an error that says so (the child of the
/// `clone3` reports its failed `execve` before it exits), and nothing is left running.
#[test]
fn an_init_program_that_cannot_be_executed_is_an_error_that_says_so() {
    let session = Session::new();
    let missing = session.workspace().join("no-such-moat");
    let result = moat_sandbox::run(
        &session.spec("echo AGENT-RAN"),
        &session.admission(),
        &missing,
    );
    let error = result.expect_err("a missing init program runs no session");
    let message = format!("{error:#}");
    assert!(
        message.contains("could not execute the sandbox init")
            && message.contains("No such file or directory"),
        "{message}"
    );
    assert!(children().is_empty(), "a child was left: {:?}", children());
}
