//! The key escape tests and the positive path again, under the podman backend.
//!
//! Each test skips with a printed reason when podman is not installed or cannot run a
//! container here (the probe says why). With `MOAT_REQUIRE_PODMAN=1` a skip is a failure
//! instead, so CI that installs podman cannot pass vacuously.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use moat_sandbox::{Backend, ExitStatus, PodmanReport, SandboxError};

use crate::support::{
    INIT, NPMRC, Session, assert_planted_variable_unseen, planted_run, python,
    rerun_with_planted_variable,
};

/// The podman backend, or `None` (and the reason printed) when podman cannot run here.
fn podman(test: &str) -> Option<Backend> {
    static PROBE: OnceLock<Result<PodmanReport, String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        moat_sandbox::probe_podman(Path::new("podman"), None).map_err(|error| error.to_string())
    });
    match probe {
        Ok(report) => {
            eprintln!(
                "podman {} at {} (cgroup {}, rootless {}), one `true` in {:?}; workarounds: {:?}",
                report.version,
                report.program.display(),
                report.cgroup_version,
                report.rootless,
                report.start_to_exit,
                report.workarounds
            );
            Some(Backend::Podman {
                program: report.program.clone(),
                image: None,
            })
        }
        Err(reason) => {
            assert!(
                std::env::var_os("MOAT_REQUIRE_PODMAN").is_none(),
                "{test}: MOAT_REQUIRE_PODMAN is set but podman cannot run here: {reason}"
            );
            eprintln!("skipped {test}: podman cannot run here: {reason}");
            None
        }
    }
}

#[test]
fn podman_reading_a_planted_host_secret_fails() {
    let Some(backend) = podman("podman_reading_a_planted_host_secret_fails") else {
        return;
    };
    let secrets = tempfile::tempdir().expect("secret dir");
    let secret = secrets.path().join("api-key");
    fs::write(&secret, "sk-planted-host-secret").expect("plant");
    let session = Session::new();
    let spec = session.spec(&format!(
        "cat {secret} && echo READ-SECRET\nls {dir} && echo LISTED-SECRET-DIR\ncat /etc/shadow && echo READ-SHADOW\nls /root && echo LISTED-ROOT\ncat /etc/resolv.conf && echo READ-RESOLV\ncat {gate_dir}/* && echo READ-GATE-DIR\nls /sys/fs/cgroup && echo LISTED-SYS\ncat /run/.containerenv && echo READ-CONTAINERENV",
        secret = secret.display(),
        dir = secrets.path().display(),
        gate_dir = session.gate_dir.path().display(),
    ));
    let ran = session.run_backend(&spec, &backend);
    ran.completed()
        .refute("READ-SECRET")
        .refute("LISTED-SECRET-DIR")
        .refute("READ-SHADOW")
        .refute("LISTED-ROOT")
        .refute("READ-RESOLV")
        .refute("READ-GATE-DIR")
        .refute("LISTED-SYS")
        .refute("READ-CONTAINERENV")
        .refute("sk-planted-host-secret");
    ran.held("podman container");
}

#[test]
fn podman_writing_outside_the_workspace_fails() {
    let Some(backend) = podman("podman_writing_outside_the_workspace_fails") else {
        return;
    };
    let outside = tempfile::tempdir().expect("outside dir");
    let session = Session::new();
    let target = outside.path().join("written");
    let spec = session.spec(&format!(
        "echo x > {target} && echo WROTE-HOST-TMP\necho x > /etc/passwd && echo WROTE-ETC\necho x > /usr/moat && echo WROTE-USR\necho x > /moat && echo WROTE-ROOT\nmkdir /run/x && echo WROTE-RUN\necho x > /run/moat/init && echo WROTE-INIT\necho x > /dev/moat && echo WROTE-DEV\necho x > /proc/sys/kernel/hostname && echo WROTE-PROC\necho ok > inside && echo WROTE-WORKSPACE",
        target = target.display()
    ));
    let ran = session.run_backend(&spec, &backend);
    ran.completed()
        .refute("WROTE-HOST-TMP")
        .refute("WROTE-ETC")
        .refute("WROTE-USR")
        .refute("WROTE-ROOT")
        .refute("WROTE-RUN")
        .refute("WROTE-INIT")
        .refute("WROTE-DEV")
        .refute("WROTE-PROC")
        .expect("WROTE-WORKSPACE");
    assert!(!target.exists(), "a file appeared outside the workspace");
    assert_eq!(
        fs::read_to_string(session.workspace().join("inside")).expect("workspace file"),
        "ok\n"
    );
}

#[test]
fn podman_tcp_to_another_host_loopback_port_fails() {
    let Some(backend) = podman("podman_tcp_to_another_host_loopback_port_fails") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("host listener");
    let port = listener.local_addr().expect("address").port();
    let session = Session::new();
    let spec = session.spec(&python(&format!(
        "import socket\nfor host, port in ((\"127.0.0.1\", {port}), (\"127.0.0.1\", 22), (\"1.1.1.1\", 443), (\"10.0.2.2\", {port})):\n    s = socket.socket()\n    s.settimeout(3)\n    try:\n        s.connect((host, port))\n        print(\"CONNECTED\", host, port)\n    except OSError as error:\n        print(\"refused\", host, port, error)"
    )));
    let ran = session.run_backend(&spec, &backend);
    ran.completed().refute("CONNECTED").expect("refused");
}

#[test]
fn podman_host_processes_are_invisible() {
    let Some(backend) = podman("podman_host_processes_are_invisible") else {
        return;
    };
    let mut victim = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("host process");
    let session = Session::new();
    let test_pid = std::process::id();
    let spec = session.spec(&format!(
        "test -e /proc/{test_pid} && echo SAW-TEST-PROCESS\nps -e -o pid=,comm= > processes\ngrep -q -v -E 'moat-sandbox|init|sh|ps' processes && echo SAW-OTHER-PROCESS\nls /proc | grep -c -E '^[0-9]+$' > count\nkill -9 {victim} && echo KILLED-HOST\nhostname",
        victim = victim.id()
    ));
    let ran = session.run_backend(&spec, &backend);
    ran.completed()
        .refute("SAW-TEST-PROCESS")
        .refute("SAW-OTHER-PROCESS")
        .refute("KILLED-HOST")
        .expect("moat");
    let count: usize = fs::read_to_string(session.workspace().join("count"))
        .expect("count")
        .trim()
        .parse()
        .expect("number");
    assert!(count <= 5, "{count} processes visible in /proc");
    assert!(
        victim.try_wait().expect("wait").is_none(),
        "the host process died"
    );
    victim.kill().expect("kill");
    victim.wait().expect("reap");
}

/// As `escape::the_host_environment_is_invisible`: re-runs itself with a planted variable.
#[test]
fn podman_the_host_environment_is_invisible() {
    let Some(backend) = podman("podman_the_host_environment_is_invisible") else {
        return;
    };
    if !planted_run() {
        rerun_with_planted_variable("podman::podman_the_host_environment_is_invisible");
        return;
    }
    let session = Session::new();
    let spec = session.spec(
        "env > seen-env\ncat /proc/self/environ /proc/1/environ /proc/2/environ >> seen-env 2>/dev/null\ngrep -r -a planted /proc/*/environ /home /tmp /etc /run >> seen-env 2>/dev/null\ntrue",
    );
    session.run_backend(&spec, &backend).completed();
    assert_planted_variable_unseen(session.workspace());
}

#[test]
fn podman_privileged_calls_fail() {
    let Some(backend) = podman("podman_privileged_calls_fail") else {
        return;
    };
    let session = Session::new();
    let spec = session.spec(&format!(
        "mount -t tmpfs none /tmp && echo MOUNTED-TMPFS\nunshare -U true && echo UNSHARE-USER\nunshare -r true && echo UNSHARE-ROOT\n{}",
        python(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(\"PTRACE-ATTACHED\" if libc.ptrace(16, 1, 0, 0) == 0 else \"ptrace refused\")\nprint(\"BPF\" if libc.syscall(321, 0, 0, 0) >= 0 else \"bpf refused\")"
        )
    ));
    let ran = session.run_backend(&spec, &backend);
    ran.completed()
        .refute("MOUNTED-TMPFS")
        .refute("UNSHARE-USER")
        .refute("UNSHARE-ROOT")
        .refute("PTRACE-ATTACHED")
        .refute("BPF")
        .expect("ptrace refused");
}

#[test]
fn podman_the_gate_port_reaches_the_host_unix_socket() {
    let Some(backend) = podman("podman_the_gate_port_reaches_the_host_unix_socket") else {
        return;
    };
    let session = Session::new();
    let server = session.echo_one_gate_request();
    let spec = session.spec(&format!(
        "pwd\ncat ~/.npmrc\necho tmp > /tmp/x && cat /tmp/x\n{}",
        python(
            "import urllib.request\nprint(urllib.request.urlopen(\"http://127.0.0.1:7070/npm/left-pad\", timeout=10).read().decode())",
        )
    ));
    let ran = session.run_backend(&spec, &backend);
    server.join().expect("server");
    ran.completed()
        .expect("gate saw GET /npm/left-pad HTTP/1.1")
        .expect(&session.workspace().display().to_string())
        .expect(std::str::from_utf8(NPMRC).expect("utf-8").trim())
        .expect("tmp");
    assert!(ran.outcome.status().success(), "{:?}", ran.outcome);
    ran.held("landlock-fs");
}

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
    timed.limits.timeout = Some(Duration::from_secs(2));
    let ran = timed.run_backend(&timed.spec("sleep 60 & sleep 60"), &backend);
    assert!(ran.outcome.timed_out, "{:?}", ran.outcome);
    assert_eq!(ran.outcome.status(), ExitStatus::Signal(9));
    assert!(
        ran.outcome.duration < Duration::from_secs(15),
        "{:?}",
        ran.outcome
    );

    let stop = moat_sandbox::Stop::new().expect("stop");
    let trigger = stop.clone();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1500));
        trigger.stop();
    });
    let outcome =
        moat_sandbox::run_backend(&backend, &session.spec("sleep 60"), Path::new(INIT), &stop)
            .expect("the sandbox runs");
    stopper.join().expect("stopper");
    assert!(outcome.stopped && !outcome.timed_out, "{outcome:?}");
    assert_eq!(outcome.reason.as_deref(), Some("stopped"));
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
        Path::new(INIT),
        &stop,
    )
    .expect_err("no such image");
    assert!(
        matches!(error, SandboxError::Setup(_)) && error.to_string().contains("no-such-image"),
        "{error}"
    );

    let mut spec = session.spec("true");
    spec.gate_socket = session.gate_dir.path().join("absent.sock");
    let error = moat_sandbox::run_backend(
        &Backend::Podman {
            program,
            image: None,
        },
        &spec,
        Path::new(INIT),
        &stop,
    )
    .expect_err("a missing socket cannot be mounted");
    assert!(error.to_string().contains("gate socket"), "{error}");
}
