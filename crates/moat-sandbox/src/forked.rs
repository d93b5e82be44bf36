//! The init process of a session ([`InitProcess`]): executed as `PROGRAM __sandbox-init`, or
//! forked at the caller's first line, without a second `execve` of the caller's binary; either
//! way with the host's two pipes placed at [`SPEC_FD`] and [`REPORT_FD`] (podman is started the
//! same way and passes them on to the init in its container).
//!
//! Executing the `moat` binary again costs its dynamic linking, relocation and allocator
//! start-up on every session (about 1.3 ms of CPU here), on the path between the session's
//! admission and its agent. A fork of a process that has only just started costs a fraction of
//! that, and the child is ready long before the session is admitted. It is the same init: it
//! places the two pipes at [`SPEC_FD`] and [`REPORT_FD`] and proceeds as when it is executed,
//! except that it enters the session's namespaces (all but the cgroup namespace, and the
//! network namespace, which a thread of its own makes meanwhile) while it waits for its request,
//! since they are the same for every embedded session
//! ([`forked_init_main`]).
//!
//! Either way the init is pid 1 of the sandbox from its first instruction: the fork, and the
//! fork before the `execve`, is a `clone3` (or a `clone`, where `clone3` is refused) into a
//! new user namespace and a new pid namespace ([`clone_into_new_pid_namespace`]), so that one
//! process, not two, is the sandbox's init (an init that entered the pid namespace itself would
//! have to fork its pid 1): one process less per session to copy, schedule, reap and tear down
//! (BENCHMARKS.md, sandbox notes of 2026-12-02).
//!
//! The child starts on another CPU than the one its parent goes on with, when there is one
//! ([`Placement`]), and takes back every CPU it inherited as soon as its request arrives.
//!
//! What the child must not carry into the sandbox is whatever its parent had in memory, so the
//! fork happens before the parent has read anything but its argv (no configuration, no
//! secrets), and the child zeroes its copy of the parent's environment and arguments (the
//! kernel's `env_start..env_end` and `arg_start..arg_end`) before it does anything else.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command};

use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open};
use rustix::thread::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};

use crate::error::SandboxError;
use crate::host::wait_with_usage;
use crate::init::{forked_init_main, host_ids, id_maps};
use crate::protocol::{INIT_SUBCOMMAND, REPORT_FD, SPEC_FD};

/// A sandbox init, blocked on its request until [`request`] sends one. Dropped unused, it reads
/// end of file, exits and is reaped.
///
/// [`request`]: crate::request
#[derive(Debug)]
pub struct InitProcess {
    pub(crate) pid: Pid,
    pub(crate) pidfd: OwnedFd,
    /// The host's ends: the request goes down the first, reports come up the second. Taken
    /// when the request is sent.
    pub(crate) pipes: Option<(OwnedFd, OwnedFd)>,
}

impl InitProcess {
    /// Forks the init of a session not yet described. Call it first thing in `main`, before
    /// any thread starts and before the process reads its configuration, the environment or
    /// any secret: the child starts as a copy of this process, as pid 1 of a new pid
    /// namespace. Refuses (and forks nothing) when the process already has more than one
    /// thread, or when the host refuses the new namespaces (the caller then executes the init,
    /// which fails for the same reason, and [`run`](crate::run) says what is missing and how to
    /// fix it).
    pub fn fork() -> std::io::Result<InitProcess> {
        if threads()? != 1 {
            return Err(std::io::Error::other(
                "the sandbox init can only be forked while the process is single-threaded",
            ));
        }
        // Read now: in the child, in a user namespace that maps nobody yet, they read 65534.
        let host_ids = host_ids();
        let (spec_read, spec_write) = pipe_with(PipeFlags::CLOEXEC)?;
        let (report_read, report_write) = pipe_with(PipeFlags::CLOEXEC)?;
        let placement = sched_getaffinity(None).ok().and_then(Placement::of);
        // This process, for the child to see whether it is still there (see `die_with_parent`).
        let parent = pidfd_open(rustix::process::getpid(), PidfdFlags::empty()).ok();
        let Cloned::Parent { pid, pidfd } = clone_into_new_pid_namespace(false)? else {
            die_with_parent(parent);
            drop((spec_write, report_read));
            // Whichever of the two runs first moves the child (see `Placement`).
            if let Some(placement) = &placement {
                let _ = sched_setaffinity(None, &placement.init);
            }
            become_init(spec_read, report_write, host_ids, placement);
        };
        drop((spec_read, report_write, parent));
        if let Some(placement) = &placement {
            let _ = sched_setaffinity(Some(pid), &placement.init);
        }
        Ok(InitProcess {
            pid,
            pidfd,
            pipes: Some((spec_write, report_read)),
        })
    }

    /// Executes `program __sandbox-init` as pid 1 of new user and pid namespaces, as
    /// [`InitProcess::fork`] forks it: with an empty environment, the two pipes at [`SPEC_FD`]
    /// and [`REPORT_FD`], and the host's uid and gid mapped to root (mapped before the
    /// `execve`, which keeps the namespace's capabilities only for its root). The caller may
    /// be multi-threaded: between the `clone3` and the `execve` the child only makes system
    /// calls, on what was prepared here ([`ExecInit`]).
    pub(crate) fn spawn(program: &Path) -> Result<InitProcess, SandboxError> {
        let exec = ExecInit::new(program).map_err(SandboxError::Spawn)?;
        let spawn_error = |error: rustix::io::Errno| SandboxError::Spawn(error.into());
        let (spec_read, spec_write) = pipe_with(PipeFlags::CLOEXEC).map_err(spawn_error)?;
        let (report_read, report_write) = pipe_with(PipeFlags::CLOEXEC).map_err(spawn_error)?;
        let (failure_read, failure_write) = pipe_with(PipeFlags::CLOEXEC).map_err(spawn_error)?;
        let staged = (stage(&spec_read)?, stage(&report_write)?);
        drop((spec_read, report_write));
        let Cloned::Parent { pid, pidfd } =
            clone_into_new_pid_namespace(true).map_err(SandboxError::Spawn)?
        else {
            exec.run(&staged, &failure_write)
        };
        drop((staged, failure_write));
        if let Some((step, errno)) = exec_failure(&failure_read) {
            let _ = wait_with_usage(pid);
            let error = std::io::Error::from_raw_os_error(errno);
            return Err(SandboxError::Spawn(std::io::Error::new(
                error.kind(),
                format!("{}: {error}", ExecInit::step_name(step)),
            )));
        }
        Ok(InitProcess {
            pid,
            pidfd,
            pipes: Some((spec_write, report_read)),
        })
    }

    /// Spawns `command` with the two pipes at [`SPEC_FD`] and [`REPORT_FD`] (podman passes
    /// them on to the init in its container), and opens a pidfd on it. The [`Child`] is for
    /// its piped standard streams; the process is reaped through the [`InitProcess`].
    pub(crate) fn start(command: &mut Command) -> Result<(InitProcess, Child), SandboxError> {
        let SessionPipes {
            spec_write,
            report_read,
            staged,
        } = SessionPipes::attach(command)?;
        let child = command.spawn().map_err(SandboxError::Spawn)?;
        drop(staged);
        let pid = Pid::from_raw(child.id() as i32)
            .ok_or_else(|| SandboxError::Spawn(std::io::Error::other("no pid")))?;
        let init = pidfd_open(pid, PidfdFlags::empty()).map(|pidfd| InitProcess {
            pid,
            pidfd,
            pipes: Some((spec_write, report_read)),
        });
        match init {
            Ok(init) => Ok((init, child)),
            Err(error) => {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
                let _ = wait_with_usage(pid);
                Err(SandboxError::Spawn(error.into()))
            }
        }
    }

    /// The host's ends of the two pipes (request, reports); from then on the caller reaps the
    /// process. Taken once.
    pub(crate) fn take_pipes(&mut self) -> Result<(OwnedFd, OwnedFd), SandboxError> {
        self.pipes.take().ok_or_else(|| {
            SandboxError::Spawn(std::io::Error::other("the sandbox init was already used"))
        })
    }

    /// The init's process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get().unsigned_abs()
    }
}

impl Drop for InitProcess {
    fn drop(&mut self) {
        // Unused, it reads end of file and exits 125; used, `request` took its pipes, and the
        // `Requested` it made reaps it, run or dropped.
        if self.pipes.take().is_some() {
            let _ = wait_with_usage(self.pid);
        }
    }
}

/// What the child of [`InitProcess::spawn`] needs between its `clone3` and its `execve`,
/// prepared beforehand: a child of a multi-threaded process may not allocate (another thread
/// may have held the allocator's lock at the clone), only make system calls.
struct ExecInit {
    program: CString,
    argument: CString,
    /// What maps the host's ids to root, in order ([`id_maps`]).
    maps: [(&'static CStr, Vec<u8>); 3],
}

impl ExecInit {
    fn new(program: &Path) -> std::io::Result<ExecInit> {
        Ok(ExecInit {
            program: CString::new(program.as_os_str().as_bytes())?,
            argument: CString::new(INIT_SUBCOMMAND)?,
            maps: id_maps(host_ids()),
        })
    }

    /// What failed, by the step number [`ExecInit::run`] reports.
    fn step_name(step: u32) -> &'static str {
        match step {
            0 => "could not place the sandbox init's pipes",
            1..=3 => "could not map the host's user to root in the sandbox's user namespace",
            _ => "could not execute the sandbox init",
        }
    }

    /// In the child: die with the spawning thread, place `staged` (the request and report
    /// pipes) at [`SPEC_FD`] and [`REPORT_FD`], map the host's ids to root, put back the signal
    /// mask and `SIGPIPE`'s default disposition (as `Command` does), and `execve` with an empty
    /// environment. On a failure, writes its step and errno to `failure` and exits 127.
    fn run(&self, staged: &(OwnedFd, OwnedFd), failure: &OwnedFd) -> ! {
        let fail = |step: u32| -> ! {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            let mut report = [0u8; 8];
            report[..4].copy_from_slice(&step.to_ne_bytes());
            report[4..].copy_from_slice(&errno.to_ne_bytes());
            let _ = rustix::io::write(failure, &report);
            crate::init::exit_now(127)
        };
        #[allow(unsafe_code)]
        // SAFETY: only system calls (async-signal-safe, as a child of a multi-threaded process
        // requires), on live descriptors and on buffers prepared before the clone: the
        // signal set is a local initialized by sigemptyset, the strings are NUL-terminated
        // CStrings and byte vectors owned by `self`, and the argv and envp arrays are
        // null-terminated locals that outlive the execve (which does not return on success).
        unsafe {
            // The init dies with the thread that spawns it (see `die_with_parent`), which
            // waits for this `execve` before it sends the init anything.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            for (fd, target) in [(&staged.0, SPEC_FD), (&staged.1, REPORT_FD)] {
                if libc::dup2(fd.as_raw_fd(), target) < 0 {
                    fail(0)
                }
            }
            for (step, (path, text)) in (1..).zip(&self.maps) {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, text.as_ptr().cast(), text.len()) < 0 {
                    fail(step)
                }
                libc::close(fd);
            }
            let argv = [
                self.program.as_ptr(),
                self.argument.as_ptr(),
                std::ptr::null(),
            ];
            let envp = [std::ptr::null::<libc::c_char>()];
            libc::execve(self.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        }
        fail(4)
    }
}

/// What the child of [`InitProcess::spawn`] wrote on `failure`: end of file when its `execve`
/// closed its copy (close-on-exec), else the step that failed and its errno.
fn exec_failure(failure: &OwnedFd) -> Option<(u32, i32)> {
    let mut report = [0u8; 8];
    let mut read = 0;
    while read < report.len() {
        match rustix::io::read(failure, &mut report[read..]) {
            Ok(0) => return None,
            Ok(n) => read += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    let (step, errno) = report.split_at(4);
    Some((
        u32::from_ne_bytes(step.try_into().ok()?),
        i32::from_ne_bytes(errno.try_into().ok()?),
    ))
}

/// Descriptors are moved at or above this number before they are placed at 3 and 4.
const FD_STAGING_MIN: i32 = 10;

/// Duplicates a descriptor at or above [`FD_STAGING_MIN`], close-on-exec.
pub(crate) fn stage(fd: &OwnedFd) -> Result<OwnedFd, SandboxError> {
    rustix::io::fcntl_dupfd_cloexec(fd, FD_STAGING_MIN)
        .map_err(|error| SandboxError::Spawn(error.into()))
}

/// The two pipes between the host and an executed init: frames go down [`SPEC_FD`], reports come
/// up [`REPORT_FD`]. [`SessionPipes::attach`] hands the child's ends to a command at those
/// descriptors; drop `staged` once the child is spawned.
pub(crate) struct SessionPipes {
    /// The host writes the request and admission frames here, then closes it.
    pub(crate) spec_write: OwnedFd,
    /// The host reads the init's reports here.
    pub(crate) report_read: OwnedFd,
    /// The child's ends, kept open until the spawn has copied them.
    pub(crate) staged: (OwnedFd, OwnedFd),
}

impl SessionPipes {
    pub(crate) fn attach(command: &mut Command) -> Result<SessionPipes, SandboxError> {
        let spawn_error = |error: rustix::io::Errno| SandboxError::Spawn(error.into());
        let (spec_read, spec_write) = pipe_with(PipeFlags::CLOEXEC).map_err(spawn_error)?;
        let (report_read, report_write) = pipe_with(PipeFlags::CLOEXEC).map_err(spawn_error)?;
        let staged = (stage(&spec_read)?, stage(&report_write)?);
        let (spec_raw, report_raw) = (staged.0.as_raw_fd(), staged.1.as_raw_fd());
        #[allow(unsafe_code)]
        // SAFETY: the hook runs in the forked child before exec and only calls dup2, which is
        // async-signal-safe; the source descriptors are open (owned by `staged`, which the
        // caller keeps until the spawn returned) and at or above FD_STAGING_MIN, so placing
        // them at 3 and 4 cannot clobber each other. dup2 clears close-on-exec on the copies,
        // which is what hands them to the child (podman passes them on with --preserve-fds 2).
        unsafe {
            command.pre_exec(move || {
                for (source, target) in [(spec_raw, SPEC_FD), (report_raw, REPORT_FD)] {
                    if libc::dup2(source, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(SessionPipes {
            spec_write,
            report_read,
            staged,
        })
    }
}

/// Where a just forked init runs until its request arrives: on the CPUs of `inherited` (its
/// parent's) other than the one the parent runs on ([`Placement::init`]), when there are any;
/// it takes them all back when its request arrives (the request is only sent after this, so it
/// cannot be undone early). Either side of the fork applies it, whichever runs first: the child
/// as its first step, the parent as soon as the fork returns. The init's network namespace
/// thread goes to the parent's CPU meanwhile ([`Placement::parent`]), off the init's.
///
/// Why: the init enters its namespaces and builds the sandbox while this process parses its
/// configuration and opens the session; the two halves only save time when they run side by
/// side. Left to the scheduler here, the child was often queued behind its parent on the
/// parent's CPU while the other CPU idled (up to 0.94 ms in a trace of 20 sessions; this
/// host's kernel is booted with `sched_vcpu_pack=15`, which by its name packs tasks onto few
/// virtual CPUs), and `moat run -- true` took 0.48 to 0.66 ms less with the parent moving the
/// child (BENCHMARKS.md, sandbox notes of 2026-12-01). Just as often the child preempts its
/// parent at once on the parent's CPU, and the parent, which would move it, waited for the
/// child to block or for the other CPU to take it over: 0.86 to 2.25 ms in 5 of 8 sessions of
/// a trace (sandbox notes of 2026-12-02): the child moves itself now (which the whole session's
/// time did not show beyond the noise: 7.55 against 7.47 ms in 250 spaced rounds). A hint, not
/// a rule: without another CPU, or if the call fails, the child stays where the kernel put it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    /// Every CPU the parent may use, which the init takes back once its request arrives.
    pub(crate) inherited: CpuSet,
    /// Those the init starts on: all of them but the parent's.
    pub(crate) init: CpuSet,
    /// The parent's, as it forks.
    pub(crate) parent: CpuSet,
}

impl Placement {
    /// The placement of an init forked now by a process that may use `inherited`; `None`
    /// without another CPU than the one this process runs on.
    fn of(inherited: CpuSet) -> Option<Placement> {
        let cpu = sched_getcpu();
        let (mut init, mut parent) = (inherited, CpuSet::new());
        init.unset(cpu);
        parent.set(cpu);
        (init.count() > 0).then_some(Placement {
            inherited,
            init,
            parent,
        })
    }
}

/// Forks this process into a new user namespace and a new pid namespace, as `fork` would
/// otherwise: the child is pid 1 of its namespace (the sandbox needs no other init) and owns
/// it through the user namespace, where it is root once its user is mapped. A child that goes
/// on running Rust code ([`forked_init_main`]) needs a single-threaded parent; one that only
/// makes system calls until its `execve` ([`ExecInit::run`], `execs`) does not.
///
/// `clone3` as the C library's `fork` calls `clone`: no new stack (the child goes on from this
/// frame in its copy of the memory), `SIGCHLD` to the parent at its exit, and, unless the
/// child `execs`, its thread id written where the C library's thread control block keeps it
/// (the address the kernel was given at start-up with `set_tid_address`, read back with
/// `PR_GET_TID_ADDRESS`), so that the C library in the child knows its own thread. Fails,
/// forking nothing, where the host refuses either namespace (or `PR_GET_TID_ADDRESS`, which
/// needs a kernel built with checkpoint/restore).
fn clone_into_new_pid_namespace(execs: bool) -> std::io::Result<Cloned> {
    let mut tid_address: *mut libc::c_int = std::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer into the live local it is given.
    if !execs
        && (unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid_address) } != 0
            || tid_address.is_null())
    {
        return Err(std::io::Error::other(
            "the kernel does not say where this thread's id is kept (PR_GET_TID_ADDRESS)",
        ));
    }
    let mut pidfd: libc::c_int = -1;
    #[allow(unsafe_code)]
    // SAFETY: an all-zero clone_args is a valid value of this plain C struct (no stack, no
    // set_tid array, no cgroup).
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = (libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_PIDFD) as u64;
    if !execs {
        args.flags |= (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
        args.child_tid = tid_address as u64;
    }
    args.pidfd = &raw mut pidfd as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    #[allow(unsafe_code)]
    // SAFETY: a child that does not exec runs Rust code: the process is single-threaded then
    // (its caller checked), so the child starts with a consistent copy of every lock and
    // allocator state, as after `fork`; one that execs only makes system calls until then, as
    // after a multi-threaded process's `fork`. Without CLONE_VM and with no stack given, the
    // child runs on its own copy of this stack, returning from this call as from `fork`. `args`
    // and `pidfd` are live locals; `child_tid` is this thread's id word in the C library's
    // thread control block, where the kernel writes the child's id in the child's copy (and
    // which the C library's `fork` also has the kernel set).
    let child = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    // A seccomp filter may refuse clone3 with ENOSYS to make the C library fall back to clone
    // (Docker's default profile does, since it cannot inspect clone3's flags): so do we, with
    // the same flags and the same pointers (clone's CLONE_PIDFD writes to `parent_tid`).
    let child = if child < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)
    {
        #[allow(unsafe_code)]
        // SAFETY: as for clone3 above: the same flags, no new stack, the same live locals.
        unsafe {
            libc::syscall(
                libc::SYS_clone,
                args.flags | args.exit_signal,
                0usize,
                &raw mut pidfd,
                args.child_tid,
                0usize,
            )
        }
    } else {
        child
    };
    if child < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if child == 0 {
        return Ok(Cloned::Child);
    }
    #[allow(unsafe_code)]
    // SAFETY: CLONE_PIDFD made the kernel write a new descriptor into `pidfd`, owned by nothing
    // else in this process.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = Pid::from_raw(child as i32).ok_or_else(|| std::io::Error::other("clone3: no pid"))?;
    Ok(Cloned::Parent { pid, pidfd })
}

/// Which side of [`clone_into_new_pid_namespace`] this is.
enum Cloned {
    Child,
    Parent { pid: Pid, pidfd: OwnedFd },
}

/// The forked init's first step: it dies with `moat run`, as `bwrap --die-with-parent` does.
/// The kernel sends it `SIGKILL` when the thread that forked it exits (`moat run`'s main
/// thread: when `moat run` does, killed or not); pid 1 of the sandbox's pid namespace, it takes
/// every process of the sandbox with it. Without it, a `moat run` killed outright left its agent
/// running, with the workspace and no one to stop it or time it out. A `moat run` gone before
/// this call sends nothing: `parent` (its pidfd, opened before the fork) is readable then, and
/// the child exits. Without a pidfd (a kernel before 5.3), the request pipe's end tells: the
/// request, admission and confirmation all wait for the gate, which takes milliseconds.
fn die_with_parent(parent: Option<OwnedFd>) {
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err() {
        crate::init::exit_now(125);
    }
    if let Some(parent) = parent {
        let mut exited = [rustix::event::PollFd::new(
            &parent,
            rustix::event::PollFlags::IN,
        )];
        let now = crate::protocol::timespec(std::time::Duration::ZERO);
        if rustix::event::poll(&mut exited, Some(&now)) != Ok(0) {
            crate::init::exit_now(125);
        }
    }
}

/// The child: wipe what it holds of the parent, place the pipes, and run as the init
/// (`host_ids`: the host's uid and gid, to map to root; `placement`: where it runs until the
/// request arrives).
fn become_init(
    spec_read: OwnedFd,
    report_write: OwnedFd,
    host_ids: (u32, u32),
    placement: Option<Placement>,
) -> ! {
    scrub_environment_and_arguments();
    // Staged above every low descriptor first, so that placing one at 3 or 4 cannot close the
    // other (either may be 3 or 4 already).
    let (Ok(spec_staged), Ok(report_staged)) = (stage(&spec_read), stage(&report_write)) else {
        crate::init::exit_now(125)
    };
    drop((spec_read, report_write));
    for (source, target) in [(&spec_staged, SPEC_FD), (&report_staged, REPORT_FD)] {
        #[allow(unsafe_code)]
        // SAFETY: dup2 onto a fixed descriptor number: whatever was there is replaced, as the
        // exec'd init's pre_exec hook does; no owner in this process holds 3 or 4 any more.
        if unsafe { libc::dup2(source.as_raw_fd(), target) } < 0 {
            crate::init::exit_now(125);
        }
    }
    drop((spec_staged, report_staged));
    forked_init_main(host_ids, placement)
}

/// Zeroes this process's copy of the environment strings and of every argument after the
/// program name, and empties `environ`: nothing of the parent's environment (API keys among
/// it) or command line is left in the init's memory or its `/proc` files. Writes
/// [`INIT_SUBCOMMAND`] as the first argument when it fits, for `ps`.
fn scrub_environment_and_arguments() {
    #[allow(unsafe_code)]
    // SAFETY: single-threaded (a fresh fork of a single-threaded process); clearenv only resets
    // glibc's `environ` (the strings were never allocated by setenv this early).
    unsafe {
        libc::clearenv();
    }
    let Some(areas) = memory_areas() else {
        return;
    };
    let [arg_start, arg_end, env_start, env_end] = areas;
    if env_start < env_end {
        #[allow(unsafe_code)]
        // SAFETY: the kernel reports env_start..env_end as this process's environment block:
        // mapped, writable (the initial stack) and no longer referenced, since `environ` was
        // cleared above.
        unsafe {
            std::ptr::write_bytes(env_start as *mut u8, 0, env_end - env_start);
        }
    }
    if arg_start < arg_end {
        #[allow(unsafe_code)]
        // SAFETY: arg_start..arg_end is the argument block on the initial stack, mapped and
        // writable; the first string (the program name) is kept, and Rust's std only reads
        // argv through pointers into this block, which then read empty strings.
        let args =
            unsafe { std::slice::from_raw_parts_mut(arg_start as *mut u8, arg_end - arg_start) };
        let program_end = args
            .iter()
            .position(|&b| b == 0)
            .map_or(args.len(), |i| i + 1);
        let rest = &mut args[program_end..];
        rest.fill(0);
        let name = INIT_SUBCOMMAND.as_bytes();
        if rest.len() > name.len() {
            rest[..name.len()].copy_from_slice(name);
        }
    }
}

/// `arg_start`, `arg_end`, `env_start`, `env_end` from `/proc/self/stat` (fields 48 to 51).
fn memory_areas() -> Option<[usize; 4]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after
    // its closing parenthesis, which is field 3's predecessor.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    let field = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    Some([field(48)?, field(49)?, field(50)?, field(51)?])
}

/// The number of threads of this process: `/proc/self/task` has a link for each, besides `.`
/// and `..` (one `stat` instead of reading `/proc/self/status`, on `moat run`'s way to its
/// init's fork).
fn threads() -> std::io::Result<usize> {
    let links = rustix::fs::stat("/proc/self/task")?.st_nlink;
    usize::try_from(links)
        .ok()
        .and_then(|links| links.checked_sub(2))
        .ok_or_else(|| std::io::Error::other("/proc/self/task has too few links"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_areas_are_read_in_order() {
        let [arg_start, arg_end, env_start, env_end] = memory_areas().expect("areas");
        assert!(arg_start < arg_end && arg_end <= env_start && env_start < env_end);
    }

    #[test]
    fn a_second_thread_is_counted() {
        let (park, parked) = std::sync::mpsc::channel::<()>();
        let second = std::thread::spawn(move || parked.recv());
        let listed = || {
            std::fs::read_to_string("/proc/self/status")
                .expect("status")
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|count| count.trim().parse::<usize>().ok())
                .expect("a Threads line")
        };
        // Other tests of this binary may start or end threads meanwhile: compare with the
        // kernel's own count when it is the same just before and just after.
        let (before, counted, after) = (0..1000)
            .map(|_| (listed(), threads().expect("threads"), listed()))
            .find(|(before, _, after)| before == after)
            .expect("a moment without other threads starting or ending");
        assert!(counted >= 2);
        assert_eq!(
            counted, before,
            "{counted} threads counted, {before} to {after} listed"
        );
        drop(park);
        let _ = second.join();
    }
}
