//! Starting the agent from the init: its program found on its `PATH`, then a process of its
//! own, confined, that executes it.
//!
//! The agent's process is a `clone` with `CLONE_VM` and `CLONE_VFORK` on a stack of its own,
//! as the C library's `posix_spawn` makes one, not a `fork`: the init is a copy of `moat run`
//! (a large process), whose `fork` took 0.25 ms of CPU per session here (BENCHMARKS.md, sandbox
//! notes of 2026-12-02). Before its `execve` it takes the agent's confinement
//! ([`AgentConfinement::apply_in_agent`]: Landlock, `no_new_privs`, no capabilities, each a
//! process's own), so pid 1 needs no thread of its own to hold it, as it did with
//! `posix_spawn`: starting that thread took 0.17 ms of the agent's path (median of 150 traced
//! sessions, BENCHMARKS.md, sandbox notes of 2026-12-03), and `posix_spawn`'s child read and
//! reset all 64 signals (128 `rt_sigaction` calls) where this one resets the few this process
//! handles.
//!
//! [`AgentConfinement::apply_in_agent`]: crate::confine::AgentConfinement::apply_in_agent

use std::ffi::{CString, OsStr, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{Access, access};
use rustix::process::Pid;

use crate::confine::{AgentConfinement, ConfinementFailure};
use crate::vm_child::{ChildStack, clone_sharing_memory, set_signal_mask};

/// The `PATH` the C library's `execvp` searches when the environment has none.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The agent's command, checked and encoded for its `execve`.
pub(crate) struct AgentCommand {
    /// The file to execute: `command[0]` as given when it names a path, else where the
    /// environment's `PATH` finds it.
    program: CString,
    /// `command`, with `argv[0]` as the caller wrote it (as `execvp` leaves it).
    argv: Vec<CString>,
    /// `NAME=value` for each variable.
    envp: Vec<CString>,
    /// The working directory, entered in the child before the `execve`.
    cwd: CString,
    /// Signals the agent's process puts back to their default action ([`signals_to_default`]),
    /// read when the command is made: before the confirmation, off the agent's path.
    to_default: [bool; SIGNALS + 1],
}

impl AgentCommand {
    /// Finds `command[0]` as `execvp` would with `env`'s `PATH` (relative entries are taken
    /// from `cwd`): the error is the one `execvp` would end with (`ENOENT`, or `EACCES` when a
    /// match cannot be executed). A NUL byte inside an argument is `EINVAL`.
    pub(crate) fn new(
        command: &[String],
        env: &[(String, String)],
        cwd: &Path,
    ) -> io::Result<Self> {
        let name = command
            .first()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let path = env
            .iter()
            .rev()
            .find(|(variable, _)| variable == "PATH")
            .map_or(DEFAULT_PATH, |(_, value)| value.as_str());
        let program = find_program(name, path, cwd)?;
        let text = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
        };
        Ok(Self {
            program: text(program.as_os_str().as_bytes())?,
            argv: command
                .iter()
                .map(|argument| text(argument.as_bytes()))
                .collect::<io::Result<_>>()?,
            envp: env
                .iter()
                .map(|(name, value)| text(format!("{name}={value}").as_bytes()))
                .collect::<io::Result<_>>()?,
            cwd: text(cwd.as_os_str().as_bytes())?,
            to_default: signals_to_default(),
        })
    }

    /// Starts the agent in a process of its own, confined by `confinement`
    /// ([`AgentConfinement::apply_in_agent`]): its standard input is `stdin` (else this
    /// process's), its standard output and error are this process's, its signal mask is empty,
    /// and every signal this process handled when the command was made ([`AgentCommand::new`]:
    /// install no handler between the two), and `SIGPIPE` (Rust ignores it here), is back to its
    /// default action. Every other descriptor of this process is close-on-exec. Returns once
    /// the agent has executed. The outer error says which step of the confinement failed
    /// (nothing ran); the inner one is the `execve`'s or the working directory's.
    ///
    /// A file the kernel cannot execute (`ENOEXEC`: no `#!` line) is run by `/bin/sh`, as
    /// `execvp` does: `/bin/sh FILE ARGUMENTS…`.
    ///
    /// Call it while this process's other threads, if any, are blocked: the agent's process
    /// shares this one's memory until its `execve`, and runs Rust code (the confinement)
    /// meanwhile, which allocates nothing but must find the memory as this thread left it.
    pub(crate) fn spawn(
        &self,
        confinement: &AgentConfinement,
        stdin: Option<BorrowedFd<'_>>,
    ) -> Result<io::Result<Pid>, ConfinementFailure> {
        let argv = null_terminated(&self.argv);
        let mut shell_argv = vec![c"/bin/sh".to_owned(), self.program.clone()];
        shell_argv.extend(self.argv.iter().skip(1).cloned());
        let shell_argv = null_terminated(&shell_argv);
        let envp = null_terminated(&self.envp);
        let mut launch = Launch {
            confinement,
            stdin: stdin.map_or(-1, |fd| fd.as_raw_fd()),
            cwd: self.cwd.as_ptr(),
            program: self.program.as_ptr(),
            argv: argv.as_ptr(),
            shell_argv: shell_argv.as_ptr(),
            envp: envp.as_ptr(),
            to_default: self.to_default,
            failure: None,
            error: 0,
        };
        let stack = match ChildStack::new(STACK) {
            Ok(stack) => stack,
            Err(error) => return Ok(Err(error)),
        };
        #[allow(unsafe_code)]
        // SAFETY: `launch`, what it points at and `stack` live in this frame until the clone
        // returns, which with CLONE_VFORK is once the child has executed or exited: the child
        // uses them only until then, writes only `launch.failure`, `launch.error` and its own
        // stack, and this thread is suspended meanwhile. The child puts every signal this
        // process handles back to its default before it unblocks them ([`agent_process`]).
        let cloned = unsafe {
            clone_sharing_memory(
                agent_process,
                &stack,
                libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut launch).cast::<c_void>(),
            )
        };
        drop(stack);
        let child = match cloned {
            Ok(child) => child,
            Err(error) => return Ok(Err(error)),
        };
        let pid = Pid::from_raw(child).ok_or_else(|| io::Error::other("clone gave no pid"));
        #[allow(unsafe_code)]
        // SAFETY: the child has executed or exited: nothing writes `launch` any more.
        let (failure, error) = unsafe {
            (
                std::ptr::read_volatile(&raw const launch.failure),
                std::ptr::read_volatile(&raw const launch.error),
            )
        };
        let not_executed = match (failure, error) {
            (None, 0) => return Ok(pid),
            (Some(failure), _) => Err(failure),
            (None, error) => Ok(Err(io::Error::from_raw_os_error(error))),
        };
        // It exited without executing: reap it here, as posix_spawn does.
        if let Ok(pid) = pid {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
        not_executed
    }
}

/// What the agent's process reads before its `execve` ([`agent_process`]), laid out by
/// [`AgentCommand::spawn`]: the child allocates nothing, and writes only `failure` and `error`.
#[repr(C)]
struct Launch<'a> {
    confinement: &'a AgentConfinement,
    /// The agent's standard input, or -1 to keep this process's.
    stdin: libc::c_int,
    cwd: *const libc::c_char,
    program: *const libc::c_char,
    argv: *const *mut libc::c_char,
    /// `/bin/sh PROGRAM ARGUMENTS…`, for a program the kernel cannot execute.
    shell_argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
    /// Signals the child puts back to their default action: `to_default[n]` for signal `n`.
    to_default: [bool; SIGNALS + 1],
    /// Written by the child when its confinement failed (it then exits without executing).
    failure: Option<ConfinementFailure>,
    /// Written by the child when it exits without executing for another reason: the error.
    error: libc::c_int,
}

/// The agent's process's stack until its `execve`: the confinement and a handful of system
/// calls.
const STACK: usize = 64 * 1024;

/// Signals on Linux: 1 to 64.
const SIGNALS: usize = 64;

/// The kernel's `struct sigaction`, as `rt_sigaction` takes it (x86-64 and aarch64).
#[derive(Clone, Copy)]
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

static DEFAULT_ACTION: KernelSigaction = KernelSigaction {
    handler: libc::SIG_DFL,
    flags: 0,
    restorer: 0,
    mask: 0,
};

/// Which signals the agent's process must put back to their default action before it
/// unblocks them: those this process handles (their handlers would run in the child, on this
/// process's memory; an `execve` would reset them anyway) and `SIGPIPE`, which Rust ignores and
/// the agent expects at its default. Others this process ignores stay ignored, as they would
/// across a plain `fork` and `execve`.
fn signals_to_default() -> [bool; SIGNALS + 1] {
    let mut to_default = [false; SIGNALS + 1];
    for (signal, slot) in to_default.iter_mut().enumerate().skip(1) {
        let mut current = DEFAULT_ACTION;
        #[allow(unsafe_code)]
        // SAFETY: with a null new action, rt_sigaction only writes the current one into
        // `current`, a live value of the kernel's layout; 8 is the kernel's sigset size.
        let read = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                std::ptr::null::<KernelSigaction>(),
                &raw mut current,
                8,
            )
        };
        *slot = read == 0
            && match current.handler {
                libc::SIG_DFL => false,
                libc::SIG_IGN => signal == libc::SIGPIPE as usize,
                _ => true,
            };
    }
    to_default
}

/// The agent's process until its `execve` (a `clone` with `CLONE_VM` and `CLONE_VFORK`: this
/// process's memory, on a stack of its own, the thread that made it suspended meanwhile): it
/// puts back the signals [`Launch`] names, takes the agent's confinement, its standard input
/// and working directory, unblocks every signal and executes the agent. `errno` is the
/// suspended thread's, which nothing reads meanwhile.
extern "C" fn agent_process(argument: *mut c_void) -> libc::c_int {
    let launch = argument.cast::<Launch<'_>>();
    #[allow(unsafe_code)]
    // SAFETY: `launch` points at the parent's Launch, alive until this process executes or
    // exits ([`AgentCommand::spawn`]); its pointers are NUL-terminated strings and
    // null-terminated arrays of them. The calls below act on this process alone; `_exit` runs
    // no handler and flushes nothing.
    unsafe {
        let errno = || *libc::__errno_location();
        let stop = |error: libc::c_int| -> ! {
            std::ptr::write_volatile(&raw mut (*launch).error, error.max(1));
            libc::_exit(127)
        };
        for signal in 1..=SIGNALS {
            if (*launch).to_default[signal] {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    &raw const DEFAULT_ACTION,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8,
                );
            }
        }
        if let Err(failure) = (*launch).confinement.apply_in_agent() {
            std::ptr::write_volatile(&raw mut (*launch).failure, Some(failure));
            libc::_exit(127)
        }
        if (*launch).stdin >= 0 && libc::dup2((*launch).stdin, 0) < 0 {
            stop(errno());
        }
        if libc::chdir((*launch).cwd) != 0 {
            stop(errno());
        }
        let none = 0u64;
        set_signal_mask(&raw const none, std::ptr::null_mut());
        libc::execve(
            (*launch).program,
            (*launch).argv.cast(),
            (*launch).envp.cast(),
        );
        if errno() == libc::ENOEXEC {
            libc::execve(
                c"/bin/sh".as_ptr(),
                (*launch).shell_argv.cast(),
                (*launch).envp.cast(),
            );
        }
        stop(errno())
    }
}

/// `strings` as the null-terminated array of pointers `execve` takes.
fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|string| string.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Where `execvp` would find `name` on `path`: `name` itself when it holds a `/`; else the
/// first entry (an empty one is the working directory, `cwd`) that has an executable regular
/// file of that name. `EACCES` when only files that cannot be executed matched, else `ENOENT`.
fn find_program(name: &str, path: &str, cwd: &Path) -> io::Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    if name.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    let mut denied = false;
    for directory in path.split(':') {
        let directory = if directory.is_empty() {
            Path::new(".")
        } else {
            Path::new(directory)
        };
        let candidate = cwd.join(directory).join(OsStr::new(name));
        let Ok(metadata) = candidate.metadata() else {
            continue;
        };
        if metadata.is_file() && access(&candidate, Access::EXEC_OK).is_ok() {
            return Ok(candidate);
        }
        denied = true;
    }
    Err(io::Error::from_raw_os_error(if denied {
        libc::EACCES
    } else {
        libc::ENOENT
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_on_the_path_and_a_path_is_taken_as_given() {
        let cwd = Path::new("/");
        let found = find_program("sh", "/nonexistent:/usr/bin:/bin", cwd).expect("sh");
        assert!(found.ends_with("sh") && found.is_absolute(), "{found:?}");
        assert_eq!(
            find_program("./x", "/usr/bin", cwd).expect("path"),
            PathBuf::from("./x")
        );
    }

    #[test]
    fn what_cannot_be_found_or_executed_fails_as_execvp_does() {
        let cwd = Path::new("/");
        let missing = find_program("no-such-program-moat", "/usr/bin:/bin", cwd).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        // A directory of that name matches, and cannot be executed.
        let directory = find_program("bin", "/usr:/", cwd).unwrap_err();
        assert_eq!(directory.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn an_empty_path_entry_is_the_working_directory() {
        let dir = std::env::temp_dir().join(format!("moat-agent-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let tool = dir.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("tool");
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let found = find_program("tool", "/nonexistent:", &dir).expect("found");
        assert_eq!(found, dir.join(".").join("tool"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_spawned_agent_gets_its_arguments_environment_directory_and_sigpipe() {
        let dir = std::env::temp_dir().join(format!("moat-agent-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let command = [
            "sh".to_owned(),
            "-c".to_owned(),
            concat!(
                "printf '%s %s %s' \"$0\" \"$GREETING\" \"$(pwd)\" > out; ",
                "grep SigIgn /proc/self/status > ignored"
            )
            .to_owned(),
        ];
        let env = [
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("GREETING".to_owned(), "hello".to_owned()),
        ];
        let agent = AgentCommand::new(&command, &env, &dir).expect("command");
        let pid = agent
            .spawn(&AgentConfinement::without_landlock(), None)
            .expect("confined")
            .expect("spawn");
        let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            .expect("wait")
            .expect("status");
        assert_eq!(status.1.exit_status(), Some(0));
        let out = std::fs::read_to_string(dir.join("out")).expect("out");
        assert_eq!(out, format!("sh hello {}", dir.display()));
        // This process ignores SIGPIPE (Rust does); the agent gets it at its default action.
        let ignored = std::fs::read_to_string(dir.join("ignored")).expect("ignored");
        let mask =
            u64::from_str_radix(ignored.trim_start_matches("SigIgn:").trim(), 16).expect("mask");
        assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{ignored}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
