use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use std::sync::OnceLock;

use moat_sandbox::{Admission, Backend, Limits, Outcome, PodmanReport, Spec};
use tempfile::TempDir;

pub const HOME: &str = "/home/agent";
pub const INIT: &str = env!("CARGO_BIN_EXE_moat-sandbox-init");
/// Names another copy of the init for [`Session::run_backend`] (a child run as another user).
pub const INIT_OVERRIDE: &str = "MOAT_TEST_INIT";
pub const NPMRC: &[u8] = b"registry=http://127.0.0.1:7070/npm/\n";

/// One sandboxed session: a workspace, a gate socket outside it, and the output files.
pub struct Session {
    pub workspace: TempDir,
    pub gate_dir: TempDir,
    pub gate: UnixListener,
    pub limits: Limits,
}

pub struct Ran {
    pub outcome: Outcome,
    pub stdout: String,
    pub stderr: String,
}

impl Session {
    /// Serves one HTTP request on the gate socket, answering `gate saw <request line>`; join
    /// the handle after the sandbox ran.
    pub fn echo_one_gate_request(&self) -> std::thread::JoinHandle<()> {
        let gate = self.gate.try_clone().expect("gate listener");
        std::thread::spawn(move || {
            let (stream, _) = gate.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).expect("header") == 0 || header == "\r\n" {
                    break;
                }
            }
            let body = format!("gate saw {}", request_line.trim());
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .expect("respond");
        })
    }

    pub fn new() -> Self {
        let workspace = tempfile::tempdir().expect("workspace");
        let gate_dir = tempfile::tempdir().expect("gate dir");
        let gate = UnixListener::bind(gate_dir.path().join("gate.sock")).expect("gate socket");
        Session {
            workspace,
            gate_dir,
            gate,
            limits: Limits::default(),
        }
    }

    pub fn gate_socket(&self) -> PathBuf {
        self.gate_dir.path().join("gate.sock")
    }

    pub fn workspace(&self) -> &Path {
        self.workspace.path()
    }

    pub fn spec(&self, script: &str) -> Spec {
        let workspace = self.workspace().to_path_buf();
        let wrapped = format!(
            "exec >{ws}/.stdout 2>{ws}/.stderr\n{script}\necho SCRIPT-DONE",
            ws = workspace.display()
        );
        Spec {
            command: vec!["sh".to_owned(), "-c".to_owned(), wrapped],
            workspace,
            gate_dir: self.gate_dir.path().to_path_buf(),
            home: HOME.into(),
            ro_paths: vec![],
            limits: self.limits.clone(),
            allow_missing: vec![],
            stdin_prefix: None,
        }
    }

    /// The session's gate socket on port 7070, a plain environment and two home files.
    pub fn admission(&self) -> Admission {
        Admission {
            gate_socket: self.gate_socket(),
            gate_port: 7070,
            env: vec![
                ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
                ("HOME".to_owned(), HOME.to_owned()),
                ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ],
            home_files: vec![
                (".npmrc".into(), NPMRC.to_vec()),
                (".config/pip/pip.conf".into(), b"[global]\n".to_vec()),
            ],
        }
    }

    /// Runs `script` under `sh` inside the sandbox; stdout and stderr come back as text.
    pub fn run(&self, script: &str) -> Ran {
        self.run_spec(&self.spec(script))
    }

    pub fn run_spec(&self, spec: &Spec) -> Ran {
        let outcome = moat_sandbox::run(
            spec,
            &self.admission(),
            Path::new(env!("CARGO_BIN_EXE_moat-sandbox-init")),
        )
        .expect("the sandbox runs");
        self.ran(outcome)
    }

    /// Runs `spec` with `backend` and, once the agent has printed READY, fires a stop `stops`
    /// times, 300 ms apart.
    pub fn run_stopped(&self, spec: &Spec, backend: &Backend, stops: usize) -> Outcome {
        let stop = moat_sandbox::Stop::new().expect("stop");
        let trigger = stop.clone();
        let stdout = self.workspace().join(".stdout");
        let stopper = std::thread::spawn(move || {
            wait_for_ready(&stdout);
            for _ in 0..stops {
                trigger.stop();
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        });
        let outcome = moat_sandbox::run_backend(
            backend,
            spec,
            &self.admission(),
            Path::new(env!("CARGO_BIN_EXE_moat-sandbox-init")),
            &stop,
        )
        .expect("the sandbox runs");
        stopper.join().expect("stopper");
        outcome
    }

    /// Runs `script` under `sh` inside the sandbox `backend` makes.
    pub fn run_on(&self, backend: &Backend, script: &str) -> Ran {
        self.run_backend(&self.spec(script), backend)
    }

    /// Runs `spec` in the sandbox `backend` makes.
    pub fn run_spec_on(&self, spec: &Spec, backend: &Backend) -> Ran {
        self.run_backend(spec, backend)
    }

    /// Runs `spec` with `backend`.
    pub fn run_backend(&self, spec: &Spec, backend: &Backend) -> Ran {
        let outcome = self
            .try_run_backend(spec, backend)
            .expect("the sandbox runs");
        self.ran(outcome)
    }

    /// Runs `spec` with `backend`; its outcome or error.
    pub fn try_run_backend(
        &self,
        spec: &Spec,
        backend: &Backend,
    ) -> Result<Outcome, moat_sandbox::SandboxError> {
        let stop = moat_sandbox::Stop::new().expect("stop");
        let init = std::env::var_os(INIT_OVERRIDE).map_or_else(|| INIT.into(), PathBuf::from);
        moat_sandbox::run_backend(backend, spec, &self.admission(), &init, &stop)
    }

    pub fn ran(&self, outcome: Outcome) -> Ran {
        let read = |name: &str| fs::read_to_string(self.workspace().join(name)).unwrap_or_default();
        Ran {
            outcome,
            stdout: read(".stdout"),
            stderr: read(".stderr"),
        }
    }
}

impl Ran {
    /// The script ran to its end (so a missing marker is not a vacuous pass).
    pub fn completed(&self) -> &Self {
        // Shown with --nocapture, so a reader can see what each attempt printed.
        eprintln!(
            "--- stdout\n{}--- stderr\n{}--- {:?}",
            self.stdout, self.stderr, self.outcome
        );
        assert!(
            self.stdout.contains("SCRIPT-DONE"),
            "the script did not finish:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn refute(&self, marker: &str) -> &Self {
        assert!(
            !self.stdout.contains(marker),
            "{marker} printed: the attempt succeeded\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The outcome names an enforced property starting with `prefix` (e.g. `landlock-fs`).
    pub fn held(&self, prefix: &str) -> &Self {
        assert!(
            self.outcome
                .enforced
                .iter()
                .any(|held| held.starts_with(prefix)),
            "{prefix} is not among the enforced properties: {:?}",
            self.outcome.enforced
        );
        self
    }

    pub fn expect(&self, marker: &str) -> &Self {
        assert!(
            self.stdout.contains(marker),
            "{marker} missing\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// The podman backend, or `None` (and the reason printed) when podman cannot run here; with
/// `MOAT_REQUIRE_PODMAN=1` that is a failure instead, so CI that installs podman cannot pass
/// vacuously. `test` names the test in the message.
pub fn podman(test: &str) -> Option<Backend> {
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

/// Runs each named test function (`fn name(backend: Backend)`) under both backends, as the tests
/// `name::embedded` and `name::podman` (see [`podman`] for when that one skips). Attributes
/// before a name (e.g. `#[cfg(…)]`) apply to both.
macro_rules! on_every_backend {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$attr])*
            mod $name {
                #[test]
                fn embedded() {
                    super::$name(moat_sandbox::Backend::Embedded);
                }

                #[test]
                fn podman() {
                    if let Some(backend) = $crate::support::podman(module_path!()) {
                        super::$name(backend);
                    }
                }
            }
        )*
    };
}
pub(crate) use on_every_backend;

/// The test-harness name of the [`on_every_backend!`] test `test` (e.g.
/// `escape::the_host_environment_is_invisible`) under `backend`, for re-running it alone.
pub fn test_name(test: &str, backend: &Backend) -> String {
    format!("{test}::{}", backend.name())
}

/// A python3 one-liner as a shell word.
pub fn python(code: &str) -> String {
    format!("python3 -c '{}'", code.replace('\'', "'\\''"))
}

/// The host variable the environment tests plant: set only in a child run of the test binary
/// (setting it in the multi-threaded test process would race).
pub const PLANTED: &str = "MOAT_TEST_PLANTED_SECRET";
const PLANTED_VALUE: &str = "planted-host-env-value";

/// Whether this is the child run with [`PLANTED`] set.
pub fn planted_run() -> bool {
    std::env::var(PLANTED).is_ok()
}

/// Re-runs `test` (its full path, e.g. `escape::the_host_environment_is_invisible`) alone in a
/// child of this test binary with [`PLANTED`] set; the child must pass.
pub fn rerun_with_planted_variable(test: &str) {
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(PLANTED, PLANTED_VALUE)
        .status()
        .expect("re-run the test with a planted variable");
    assert!(status.success(), "the child run failed");
}

/// What the agent could see of the environment (written to the workspace's `seen-env`) holds
/// neither the planted variable's name nor its value, and does hold the agent's own `HOME`.
pub fn assert_planted_variable_unseen(workspace: &Path) {
    let seen = fs::read_to_string(workspace.join("seen-env")).expect("seen-env");
    assert!(
        !seen.contains(PLANTED_VALUE),
        "the planted variable leaked:\n{seen}"
    );
    assert!(
        !seen.contains(PLANTED),
        "the planted variable name leaked:\n{seen}"
    );
    assert!(
        seen.contains("HOME=/home/agent"),
        "the agent's own environment is missing:\n{seen}"
    );
}

/// Waits (bounded) until the agent's stdout, `stdout`, says READY.
fn wait_for_ready(stdout: &Path) {
    for _ in 0..1200 {
        if fs::read_to_string(stdout).is_ok_and(|text| text.contains("READY")) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the agent never printed READY");
}
