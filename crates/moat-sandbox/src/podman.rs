//! The podman backend: the same session contract as the embedded backend, with podman making
//! the namespaces, the root and the limits.
//!
//! # What a session is
//!
//! [`run_backend`] with [`Backend::Podman`] runs one `podman run` (attached, `--rm`) whose
//! entrypoint is the init program itself, bind-mounted read-only at `/run/moat/init` and
//! started as `/run/moat/init __sandbox-init`. The spec and report pipes travel exactly as in
//! the embedded backend, at descriptors 3 and 4, through `--preserve-fds 2`: nothing about the
//! session (home files, environment) is in podman's argv, its environment or a file. The
//! request is marked `container`, so the init skips the namespaces and the new root and only
//! writes the home files, checks `lo`, bridges `127.0.0.1:<gate_port>` to the socket, confines
//! the agent (no_new_privs, Landlock, seccomp — the same rules as the embedded backend) and
//! reports its exit status and resource usage.
//!
//! The container: `--network none`, private pid, ipc, uts and cgroup namespaces,
//! `--cap-drop ALL`, `--security-opt no-new-privileges`, `--read-only` with
//! `--read-only-tmpfs=false`, `--security-opt mask=/sys` (an empty read-only tmpfs over
//! `/sys`, which would otherwise list the host's devices and cgroups), `--no-hosts`,
//! `--hostname moat`, `--env-host=false`, `--http-proxy=false`, `--log-driver none` (the
//! agent's output is not kept on disk),
//! tmpfs `/tmp` and `$HOME` (nosuid, nodev, owned by the agent), the workspace read-write at its
//! host path and the working directory, `ro_paths` read-only, the gate socket read-only at
//! [`GATE_SOCKET_INSIDE`]; every bind `nosuid,nodev`. The agent runs as the caller's uid:gid:
//! `--user 0:0` for rootful podman (root with an empty capability set, no user namespace; the
//! workspace's files stay owned by the caller), `--userns keep-id` for rootless podman. Limits map to
//! `--memory` (with `--memory-swap` equal: no swap), `--pids-limit` (the init's two tasks added,
//! as in the embedded backend) and `--cpus`; a limit whose cgroup controller podman does not
//! report refuses the session unless [`Property::Limits`] is waived. The timeout and [`Stop`]
//! run `podman kill --signal KILL`; podman itself is spawned with a cleared environment (a
//! short allow-list: `PATH`, `HOME`, `XDG_*`, `CONTAINERS_*`, `TMPDIR`), so no host secret can
//! reach it.
//!
//! # The root
//!
//! With no image ([`Backend::Podman::image`] `None`) the root is derived from the host and
//! works offline: a fresh directory per session (`$TMPDIR/moat-podman-…`, removed afterwards)
//! holding the merged-usr links, a generated `/etc` (passwd, group, hosts, nsswitch.conf,
//! hostname — the same files as the embedded backend, plus the agent's uid when it is not 0)
//! and empty mount points, started with `--rootfs DIR`; the host's `/usr` and the non-secret
//! `/etc` entries (CA roots, alternatives, linker cache, …) are bound read-only over it.
//! `image: Some(NAME)` runs a local image instead (`--pull never`; e.g. one made with
//! `podman import rootfs.tar moat-agent`), and `Some("/abs/dir")` an unpacked root directory;
//! either must hold a C library the init binary can run with (it is bound in from the host).
//!
//! # Host workarounds, detected and applied automatically
//!
//! - **Hybrid cgroups** (cgroup v1 controllers plus a cgroup2 mount such as
//!   `/sys/fs/cgroup/unified`): crun refuses with "cgroups in hybrid mode not supported, drop
//!   all controllers from cgroupv2". Every podman command is then started in a private mount
//!   namespace in which the cgroup2 mounts are detached — the equivalent of
//!   `unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec podman …'`, done in a `pre_exec`
//!   hook (`unshare(CLONE_NEWNS)`, `mount --make-rprivate /`, `umount2(…, MNT_DETACH)`). The
//!   host's mounts are untouched; podman then sees a pure cgroup v1 host and `cgroupfs` holds
//!   the memory, pids and cpu limits. This needs root (`CAP_SYS_ADMIN`). Not root (rootless
//!   podman), moat points podman at runc instead (`podman --runtime …/runc …`), which accepts
//!   the v1 hierarchies; rootless podman on cgroup v1 has no limits (they refuse the session
//!   unless waived). Without runc it says to install it.
//! - **Resource limits podman cannot raise**: rootful podman asks crun for
//!   `RLIMIT_NOFILE=1048576`, which fails ("setrlimit `RLIMIT_NOFILE`: Operation not
//!   permitted") when the caller lacks `CAP_SYS_RESOURCE` and has a lower hard limit. Every
//!   session passes the caller's own limits, `--ulimit nofile=SOFT:HARD --ulimit
//!   nproc=SOFT:HARD`, so the agent inherits what the caller has, as in the embedded backend —
//!   `nproc` capped at 32768, because podman lowers its own `RLIMIT_NPROC` to that at start and
//!   crun cannot raise it back (here: `--ulimit nofile=20000:20000 --ulimit nproc=32768:32768`).
//!
//! [`probe_podman`] says whether podman is installed and really starts a container here, and
//! which workarounds it applied.
//!
//! # Known gaps
//!
//! - Start-up: one session costs ~110–165 ms of podman and crun (the embedded backend 6–8 ms
//!   with its audited session start and end; see BENCHMARKS.md).
//! - [`Outcome::usage`] is measured by the init inside (its own and that of every process of
//!   the container, which it kills and reaps once the agent exits); a session killed by the
//!   timeout or [`Stop`] reports zero usage.
//! - Rootless podman (`--userns keep-id`) is tested with one session run as an unprivileged
//!   user (`podman_rootless_runs_the_session_as_the_caller`, set up by `.ci/run`); the escape
//!   tests run under rootful podman.
//! - A gate port below 1024 cannot be bound by the capability-less init in the container.
//! - An image or root directory must carry a C library the init binary runs with; crun
//!   creates the mount points in a root directory (it is then mounted read-only).
//! - A `docker` backend is not written (no Docker engine on this host).

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::mount::{MountPropagationFlags, UnmountFlags};
use rustix::process::{Pid, Signal};
use rustix::thread::UnshareFlags;

use crate::door::Entry;
use crate::error::SandboxError;
use crate::forked::InitProcess;
use crate::host::{
    Ending, Init, OnExit, Stop, Teardown, asked_to_end, host_report, outcome,
    require_landlock_and_seccomp, run_admitted, wait_hearing, wait_with_usage,
};
use crate::protocol::{
    Admitted, Confirmed, GATE_SOCKET_INSIDE, INIT_SUBCOMMAND, Report, Reports, Request, write_frame,
};
use crate::rootfs::{ETC_BINDS, USR_LINKS, etc_files};
use crate::spec::{Admission, ExitStatus, Outcome, Property, ResourceUsage, Spec};

/// Where the init program is bound inside the container.
const INIT_INSIDE: &str = "/run/moat/init";
/// podman's own exit codes when it could not run the container (125: podman, 126: the
/// command could not be invoked, 127: not found).
const PODMAN_FAILURES: [i32; 3] = [125, 126, 127];
/// How much of podman's stderr is kept for an error message.
const STDERR_TAIL: usize = 4096;
/// The environment podman may see; everything else of the caller's is cleared.
const PODMAN_ENV: [&str; 11] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF",
];
/// podman lowers its own `RLIMIT_NPROC` to this at start (`setrlimit(RLIMIT_NPROC, 32768)`,
/// seen with strace on podman 4.3.1), so a container cannot be given more.
const PODMAN_NPROC: u64 = 32 * 1024;
/// `CAP_SYS_RESOURCE` (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which backend runs a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded backend: [`run_with_stop`](crate::run_with_stop), no daemon (start-up in
    /// BENCHMARKS.md).
    Embedded,
    /// One `podman run` per session (see the [module docs](self)).
    Podman {
        /// The podman program: a path, or a name looked up in `PATH` (`podman`).
        program: PathBuf,
        /// The session's root: `None` derives it from the host (works offline), a name runs
        /// that local image (never pulled), an absolute path runs that root directory.
        image: Option<String>,
    },
}

impl Backend {
    /// Podman from `PATH` with the host-derived root.
    pub fn podman() -> Self {
        Backend::Podman {
            program: PathBuf::from("podman"),
            image: None,
        }
    }

    /// The stable name recorded in session events: `embedded`, `podman`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Podman { .. } => "podman",
        }
    }
}

/// Runs one agent session with `backend` and waits for it, or until `stop` fires: the same
/// contract, errors and [`Outcome`] as [`run_with_stop`](crate::run_with_stop). For podman,
/// `init_program` is bound into the container read-only and must run there (the host-derived
/// root always can); [`Outcome::duration`] and the timeout include podman's start-up, and
/// [`Outcome::usage`] is what the init measured inside (zero when the session was killed).
pub fn run_backend(
    backend: &Backend,
    spec: &Spec,
    admission: &Admission,
    init_program: &Path,
    stop: &Stop,
) -> Result<Outcome, SandboxError> {
    let entry = Entry::admitted(admission).map_err(SandboxError::Spawn)?;
    run_backend_admitted(
        backend,
        spec,
        init_program,
        stop,
        entry,
        Box::new(|_, _| {}),
    )
}

/// [`run_backend`], starting the agent only once the caller has admitted and confirmed the
/// session through the [`Door`](crate::Door) of `entry` (podman waits for both before `podman
/// run`); `on_exit` hears of the agent's exit (see [`OnExit`]: podman's teardown is not
/// overlapped, it hears once the container is gone).
pub fn run_backend_admitted(
    backend: &Backend,
    spec: &Spec,
    init_program: &Path,
    stop: &Stop,
    entry: Entry,
    on_exit: OnExit<'_>,
) -> Result<Outcome, SandboxError> {
    match backend {
        Backend::Embedded => run_admitted(spec, Init::Program(init_program), stop, entry, on_exit),
        Backend::Podman { program, image } => {
            let outcome = run_podman(program, image.as_deref(), spec, init_program, stop, &entry)?;
            if !(outcome.timed_out || outcome.stopped) {
                on_exit(&outcome, Teardown::Run);
            }
            Ok(outcome)
        }
    }
}

/// What [`probe_podman`] found: podman works here, how, and with which workarounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanReport {
    /// The podman program that ran, resolved through `PATH`.
    pub program: PathBuf,
    /// `podman version`, e.g. `4.3.1`.
    pub version: String,
    /// Whether podman runs rootless (the caller is not root).
    pub rootless: bool,
    /// The cgroup version podman sees (`v1`, `v2`), after the workarounds.
    pub cgroup_version: String,
    /// The cgroup controllers podman can use, e.g. `memory`, `pids`, `cpu`.
    pub cgroup_controllers: Vec<String>,
    /// The workarounds applied to every podman command here, each naming the exact flags or
    /// commands; empty on a host that needs none.
    pub workarounds: Vec<String>,
    /// Spawn-to-exit of one `podman run … true` in the probe.
    pub start_to_exit: Duration,
}

/// Whether podman is installed and really runs a container here, with the workarounds this
/// host needs applied. Refuses with [`SandboxError::Unsupported`] saying what failed (not
/// installed, `podman info` failing, the container not starting) and how to fix it.
/// `image` is as in [`Backend::Podman`]; the probe runs `/usr/bin/true` in it.
pub fn probe_podman(program: &Path, image: Option<&str>) -> Result<PodmanReport, SandboxError> {
    let program = resolve(program)?;
    let workarounds = Workarounds::detect();
    let info = podman_info(&program, &workarounds).map_err(|what| SandboxError::Unsupported {
        what,
        hint: workarounds.hint(),
    })?;
    let root = Root::new(image, None, None).map_err(|error| SandboxError::Unsupported {
        what: format!("could not prepare the container root: {error}"),
        hint: "set TMPDIR to a writable directory".to_owned(),
    })?;
    let mut args: Vec<OsString> = vec!["--events-backend".into(), "none".into(), "run".into()];
    args.extend(
        [
            "--rm",
            "--log-driver",
            "none",
            "--network",
            "none",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
            "--read-only-tmpfs=false",
        ]
        .map(OsString::from),
    );
    args.extend(workarounds.ulimit_args());
    args.extend(root.args(None));
    args.push("/usr/bin/true".into());
    let started = Instant::now();
    let output = podman_command(&program, &workarounds, &args)
        .current_dir(&root.session)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| SandboxError::Unsupported {
            what: format!("could not run {}: {error}", program.display()),
            hint: workarounds.hint(),
        })?;
    let start_to_exit = started.elapsed();
    drop(root);
    if !output.status.success() {
        return Err(SandboxError::Unsupported {
            what: format!(
                "podman could not run a container here ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            hint: workarounds.hint(),
        });
    }
    Ok(PodmanReport {
        program,
        version: info.version,
        rootless: info.rootless,
        cgroup_version: info.cgroup_version,
        cgroup_controllers: info.controllers,
        workarounds: workarounds.describe(),
        start_to_exit,
    })
}

/// Finds `program` as `Command` would: a path as is, a bare name in `PATH`.
fn resolve(program: &Path) -> Result<PathBuf, SandboxError> {
    let missing = || SandboxError::Unsupported {
        what: format!("podman is not installed (no {} found)", program.display()),
        hint: "install it (Debian: apt-get install -y podman) or use the embedded backend"
            .to_owned(),
    };
    if program.components().count() > 1 {
        return if program.is_file() {
            Ok(program.to_path_buf())
        } else {
            Err(missing())
        };
    }
    find_in_path(program).ok_or_else(missing)
}

/// The executable `program` names in `PATH` (or the default path), if any.
fn find_in_path(program: impl AsRef<Path>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program.as_ref()))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|metadata| {
                metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
            })
        })
}

/// This host's workarounds (see the module docs).
#[derive(Debug, Clone)]
struct Workarounds {
    /// cgroup2 mount points to detach in podman's private mount namespace (hybrid hosts).
    hide_cgroup2: Vec<CString>,
    /// The OCI runtime podman is told to use instead of its default (`--runtime`): `runc` on a
    /// hybrid host when moat is not root (crun refuses hybrid cgroups, and only root can hide
    /// the cgroup2 mount; runc accepts the v1 hierarchies).
    runtime: Option<PathBuf>,
    /// Whether the hybrid layout was seen but nothing here gets around it (not root, no runc).
    hybrid_unfixable: bool,
    /// `--ulimit` values: the caller's own `nofile` and `nproc` (soft:hard).
    ulimits: Vec<String>,
    /// Whether the caller lacks `CAP_SYS_RESOURCE`, so podman's defaults would fail.
    ulimits_needed: bool,
}

impl Workarounds {
    fn detect() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let (mut v1, mut v2) = (false, Vec::new());
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap_or_default();
            match right.split(' ').next() {
                Some("cgroup") => v1 = true,
                Some("cgroup2") => v2.push(unescape(mount_point)),
                _ => {}
            }
        }
        let root = rustix::process::geteuid().is_root();
        let hybrid = v1 && !v2.is_empty();
        let hide_cgroup2 = if hybrid && root {
            v2.into_iter()
                .filter_map(|path| CString::new(path).ok())
                .collect()
        } else {
            Vec::new()
        };
        let ulimits = [
            ("nofile", rustix::process::Resource::Nofile, u64::MAX),
            ("nproc", rustix::process::Resource::Nproc, PODMAN_NPROC),
        ]
        .into_iter()
        .filter_map(|(name, resource, ceiling)| {
            let limit = rustix::process::getrlimit(resource);
            let hard = limit.maximum.unwrap_or(ceiling).min(ceiling);
            if hard == u64::MAX {
                return None;
            }
            let soft = limit.current.unwrap_or(hard).min(hard);
            Some(format!("{name}={soft}:{hard}"))
        })
        .collect();
        // Debian installs runc in /usr/sbin, which an unprivileged user's PATH often lacks.
        let runtime = if hybrid && !root {
            find_in_path("runc").or_else(|| {
                ["/usr/sbin/runc", "/usr/local/sbin/runc", "/sbin/runc"]
                    .into_iter()
                    .map(PathBuf::from)
                    .find(|path| path.is_file())
            })
        } else {
            None
        };
        Workarounds {
            hide_cgroup2,
            hybrid_unfixable: hybrid && !root && runtime.is_none(),
            runtime,
            ulimits,
            ulimits_needed: !has_effective_capability(CAP_SYS_RESOURCE),
        }
    }

    fn ulimit_args(&self) -> Vec<OsString> {
        self.ulimits
            .iter()
            .flat_map(|value| [OsString::from("--ulimit"), OsString::from(value)])
            .collect()
    }

    /// The workarounds, as the exact commands and flags they amount to.
    fn describe(&self) -> Vec<String> {
        let mut described = Vec::new();
        if !self.hide_cgroup2.is_empty() {
            let paths: Vec<String> = self
                .hide_cgroup2
                .iter()
                .map(|path| path.to_string_lossy().into_owned())
                .collect();
            described.push(format!(
                "hybrid cgroups: podman runs in a private mount namespace without the cgroup2 mount (like `unshare -m sh -c 'umount {} && exec podman …'`)",
                paths.join(" ")
            ));
        }
        if let Some(runtime) = &self.runtime {
            described.push(format!(
                "hybrid cgroups, not root: podman runs containers with runc (`podman --runtime {}`), since crun refuses hybrid cgroups and only root can hide the cgroup2 mount",
                runtime.display()
            ));
        }
        if self.hybrid_unfixable {
            described.push(
                "hybrid cgroups: cannot hide the cgroup2 mount without root and runc is not installed; crun will refuse"
                    .to_owned(),
            );
        }
        if self.ulimits_needed {
            described.push(format!(
                "no CAP_SYS_RESOURCE: {} (the caller's own limits)",
                self.ulimits
                    .iter()
                    .map(|value| format!("--ulimit {value}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        described
    }

    fn hint(&self) -> String {
        let mut hint = "check `podman run --rm --rootfs / true` by hand".to_owned();
        if self.hybrid_unfixable {
            hint.push_str("; this host mixes cgroup v1 and v2 (hybrid), which crun refuses: install runc (moat then uses it), run moat as root so it can hide the cgroup2 mount, or boot with a pure cgroup layout");
        }
        hint.push_str("; or use the embedded backend");
        hint
    }
}

/// Whether this thread has `capability` in its effective set (`/proc/self/status` `CapEff`).
fn has_effective_capability(capability: u32) -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|effective| effective & (1u64 << capability) != 0)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 4)
            .filter(|_| bytes[index] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match escaped {
            Some(value) => {
                out.push(value);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A podman command with a cleared environment and this host's mount-namespace workaround.
fn podman_command(program: &Path, workarounds: &Workarounds, args: &[OsString]) -> Command {
    let mut command = Command::new(program);
    if let Some(runtime) = &workarounds.runtime {
        command.arg("--runtime").arg(runtime);
    }
    command.args(args).env_clear();
    for name in PODMAN_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", DEFAULT_PATH);
    }
    if !workarounds.hide_cgroup2.is_empty() {
        let hide = workarounds.hide_cgroup2.clone();
        #[allow(unsafe_code)]
        // SAFETY: the hook runs in the forked child before exec and only makes system calls
        // (unshare, mount, umount2) on C strings prepared before the fork; it allocates
        // nothing and takes no lock. The new mount namespace is the child's alone, so the
        // host's mounts are untouched.
        unsafe {
            command.pre_exec(move || {
                rustix::thread::unshare_unsafe(UnshareFlags::NEWNS)?;
                rustix::mount::mount_change(
                    c"/",
                    MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
                )?;
                for path in &hide {
                    rustix::mount::unmount(path.as_c_str(), UnmountFlags::DETACH)?;
                }
                Ok(())
            });
        }
    }
    command
}

/// What `podman info` says, cached per program for the process.
#[derive(Debug, Clone)]
struct PodmanInfo {
    version: String,
    rootless: bool,
    cgroup_version: String,
    controllers: Vec<String>,
}

fn podman_info(program: &Path, workarounds: &Workarounds) -> Result<PodmanInfo, String> {
    let output = podman_command(
        program,
        workarounds,
        &[
            "--events-backend".into(),
            "none".into(),
            "info".into(),
            "--format".into(),
            "json".into(),
        ],
    )
    .stdin(Stdio::null())
    .output()
    .map_err(|error| format!("could not run {}: {error}", program.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`podman info` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("could not parse `podman info`: {error}"))?;
    let host = &info["host"];
    Ok(PodmanInfo {
        version: info["version"]["Version"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
        rootless: host["security"]["rootless"].as_bool().unwrap_or(false),
        cgroup_version: host["cgroupVersion"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
        controllers: host["cgroupControllers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|value| value.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn cached_info(program: &Path, workarounds: &Workarounds) -> Result<PodmanInfo, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Result<PodmanInfo, String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().ok().and_then(|map| map.get(program).cloned()) {
        return found;
    }
    let info = podman_info(program, workarounds);
    if let Ok(mut map) = cache.lock() {
        map.insert(program.to_path_buf(), info.clone());
    }
    info
}

/// The container's root: a per-session host-derived directory, an image, or a directory.
struct Root {
    /// This session's private directory, removed on drop: podman's working directory (conmon
    /// 2.1 writes an `oom` file into its cwd, containers/conmon#504) and, for the host-derived
    /// root, its parent.
    session: PathBuf,
    kind: RootKind,
}

enum RootKind {
    /// The host-derived skeleton (`<session>/root`) and the host directories bound into it
    /// where the host has no merged-usr links (`/bin`, `/lib`, …).
    Host {
        dir: PathBuf,
        bound: Vec<PathBuf>,
    },
    Image(String),
    Directory(PathBuf),
}

impl Root {
    /// `home` and `agent` (uid, gid) shape the generated `/etc` of the host-derived root.
    fn new(
        image: Option<&str>,
        home: Option<&Path>,
        agent: Option<(u32, u32)>,
    ) -> std::io::Result<Self> {
        let session = unique_dir()?;
        let kind = match image {
            Some(path) if path.starts_with('/') => Ok(RootKind::Directory(PathBuf::from(path))),
            Some(name) => Ok(RootKind::Image(name.to_owned())),
            None => {
                let dir = session.join("root");
                build_skeleton(&dir, home.unwrap_or(Path::new("/root")), agent)
                    .map(|bound| RootKind::Host { dir, bound })
            }
        };
        match kind {
            Ok(kind) => Ok(Root { session, kind }),
            Err(error) => {
                let _ = fs::remove_dir_all(&session);
                Err(error)
            }
        }
    }

    /// The mounts and the final `--rootfs DIR` / `--entrypoint … IMAGE` arguments; the
    /// command (`__sandbox-init` or `true`) follows. `init` is the init program to bind.
    fn args(&self, init: Option<&Path>) -> Vec<OsString> {
        let mut args = Vec::new();
        if let RootKind::Host { bound, .. } = &self.kind {
            for path in std::iter::once(Path::new("/usr")).chain(bound.iter().map(PathBuf::as_path))
            {
                args.extend(volume(path, path, "ro,nosuid,nodev"));
            }
            for name in ETC_BINDS {
                let path = Path::new("/etc").join(name);
                if path.exists() {
                    args.extend(volume(&path, &path, "ro,nosuid,nodev"));
                }
            }
        }
        if let Some(init) = init {
            args.extend(volume(init, Path::new(INIT_INSIDE), "ro,nosuid,nodev"));
        }
        match &self.kind {
            RootKind::Host { dir, .. } | RootKind::Directory(dir) => {
                args.push("--rootfs".into());
                args.push(dir.into());
                if init.is_some() {
                    args.push(INIT_INSIDE.into());
                }
            }
            RootKind::Image(name) => {
                args.extend(["--pull".into(), "never".into()]);
                if init.is_some() {
                    args.extend(["--entrypoint".into(), INIT_INSIDE.into()]);
                }
                args.push(name.into());
            }
        }
        args
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.session);
    }
}

/// `$TMPDIR/moat-podman-<pid>-<n>-<nanos>`, created 0755 (the container user must traverse it).
fn unique_dir() -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "moat-podman-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Builds the host-derived root in `dir`: merged-usr links (or mount points for the real
/// directories, returned), the generated `/etc`, empty `usr`, `tmp`, `dev`, `proc`, `sys`,
/// `run`. Everything else comes from mounts.
fn build_skeleton(
    dir: &Path,
    home: &Path,
    agent: Option<(u32, u32)>,
) -> std::io::Result<Vec<PathBuf>> {
    fs::create_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for name in ["usr", "etc", "tmp", "dev", "proc", "sys", "run/moat"] {
        fs::create_dir_all(dir.join(name))?;
    }
    let mut bound = Vec::new();
    for name in USR_LINKS {
        let host = Path::new("/").join(name);
        match fs::read_link(&host) {
            Ok(target) => symlink(target, dir.join(name))?,
            Err(_) if host.is_dir() => {
                fs::create_dir(dir.join(name))?;
                bound.push(host);
            }
            Err(_) => {}
        }
    }
    for (name, text) in etc_files(home, agent) {
        fs::write(dir.join("etc").join(name), text)?;
    }
    Ok(bound)
}

/// `-v SOURCE:TARGET:OPTIONS`.
fn volume(source: &Path, target: &Path, options: &str) -> [OsString; 2] {
    let mut value = OsString::from(source);
    value.push(":");
    value.push(target);
    value.push(":");
    value.push(options);
    ["-v".into(), value]
}

/// Paths podman's `-v` cannot carry (its separators), refused up front.
fn check_volume_path(label: &str, path: &Path) -> Result<(), SandboxError> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.iter().any(|byte| matches!(byte, b':' | b',' | b'\n')) {
        return Err(SandboxError::InvalidSpec(format!(
            "the {label} path {} contains ':' or ',', which podman cannot mount",
            path.display()
        )));
    }
    Ok(())
}

/// The podman-side limit flags, what they enforce, and the first limit that cannot hold.
fn limit_args(
    spec: &Spec,
    info: Option<&PodmanInfo>,
) -> (Vec<OsString>, Vec<String>, Option<&'static str>) {
    let (mut args, mut enforced, mut missing) = (Vec::new(), Vec::new(), None);
    let has = |controller: &str| {
        info.is_some_and(|info| {
            !(info.rootless && info.cgroup_version == "v1")
                && info.controllers.iter().any(|held| held == controller)
        })
    };
    let version = info.map_or("unknown", |info| info.cgroup_version.as_str());
    let mut limit = |name: &'static str, controller: &str, flags: Vec<String>| {
        if has(controller) {
            args.extend(flags.into_iter().map(OsString::from));
            enforced.push(format!("{name} limit (podman, cgroup {version})"));
        } else if missing.is_none() {
            missing = Some(name);
        }
    };
    if let Some(bytes) = spec.limits.memory {
        limit(
            "memory",
            "memory",
            vec![
                "--memory".into(),
                bytes.to_string(),
                "--memory-swap".into(),
                bytes.to_string(),
            ],
        );
    }
    if let Some(pids) = spec.limits.pids {
        limit(
            "pids",
            "pids",
            vec!["--pids-limit".into(), pids.saturating_add(2).to_string()],
        );
    }
    if let Some(cpus) = spec.limits.cpus {
        limit("cpu", "cpu", vec!["--cpus".into(), format!("{cpus}")]);
    }
    (args, enforced, missing)
}

/// The podman backend's [`run_backend`].
fn run_podman(
    program: &Path,
    image: Option<&str>,
    spec: &Spec,
    init_program: &Path,
    stop: &Stop,
    entry: &Entry,
) -> Result<Outcome, SandboxError> {
    spec.validate()?;
    // podman binds the gate socket when it creates the container: admitted and confirmed
    // before that (the init finds both frames in its pipe).
    let admission = entry.wait_confirmed()?;
    for (label, path) in [
        ("workspace", spec.workspace.as_path()),
        ("home", spec.home.as_path()),
        ("gate socket", admission.gate_socket.as_path()),
        ("init program", init_program),
    ] {
        check_volume_path(label, path)?;
    }
    for path in &spec.ro_paths {
        check_volume_path("read-only", path)?;
    }
    let init_program = fs::canonicalize(init_program).map_err(SandboxError::Spawn)?;
    match fs::metadata(&admission.gate_socket) {
        Ok(metadata) if metadata.file_type().is_socket() => {}
        _ => {
            return Err(SandboxError::Setup(format!(
                "could not mount the gate socket {}: not a unix socket",
                admission.gate_socket.display()
            )));
        }
    }
    let program = resolve(program)?;
    let workarounds = Workarounds::detect();

    let host = host_report();
    require_landlock_and_seccomp(spec, host)?;
    let info = if spec.limits.wants_cgroups() {
        cached_info(&program, &workarounds).ok()
    } else {
        None
    };
    let (limit_flags, limits_enforced, missing) = limit_args(spec, info.as_ref());
    if let Some(name) = missing
        && !spec.allow_missing.contains(&Property::Limits)
    {
        return Err(SandboxError::Unavailable {
            property: Property::Limits,
            what: format!(
                "the {name} limit cannot hold under podman here (controllers: {}; cgroup {}{})",
                info.as_ref().map_or("unknown".to_owned(), |info| info.controllers.join(", ")),
                info.as_ref().map_or("unknown", |info| info.cgroup_version.as_str()),
                if info.as_ref().is_some_and(|info| info.rootless) { ", rootless" } else { "" }
            ),
            hint: "drop the limit, run podman with a delegated cgroup v2 controller, or pass --dangerously-skip-limits".to_owned(),
        });
    }

    let rootless = !rustix::process::geteuid().is_root();
    let (uid, gid) = crate::init::host_ids();
    let root = Root::new(image, Some(&spec.home), Some((uid, gid))).map_err(|error| {
        SandboxError::Spawn(std::io::Error::other(format!(
            "could not prepare the container root: {error}"
        )))
    })?;
    let name = container_name();
    let mut args: Vec<OsString> = vec!["--events-backend".into(), "none".into(), "run".into()];
    args.extend(
        [
            "--rm",
            "-i",
            "--name",
            &name,
            "--log-driver",
            "none",
            "--network",
            "none",
            "--pid",
            "private",
            "--ipc",
            "private",
            "--uts",
            "private",
            "--cgroupns",
            "private",
            "--no-hosts",
            "--hostname",
            "moat",
            "--env-host=false",
            "--http-proxy=false",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--security-opt",
            "mask=/sys",
            "--read-only",
            "--read-only-tmpfs=false",
            "--preserve-fds",
            "2",
        ]
        .map(OsString::from),
    );
    if rootless {
        args.extend(["--userns".into(), "keep-id".into()]);
    } else {
        args.extend(["--user".into(), format!("{uid}:{gid}").into()]);
    }
    args.extend(workarounds.ulimit_args());
    args.extend(limit_flags);
    for (target, mode) in [(Path::new("/tmp"), "1777"), (spec.home.as_path(), "0700")] {
        let mut value = OsString::from("type=tmpfs,destination=");
        value.push(target);
        value.push(format!(",tmpfs-mode={mode},chown=true"));
        args.extend(["--mount".into(), value]);
    }
    for path in &spec.ro_paths {
        args.extend(volume(path, path, "ro,nosuid,nodev"));
    }
    args.extend(volume(&spec.workspace, &spec.workspace, "rw,nosuid,nodev"));
    args.extend(volume(
        &admission.gate_socket,
        Path::new(GATE_SOCKET_INSIDE),
        "ro,nosuid,nodev,noexec",
    ));
    args.extend(["--workdir".into(), spec.workspace.clone().into_os_string()]);
    args.extend(root.args(Some(&init_program)));
    args.push(INIT_SUBCOMMAND.into());

    let request = Request {
        spec: spec.clone(),
        container: true,
    };
    let admitted = Admitted {
        admission,
        landlock: host.landlock_abi.is_some(),
        seccomp: host.seccomp,
    };
    let session_end = spawn_and_wait(
        &program,
        &workarounds,
        &args,
        &name,
        &root.session,
        (request, admitted),
        stop,
    )?;
    drop(root);
    let mut enforced = vec![
        format!(
            "podman container (namespaces: mount, pid, ipc, uts, cgroup; network none; {})",
            if rootless {
                "rootless, user namespace keep-id".to_owned()
            } else {
                format!("uid {uid}")
            }
        ),
        "read-only root (--read-only), binds nosuid,nodev".to_owned(),
        "capabilities dropped (--cap-drop ALL)".to_owned(),
        "no-new-privileges".to_owned(),
    ];
    let SessionEnd {
        ending,
        reports,
        podman_status,
        stderr_tail,
        duration,
    } = session_end;
    let (timed_out, stopped) = (ending == Ending::TimedOut, ending == Ending::Stopped);
    let mut agent = None;
    let mut started = false;
    for report in reports {
        match report {
            Report::Failed { message } if !(timed_out || stopped) => {
                return Err(SandboxError::Setup(message));
            }
            Report::Failed { .. } => {}
            Report::NotStarted {
                program,
                error,
                code,
            } if !(timed_out || stopped) => {
                return Err(SandboxError::CommandNotStarted {
                    program,
                    error,
                    code,
                });
            }
            Report::NotStarted { .. } => {}
            Report::Started { enforced: inside } => {
                started = true;
                enforced.extend(inside);
            }
            Report::Exited { status, usage } => agent = Some((status, usage)),
        }
    }
    if !(started || timed_out || stopped)
        && let ExitStatus::Code(code) = podman_status
        && PODMAN_FAILURES.contains(&code)
    {
        return Err(SandboxError::Setup(format!(
            "podman could not start the container (exit {code}): {}",
            stderr_tail.trim()
        )));
    }
    enforced.extend(limits_enforced);
    // An agent that exited on the SIGTERM of a timeout or stop reported how; one that was
    // killed did not.
    let (status, usage) = match (timed_out || stopped, agent) {
        (_, Some((status, usage))) => (status, usage),
        (true, None) => (ExitStatus::Signal(libc::SIGKILL), ResourceUsage::default()),
        (false, None) => (podman_status, ResourceUsage::default()),
    };
    Ok(outcome(spec, ending, status, duration, usage, enforced))
}

/// `moat-<pid>-<n>-<nanos>`: unique per session, for `podman kill`.
fn container_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "moat-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

struct SessionEnd {
    ending: Ending,
    reports: Vec<Report>,
    podman_status: ExitStatus,
    stderr_tail: String,
    duration: Duration,
}

/// Spawns `podman run` with the spec and report pipes at 3 and 4, sends the request, waits
/// (timeout, stop → `podman kill --signal TERM`, then `KILL` after the grace), reaps, collects
/// the reports.
fn spawn_and_wait(
    program: &Path,
    workarounds: &Workarounds,
    args: &[OsString],
    name: &str,
    cwd: &Path,
    (request, admitted): (Request, Admitted),
    stop: &Stop,
) -> Result<SessionEnd, SandboxError> {
    let mut command = podman_command(program, workarounds, args);
    command
        .current_dir(cwd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let (mut podman, mut child) = InitProcess::start(&mut command)?;
    let started = Instant::now();
    let stderr = child.stderr.take();
    let tail = Arc::new(Mutex::new(Vec::new()));
    let relay = {
        let tail = Arc::clone(&tail);
        thread::spawn(move || relay_stderr(stderr, &tail))
    };
    let (spec_write, report_read) = podman.take_pipes()?;
    let (pid, pidfd) = (podman.pid, &podman.pidfd);
    // Read by this thread as it waits, the reports first: a stop that fires once the agent
    // is starting (the init says so before it starts it) asks the agent to end.
    let mut reports = Reports::new(report_read);
    let mut heard = Vec::new();
    // The init reads the spec once the container runs: written from a thread, so a container
    // that never starts cannot hold up the timeout (its end of the pipe closing ends the write).
    // The session was admitted before podman ran, so its admission follows at once.
    let mut frames = Vec::new();
    write_frame(&mut frames, &request)
        .and_then(|()| write_frame(&mut frames, &admitted))
        .and_then(|()| write_frame(&mut frames, &Confirmed {}))
        .map_err(SandboxError::Spawn)?;
    thread::spawn(move || {
        let _ = std::fs::File::from(spec_write).write_all(&frames);
    });

    let ending = wait_hearing(
        pidfd,
        stop,
        request.spec.limits.timeout,
        &mut reports,
        &mut |report| heard.push(report),
    );
    if ending != Ending::Exited {
        // SIGTERM to the container's init, which relays it to the agent.
        let ask = || podman_quietly(program, workarounds, &["kill", "--signal", "TERM", name]);
        let grace = request.spec.limits.grace();
        let ended = heard
            .iter()
            .any(|report| matches!(report, Report::Started { .. }))
            && asked_to_end(stop, ask, || {
                wait_hearing(pidfd, stop, Some(grace), &mut reports, &mut |report| {
                    heard.push(report)
                })
            });
        if !ended {
            kill_container(program, workarounds, name, pidfd, pid);
        }
    }
    let (podman_status, _) = wait_with_usage(pid).map_err(SandboxError::Spawn)?;
    let duration = started.elapsed();
    // Every holder of the report pipe is gone with podman; a stray one cannot hang the caller.
    reports.drain_within(Duration::from_secs(5), &mut |report| heard.push(report));
    let _ = relay.join();
    let stderr_tail = tail
        .lock()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    Ok(SessionEnd {
        ending,
        reports: heard,
        podman_status,
        stderr_tail,
        duration,
    })
}

/// Copies podman's stderr (the agent's, and podman's own messages) to ours, keeping a tail.
fn relay_stderr(stderr: Option<std::process::ChildStderr>, tail: &Mutex<Vec<u8>>) {
    let Some(mut stderr) = stderr else { return };
    let mut buffer = [0u8; 8192];
    loop {
        match stderr.read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => {
                let _ = std::io::stderr().write_all(&buffer[..read]);
                if let Ok(mut kept) = tail.lock() {
                    kept.extend_from_slice(&buffer[..read]);
                    let excess = kept.len().saturating_sub(STDERR_TAIL);
                    kept.drain(..excess);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Runs `podman ARGS` with no input or output; whether it succeeded.
fn podman_quietly(program: &Path, workarounds: &Workarounds, args: &[&str]) -> bool {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    podman_command(program, workarounds, &args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Kills the container (`podman kill --signal KILL`), retrying while it is still being
/// created; if podman has not exited after 10 s, kills podman and removes the container.
fn kill_container(
    program: &Path,
    workarounds: &Workarounds,
    name: &str,
    pidfd: &std::os::fd::OwnedFd,
    pid: Pid,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let exited = || {
        let mut fds = [rustix::event::PollFd::new(
            pidfd,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(count) if count > 0)
    };
    while Instant::now() < deadline {
        podman_quietly(program, workarounds, &["kill", "--signal", "KILL", name]);
        if exited() {
            return;
        }
    }
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    podman_quietly(
        program,
        workarounds,
        &["rm", "--force", "--time", "0", name],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Limits;

    /// The spec module's test spec, with all three limits.
    fn spec() -> Spec {
        Spec {
            limits: Limits {
                memory: Some(64 << 20),
                pids: Some(16),
                cpus: Some(0.5),
                ..Limits::default()
            },
            ..crate::spec::tests::spec()
        }
    }

    fn info(controllers: &[&str], rootless: bool, version: &str) -> PodmanInfo {
        PodmanInfo {
            version: "4.3.1".to_owned(),
            rootless,
            cgroup_version: version.to_owned(),
            controllers: controllers.iter().map(|name| (*name).to_owned()).collect(),
        }
    }

    #[test]
    fn limits_map_to_podman_flags() {
        let (args, enforced, missing) = limit_args(
            &spec(),
            Some(&info(&["memory", "pids", "cpu"], false, "v1")),
        );
        let args: Vec<String> = args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--memory",
                "67108864",
                "--memory-swap",
                "67108864",
                "--pids-limit",
                "18",
                "--cpus",
                "0.5"
            ]
        );
        assert_eq!(enforced.len(), 3);
        assert_eq!(missing, None);
    }

    #[test]
    fn a_missing_controller_or_rootless_v1_cannot_hold() {
        let (_, _, missing) = limit_args(&spec(), Some(&info(&["pids", "cpu"], false, "v1")));
        assert_eq!(missing, Some("memory"));
        let (args, _, missing) =
            limit_args(&spec(), Some(&info(&["memory", "pids", "cpu"], true, "v1")));
        assert!(args.is_empty());
        assert_eq!(missing, Some("memory"));
        let (_, _, missing) = limit_args(&spec(), None);
        assert_eq!(missing, Some("memory"));
    }

    #[test]
    fn paths_podman_cannot_mount_are_refused() {
        assert!(check_volume_path("workspace", Path::new("/work/a:b")).is_err());
        assert!(check_volume_path("workspace", Path::new("/work/a,b")).is_err());
        assert!(check_volume_path("workspace", Path::new("/work/a b")).is_ok());
    }

    #[test]
    fn a_missing_podman_is_unsupported_with_an_install_hint() {
        let error = resolve(Path::new("/nonexistent/podman")).expect_err("missing");
        let SandboxError::Unsupported { what, hint } = error else {
            panic!("not Unsupported: {error}")
        };
        assert!(what.contains("not installed"), "{what}");
        assert!(hint.contains("apt-get install -y podman"), "{hint}");
        assert!(probe_podman(Path::new("/nonexistent/podman"), None).is_err());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/sys/fs/cgroup/unified"), "/sys/fs/cgroup/unified");
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn the_host_root_skeleton_has_usr_links_and_etc() {
        let root =
            Root::new(None, Some(Path::new("/home/agent")), Some((1000, 1000))).expect("skeleton");
        let RootKind::Host { dir, .. } = &root.kind else {
            panic!("not a host root")
        };
        let passwd = fs::read_to_string(dir.join("etc/passwd")).expect("passwd");
        assert!(
            passwd.contains("agent:x:1000:1000:agent:/home/agent:/bin/sh"),
            "{passwd}"
        );
        assert!(!dir.join("etc/shadow").exists());
        assert!(!dir.join("etc/resolv.conf").exists());
        let args: Vec<String> = root
            .args(Some(Path::new("/usr/bin/moat")))
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&"/usr:/usr:ro,nosuid,nodev".to_owned()),
            "{args:?}"
        );
        assert!(args.contains(&"/usr/bin/moat:/run/moat/init:ro,nosuid,nodev".to_owned()));
        assert_eq!(args[args.len() - 3], "--rootfs");
        assert_eq!(args[args.len() - 1], INIT_INSIDE);
        let dir = dir.clone();
        drop(root);
        assert!(!dir.exists(), "the skeleton was not removed");
    }

    #[test]
    fn an_image_runs_with_the_init_as_entrypoint() {
        let root = Root::new(Some("moat-agent"), None, None).expect("image");
        let args: Vec<String> = root
            .args(Some(Path::new("/usr/bin/moat")))
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args[args.len() - 5..],
            ["--pull", "never", "--entrypoint", INIT_INSIDE, "moat-agent"]
        );
        assert!(!args.iter().any(|arg| arg.starts_with("/usr:")));
    }
}
