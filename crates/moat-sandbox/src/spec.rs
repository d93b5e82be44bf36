use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// One agent session's sandbox: what runs, where, under which limits. It crosses a process
/// boundary (host → init) as JSON over an inherited pipe, never argv or the environment, and is
/// sent before the session is admitted: the init builds the sandbox from it meanwhile. How the
/// agent reaches its gate, which is known only once the gate opens the session, is the
/// [`Admission`].
#[derive(Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The agent's argv; `command[0]` is looked up in `PATH` from [`Admission::env`].
    pub command: Vec<String>,
    /// Host directory mounted read-write at the same absolute path inside; the agent's cwd.
    pub workspace: PathBuf,
    /// Host directory in which the gate binds the session's socket, named as in
    /// [`GATE_SOCKET_INSIDE`](crate::GATE_SOCKET_INSIDE), when it admits the session. It must
    /// exist when the sandbox starts and hold nothing else: the embedded backend mounts it
    /// read-only at `/run/moat` before the admission, so that the new root is complete (and the
    /// host root detached) while the gate still opens the session. The podman backend mounts
    /// [`Admission::gate_socket`] itself.
    pub gate_dir: PathBuf,
    /// `$HOME` inside the sandbox (a fresh tmpfs), e.g. `/home/agent`.
    pub home: PathBuf,
    /// Extra host paths bind-mounted read-only at the same path (toolchains outside `/usr`).
    pub ro_paths: Vec<PathBuf>,
    /// Resource limits and the wall-clock timeout.
    pub limits: Limits,
    /// Properties the user explicitly waived (`--dangerously-…`); anything else that cannot
    /// hold makes [`run`](crate::run) refuse.
    pub allow_missing: Vec<Property>,
    /// Bytes the agent reads on stdin before the host's stdin (one framed secrets message).
    /// When set, the agent's stdin is a pipe the init feeds: first these bytes, then
    /// whatever the host's stdin delivers. They are never written to a file or the environment.
    #[serde(default)]
    pub stdin_prefix: Option<Vec<u8>>,
}

impl fmt::Debug for Spec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Spec")
            .field("command", &self.command)
            .field("workspace", &self.workspace)
            .field("gate_dir", &self.gate_dir)
            .field("home", &self.home)
            .field("ro_paths", &self.ro_paths)
            .field("limits", &self.limits)
            .field("allow_missing", &self.allow_missing)
            .field(
                "stdin_prefix",
                &self
                    .stdin_prefix
                    .as_ref()
                    .map(|bytes| format!("<redacted, {} bytes>", bytes.len())),
            )
            .finish()
    }
}

/// What admitting a session settles: the gate socket that serves it, and the agent's
/// environment and home files, which point its clients at that gate. The init receives it
/// after the sandbox is built and before anything of the agent runs (see [`Door`]). Its
/// `Debug` output redacts environment values and home file contents, which may carry
/// credentials.
///
/// [`Door`]: crate::Door
#[derive(Clone, Serialize, Deserialize)]
pub struct Admission {
    /// The host unix socket of the gate; mounted at [`GATE_SOCKET_INSIDE`](crate::GATE_SOCKET_INSIDE)
    /// and bridged to `127.0.0.1:<gate_port>`.
    pub gate_socket: PathBuf,
    /// The loopback TCP port inside that reaches the gate (the port of the gate's public URL,
    /// which the gate writes into the metadata it serves; 7070 for a gate of the session's own).
    pub gate_port: u16,
    /// The agent's complete environment; nothing is inherited from the host.
    pub env: Vec<(String, String)>,
    /// Files written into `$HOME` before the agent starts, by path relative to it.
    pub home_files: Vec<(PathBuf, Vec<u8>)>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(name, _)| format!("{name}=<redacted>"))
            .collect();
        let home_files: Vec<String> = self
            .home_files
            .iter()
            .map(|(path, bytes)| format!("{} (<redacted>, {} bytes)", path.display(), bytes.len()))
            .collect();
        formatter
            .debug_struct("Admission")
            .field("gate_socket", &self.gate_socket)
            .field("gate_port", &self.gate_port)
            .field("env", &env)
            .field("home_files", &home_files)
            .finish()
    }
}

/// Resource limits of a session. `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory in bytes (swap included where the host accounts it).
    pub memory: Option<u64>,
    /// Processes and threads of the agent (the sandbox's own init process is added).
    pub pids: Option<u64>,
    /// CPU bandwidth in cores, e.g. `1.5`.
    pub cpus: Option<f64>,
    /// Wall-clock time after which the session is ended as a stop ends it.
    pub timeout: Option<Duration>,
    /// How long a timeout or stop waits for the agent to exit on `SIGTERM` before the whole
    /// sandbox is killed; `None`: [`DEFAULT_STOP_GRACE`].
    pub stop_grace: Option<Duration>,
}

/// How long the agent has to exit on `SIGTERM` when a timeout or stop ends its session, as
/// `docker stop` gives a container.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

impl Limits {
    /// How long a timeout or stop waits for the agent to exit on `SIGTERM`.
    pub(crate) fn grace(&self) -> Duration {
        self.stop_grace.unwrap_or(DEFAULT_STOP_GRACE)
    }

    /// Whether `controller`'s limit is set.
    pub(crate) fn wants(&self, controller: crate::probe::Controller) -> bool {
        use crate::probe::Controller;
        match controller {
            Controller::Memory => self.memory.is_some(),
            Controller::Pids => self.pids.is_some(),
            Controller::Cpu => self.cpus.is_some(),
        }
    }

    /// Whether any limit needs a cgroup (the timeout does not).
    pub(crate) fn wants_cgroups(&self) -> bool {
        crate::probe::Controller::ALL
            .into_iter()
            .any(|controller| self.wants(controller))
    }
}

/// An isolation property a host may be unable to give, which a user may waive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Property {
    /// Landlock file-system and network rules (`--dangerously-skip-landlock`).
    Landlock,
    /// The seccomp system-call filter (`--dangerously-skip-seccomp`).
    Seccomp,
    /// Memory, pids and cpu limits through cgroups (`--dangerously-skip-limits`).
    Limits,
}

impl Property {
    /// The stable kebab-case name used in messages and audit records.
    pub fn name(self) -> &'static str {
        match self {
            Property::Landlock => "landlock",
            Property::Seccomp => "seccomp",
            Property::Limits => "limits",
        }
    }
}

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (`SIGTERM` or `SIGKILL` after a timeout or stop).
    Signal(i32),
}

impl ExitStatus {
    /// Whether the agent exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

/// Resource usage of the whole session (the init processes and every reaped agent process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// User CPU time.
    pub user_cpu: Duration,
    /// System CPU time.
    pub system_cpu: Duration,
    /// Largest resident set size of any one process, in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
}

/// The result of a session that ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The agent's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed the agent (after a timeout or stop: `SIGTERM`, or `SIGKILL` when
    /// it did not exit within the grace period).
    pub signal: Option<i32>,
    /// Why moat ended the session, when it did: `timed out after 30s`, `stopped`.
    pub reason: Option<String>,
    /// Whether the timeout ended it.
    pub timed_out: bool,
    /// Whether [`Stop::stop`](crate::Stop::stop) ended it.
    pub stopped: bool,
    /// Wall-clock time from spawn to exit.
    pub duration: std::time::Duration,
    /// Resource usage.
    pub usage: ResourceUsage,
    /// Which properties and limits actually held, e.g. `landlock-fs (abi 7)`,
    /// `memory limit (cgroup v1)`.
    pub enforced: Vec<String>,
}

impl Outcome {
    /// How the agent ended, as one value.
    pub fn status(&self) -> ExitStatus {
        match (self.exit_code, self.signal) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(signal)) => ExitStatus::Signal(signal),
            (None, None) => ExitStatus::Signal(libc::SIGKILL),
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl Spec {
    /// Checks what the init relies on: a command, clean absolute paths.
    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        let invalid = |message: String| Err(SandboxError::InvalidSpec(message));
        if self.command.is_empty() {
            return invalid("the command is empty".to_owned());
        }
        for (label, path) in [
            ("workspace", &self.workspace),
            ("home", &self.home),
            ("gate directory", &self.gate_dir),
        ] {
            if !is_clean_absolute(path) {
                return invalid(format!(
                    "the {label} path {} is not a clean absolute path",
                    path.display()
                ));
            }
        }
        let root = Path::new("/");
        if [&self.workspace, &self.home, &self.gate_dir]
            .iter()
            .any(|path| path.as_path() == root)
        {
            return invalid("the workspace, home and gate directory cannot be /".to_owned());
        }
        for path in &self.ro_paths {
            if !is_clean_absolute(path) || path == Path::new("/") {
                return invalid(format!(
                    "the read-only path {} is not a clean absolute path",
                    path.display()
                ));
            }
        }
        Ok(())
    }
}

impl Admission {
    /// Checks what the init relies on: a clean absolute socket path, home files inside
    /// `$HOME`, valid environment names.
    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        let invalid = |message: String| Err(SandboxError::InvalidSpec(message));
        if !is_clean_absolute(&self.gate_socket) {
            return invalid(format!(
                "the gate socket path {} is not a clean absolute path",
                self.gate_socket.display()
            ));
        }
        for (path, _) in &self.home_files {
            let inside = path
                .components()
                .all(|component| matches!(component, Component::Normal(_)));
            if !inside || path.as_os_str().is_empty() {
                return invalid(format!(
                    "the home file {} is not a relative path inside $HOME",
                    path.display()
                ));
            }
        }
        for (name, _) in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return invalid(format!("the environment variable name {name:?} is invalid"));
            }
        }
        Ok(())
    }
}

pub(crate) fn is_clean_absolute(path: &Path) -> bool {
    let mut components = path.components();
    components.next() == Some(Component::RootDir)
        && components.all(|component| matches!(component, Component::Normal(_)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid spec for unit tests.
    pub(crate) fn spec() -> Spec {
        Spec {
            command: vec!["true".to_owned()],
            workspace: "/work/project".into(),
            gate_dir: "/var/lib/moat/sessions/1/sandbox".into(),
            home: "/home/agent".into(),
            ro_paths: vec![],
            limits: Limits::default(),
            allow_missing: vec![],
            stdin_prefix: None,
        }
    }

    /// A valid admission for unit tests.
    pub(crate) fn admission() -> Admission {
        Admission {
            gate_socket: "/var/lib/moat/sessions/1/sandbox/gate.sock".into(),
            gate_port: 7070,
            env: vec![],
            home_files: vec![(".npmrc".into(), b"registry=x".to_vec())],
        }
    }

    #[test]
    fn a_home_file_cannot_escape_home() {
        let mut escaping = admission();
        escaping.home_files = vec![("../../etc/passwd".into(), vec![])];
        assert!(escaping.validate().is_err());
        let mut absolute = admission();
        absolute.home_files = vec![("/etc/passwd".into(), vec![])];
        assert!(absolute.validate().is_err());
        assert!(admission().validate().is_ok());
    }

    #[test]
    fn the_gate_socket_must_be_a_clean_absolute_path() {
        for socket in ["gate.sock", "/run/../gate.sock", ""] {
            let mut relative = admission();
            relative.gate_socket = socket.into();
            assert!(relative.validate().is_err(), "{socket}");
        }
    }

    #[test]
    fn relative_or_dotted_paths_are_refused() {
        let mut relative = spec();
        relative.workspace = "project".into();
        assert!(relative.validate().is_err());
        let mut dotted = spec();
        dotted.workspace = "/work/../etc".into();
        assert!(dotted.validate().is_err());
        let mut root = spec();
        root.ro_paths = vec!["/".into()];
        assert!(root.validate().is_err());
    }

    #[test]
    fn debug_output_redacts_env_values_home_files_and_stdin() {
        let mut secret = admission();
        secret.env = vec![("NPM_TOKEN".to_owned(), "npm_s3cr3t".to_owned())];
        secret.home_files = vec![(
            ".npmrc".into(),
            b"//registry/:_authToken=npm_s3cr3t".to_vec(),
        )];
        let debug = format!("{secret:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("NPM_TOKEN=<redacted>"), "{debug}");
        assert!(debug.contains(".npmrc (<redacted>, 33 bytes)"), "{debug}");
        let mut with_stdin = spec();
        with_stdin.stdin_prefix = Some(b"npm_s3cr3t".to_vec());
        let debug = format!("{with_stdin:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn the_spec_and_admission_round_trip_through_json() {
        let original = spec();
        let json = serde_json::to_vec(&original).expect("serialize");
        let back: Spec = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(back.command, original.command);
        assert_eq!(back.limits, original.limits);
        let original = admission();
        let json = serde_json::to_vec(&original).expect("serialize");
        let back: Admission = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(back.home_files, original.home_files);
        assert_eq!(back.gate_port, original.gate_port);
    }
}
