//! The embedded backend of `moat run`: one agent session in a sandbox whose only way out is
//! the gate.
//!
//! # Design
//!
//! Two sides, two entry points:
//!
//! - [`run`] is the **host side**. The caller (the `moat` CLI, multi-threaded) never forks and
//!   continues: `run` executes `init_program __sandbox-init` as a fresh, single-threaded process
//!   with an empty environment ([`Init::Program`]), or takes an init the caller forked at the first
//!   line of its `main`, before it read anything but argv ([`InitProcess::fork`], which wipes the
//!   child's copy of the environment and arguments; [`Init::Forked`]: one `execve` of the caller's
//!   binary less per session). Two pipes are installed at fixed descriptors in that process:
//!   [`SPEC_FD`] (3), down which go two length-prefixed JSON frames, the request (the [`Spec`]:
//!   what runs, where, under which limits) and then the [`Admission`] (the gate socket, the port
//!   inside, and the agent's environment and home files, which point its clients at that gate), and
//!   [`REPORT_FD`] (4), on which the init writes newline-delimited JSON reports (setup failure,
//!   what was enforced, the agent's exit status). Nothing about the session travels in argv or the
//!   environment. `run` places the init in the session's cgroups *before* it writes the request
//!   (the init blocks on it, so no process of the session runs outside its limits), writes the
//!   request at once and the admission only once the host's checks pass and the caller admits the
//!   session ([`request`], then [`Requested::run`]; [`Door`]: `moat run` opens the session at the
//!   gate and records its start meanwhile, and the init builds the sandbox meanwhile; the
//!   caller's thread writes the admission and the confirmation to the init itself), enforces the
//!   wall-clock timeout and [`Stop`] by polling a pidfd and an eventfd, then sending `SIGTERM`
//!   (relayed by the init to the agent) and, after the grace period ([`Limits::stop_grace`]) or a
//!   second stop, `SIGKILL`; it reaps with `wait4` for resource usage, and removes the groups
//!   (killing any straggler). Host facts ([`probe`]) are probed once per process and cached; the
//!   cgroups ([`probe_cgroups`]) only when a session asks for a limit.
//! - [`init_main`] is the **sandbox side**, two processes deep:
//!   1. the *init*, pid 1 of a new pid namespace from its first instruction: the host's
//!      `clone3` puts it in new user and pid namespaces, whether it forks the caller
//!      ([`InitProcess::fork`]) or executes `init_program` (the host's uid/gid mapped to 0
//!      inside, `setgroups` denied, before the `execve`; a forked init maps them itself). It
//!      enters mount, net, ipc and uts namespaces and begins the new root on a tmpfs with what
//!      every session's has (`/usr` and the merged-usr links, the read-only `/etc` entries,
//!      tmpfs `/tmp`, a minimal `/dev`), before its request when it was forked early; once the
//!      request has come (the host has placed it in the session's cgroups) it enters the
//!      cgroup namespace and completes the root before the session is admitted: a minimal
//!      `/etc` (generated passwd, group, hosts, nsswitch.conf beside the read-only CA roots,
//!      time zone, Debian alternatives links and linker cache; no resolv.conf, no shadow, no
//!      `/etc/ssl/private`), the workspace read-write at its host path, `ro_paths`, tmpfs
//!      `$HOME`, a fresh `/proc`, the session's gate directory ([`Spec::gate_dir`]) read-only
//!      at `/run/moat`; every mount nosuid, the root and every bind but the writable ones
//!      read-only, everything but device nodes nodev; then `pivot_root` and detach the old
//!      root, and brings `lo` up. It then confines itself with what the agent inherits: secure
//!      bits locked, an empty capability bounding set, seccomp (see [`SECCOMP_DENIED`]).
//!      Admitted (end of file instead: it exits, no agent), it checks that the gate bound the
//!      session's socket in that directory ([`GATE_SOCKET_INSIDE`]) and writes the
//!      admission's home files. It binds `127.0.0.1:<gate_port>`, spawns the agent, starts the
//!      bridge threads (TCP ↔ the gate socket), reaps orphans and exits with the agent's
//!      status, which tears the whole pid namespace down. As pid 1 it gets no signal it has
//!      no handler for: the terminal's `SIGINT` and `SIGQUIT` are the agent's, and the host's
//!      `SIGTERM` is relayed to the agent;
//!   2. the *agent*: clean environment, workspace as cwd, `RLIMIT_CORE=0`, empty ambient
//!      set, `no_new_privs`, Landlock (filesystem allow-list; TCP connect only to the gate
//!      port, no TCP bind; abstract unix sockets and signals scoped), all capabilities
//!      dropped, exec; with the init's seccomp filter, secure bits and empty bounding set.
//!
//! Limits: memory (`memory.max` + `memory.swap.max=0`, or v1 `memory.limit_in_bytes` +
//! `memory.memsw.limit_in_bytes`), pids (`pids.max`, the init process added) and cpu
//! (`cpu.max`, or v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`), each through cgroup v2 where the
//! controller is delegated to child groups, else a writable v1 hierarchy (hybrid hosts), under
//! the caller's own cgroup, so a parent's limits still apply.
//!
//! A property the host cannot give makes [`run`] refuse with [`SandboxError::Unavailable`]
//! unless the spec waives it in [`Spec::allow_missing`]; [`Outcome::enforced`] names what held.
//!
//! # Backends
//!
//! [`run_backend`] takes a [`Backend`]: [`Backend::Embedded`] is [`run_with_stop`];
//! [`Backend::Podman`] runs the same [`Spec`] under the same contract with one `podman run` per
//! session — `--network none`, `--cap-drop ALL`, `no-new-privileges`, a read-only root derived
//! from the host (or a local image), the same gate-socket bridge, Landlock and seccomp applied by
//! the same init (bound into the container and started as its entrypoint, in a mode that skips
//! the namespaces and the new root), limits through podman's cgroups, the timeout and [`Stop`]
//! through `podman kill` (`SIGTERM`, which the init relays to the agent, then `SIGKILL`). This
//! host's podman workarounds (hybrid cgroups, `RLIMIT_NOFILE`) are detected and applied
//! automatically; see [`podman`] and [`probe_podman`].
//!
//! Unsafe code is denied crate-wide and allowed per block, each with a `// SAFETY:` comment: the
//! `clone3` (or `clone`) into new namespaces (and the system calls of an executed init's child
//! before its `execve`), `wait4`, `getrusage`, the `lo` ioctl, the signal handlers and masks
//! (`signals`, and the init's `SIGTERM` relay), adopting and placing the inherited descriptors,
//! wiping a forked init's environment and arguments, the children that share this process's
//! memory (`vm_child`: the agent's process until its `execve`, `moat run`'s keeper), the
//! `pre_exec` hooks (podman's private mount namespace, an executed init's pipes), and the `moat`
//! binary's entry point (`start`: its relocated data faulted in before the C library starts).

mod agent;
mod alloc;
mod bridge;
mod cgroup;
mod confine;
mod door;
mod error;
mod forked;
mod host;
mod init;
mod keeper;
pub mod podman;
mod probe;
mod protocol;
mod rootfs;
mod seccomp;
mod signals;
mod spec;
mod start;
mod terminal;
mod vm_child;

pub use alloc::Allocator;
pub use confine::SECCOMP_DENIED;
pub use door::{Door, Entry, door};
pub use error::SandboxError;
pub use forked::InitProcess;
pub use host::{
    Init, OnExit, Requested, Stop, Teardown, cgroup_support, host_report, request, run,
    run_admitted, run_with_stop,
};
pub use init::{exit_now, init_main};
pub use keeper::{AddressSpaceKeeper, keep_address_space};
pub use podman::{Backend, PodmanReport, probe_podman, run_backend, run_backend_admitted};
pub use probe::{CgroupSupport, CgroupVersion, HostReport, Placement, probe, probe_cgroups};
pub use protocol::{GATE_SOCKET_INSIDE, INIT_SUBCOMMAND, REPORT_FD, SPEC_FD};
pub use signals::stop_on_signals;
pub use spec::{
    Admission, DEFAULT_STOP_GRACE, ExitStatus, Limits, Outcome, Property, ResourceUsage, Spec,
};
pub use terminal::TerminalModes;
