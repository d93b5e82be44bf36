//! Starting the agent from pid 1 the way `posix_spawn` does, with one step of our own: a
//! `clone` with `CLONE_VM | CLONE_VFORK`, so that the child borrows pid 1's memory until its
//! `execve` instead of getting a copy of it, and pid 1 waits until the `execve` has happened.
//! From the agent's confinement to its `execve`'s return, copying pid 1 with a `fork`,
//! scheduling the copy and releasing it at the `execve` took 0.81 to 1.12 ms; this takes 0.32
//! to 0.43 ms (medians of timestamps in pid 1, batches of 60 sessions; BENCHMARKS.md).
//!
//! The step of our own is Landlock: the child enforces the agent's ruleset on itself just before
//! its `execve`, so that the agent has a Landlock domain of its own, outside of which pid 1
//! stays (Landlock's signal scope then keeps the agent from signalling pid 1). Everything else
//! of the agent's confinement pid 1 has applied to itself before the spawn, and the child
//! inherits it ([`AgentConfinement::apply`]).
//!
//! The child runs on pid 1's memory, on a stack of its own, while pid 1 is suspended: it calls
//! only system calls and the C library's thin wrappers of them (no allocation, no lock, nothing
//! that can panic), and writes nothing but its error number into the request it was given.
//!
//! [`AgentConfinement::apply`]: crate::confine::AgentConfinement::apply

use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use rustix::process::{Pid, WaitOptions};

/// Size of the child's stack: it runs one small function and the C library's wrappers.
const CHILD_STACK: usize = 64 * 1024;

/// Where the agent's command is searched when its environment has no `PATH` (the C library's
/// default, `confstr(_CS_PATH)`).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Starts `command` (searched on the `PATH` of `env` when it names no directory, as `execvp(3)`
/// does, and a file without a `#!` line run with `/bin/sh`) with exactly the environment `env`,
/// `stdin` as its standard input when given (else this process's), its other descriptors and
/// the current directory inherited, its own Landlock domain from `landlock` when given, no
/// signal blocked, and the signals this process handles (and `SIGPIPE`, which the Rust runtime
/// ignores) at their default action; ignored ones (a `nohup`'s `SIGHUP`) stay ignored.
///
/// Errors are those of the `execve` (`ENOENT`, `EACCES`, …), or say which step before it
/// failed.
pub(crate) fn spawn(
    command: &[String],
    env: &[(String, String)],
    stdin: Option<BorrowedFd<'_>>,
    landlock: Option<BorrowedFd<'_>>,
) -> io::Result<Pid> {
    let program = command
        .first()
        .ok_or_else(|| io::Error::other("no command to run"))?;
    let path = env
        .iter()
        .find(|(name, _)| name == "PATH")
        .map_or(DEFAULT_PATH, |(_, path)| path.as_str());
    let candidates = candidates(program, path)
        .iter()
        .map(|candidate| c_string(candidate))
        .collect::<io::Result<Vec<_>>>()?;
    let args = command
        .iter()
        .map(|arg| c_string(arg))
        .collect::<io::Result<Vec<_>>>()?;
    let vars = env
        .iter()
        .map(|(name, value)| c_string(&format!("{name}={value}")))
        .collect::<io::Result<Vec<_>>>()?;
    let shell = c"/bin/sh";
    let candidate_pointers = null_terminated(candidates.iter().map(|c| c.as_ptr()));
    let argv = null_terminated(args.iter().map(|arg| arg.as_ptr()));
    let envp = null_terminated(vars.iter().map(|var| var.as_ptr()));
    // `/bin/sh FILE ARGS…` for a file the kernel cannot execute; the child fills in FILE.
    let mut shell_argv = null_terminated(
        [shell.as_ptr(), ptr::null()]
            .into_iter()
            .chain(args[1..].iter().map(|arg| arg.as_ptr())),
    );
    let mut request = Request {
        candidates: candidate_pointers.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        shell: shell.as_ptr(),
        shell_argv: shell_argv.as_mut_ptr(),
        stdin: stdin.map_or(-1, |fd| fd.as_raw_fd()),
        landlock: landlock.map_or(-1, |fd| fd.as_raw_fd()),
        step: Step::Exec as c_int,
        error: 0,
    };
    let mut stack = vec![0u128; CHILD_STACK / size_of::<u128>()];

    let all = Signals::all();
    let mut previous = Signals::none();
    #[allow(unsafe_code)]
    // SAFETY: `all` and `previous` are live sigset_t values; pthread_sigmask reads the first and
    // writes the second.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &all.0, &mut previous.0);
    }
    #[allow(unsafe_code)]
    // SAFETY: the child runs `child_main` on `stack` (its top, 16-byte aligned: a u128 array)
    // with `request`, and with CLONE_VFORK this call returns only once the child has exec'd or
    // exited, so `stack`, `request` and every string and array it points to outlive its use.
    // The child shares this process's memory but not its descriptor table or signal handlers
    // (no CLONE_FILES, no CLONE_SIGHAND); it starts with every signal blocked (set just above),
    // so no handler of this process can run on its stack before it has reset them.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.len()).cast::<c_void>();
        libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw mut request).cast::<c_void>(),
        )
    };
    let clone_error = io::Error::last_os_error();
    #[allow(unsafe_code)]
    // SAFETY: `previous` holds the mask read above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous.0, ptr::null_mut());
    }
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    let pid =
        Pid::from_raw(pid).ok_or_else(|| io::Error::other("clone returned an invalid pid"))?;
    #[allow(unsafe_code)]
    // SAFETY: the child has exec'd or exited (CLONE_VFORK), so nothing writes `request` any more;
    // the read is volatile because the write came from another thread of execution.
    let (step, error) = unsafe {
        (
            ptr::read_volatile(&raw const request.step),
            ptr::read_volatile(&raw const request.error),
        )
    };
    if error == 0 {
        return Ok(pid);
    }
    // It exited without its agent: reap it here, where its pid is known.
    let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
    let error = io::Error::from_raw_os_error(error);
    // An exec's error stays as it is (the caller tells a missing command from one that cannot
    // be executed by it); one from a step before says which step.
    let step = match step {
        step if step == Step::Signals as c_int => "unblock signals",
        step if step == Step::Stdin as c_int => "set up its standard input",
        step if step == Step::Landlock as c_int => "enforce the Landlock ruleset",
        _ => return Err(error),
    };
    Err(io::Error::new(
        error.kind(),
        format!("could not {step}: {error}"),
    ))
}

/// The files `execvp(3)` tries for `program`, in order: itself when it names a directory, else
/// `DIR/program` for each directory of `path` (an empty one is the current directory).
fn candidates(program: &str, path: &str) -> Vec<String> {
    if program.contains('/') || program.is_empty() {
        return vec![program.to_owned()];
    }
    path.split(':')
        .map(|dir| match dir {
            "" => program.to_owned(),
            dir => format!("{}/{program}", dir.trim_end_matches('/')),
        })
        .collect()
}

fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument or variable holds a NUL byte",
        )
    })
}

/// `pointers` as a C array ending with a null pointer.
fn null_terminated(pointers: impl Iterator<Item = *const c_char>) -> Vec<*const c_char> {
    pointers.chain(std::iter::once(ptr::null())).collect()
}

/// What the child reads (and `error`, the one field it writes), on the memory it shares with
/// pid 1. Every pointer is valid while [`spawn`] waits for the child.
#[repr(C)]
struct Request {
    /// The files to try, null-terminated.
    candidates: *const *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    shell: *const c_char,
    /// `[shell, FILE, argv[1..]…, null]`; the child writes FILE.
    shell_argv: *mut *const c_char,
    /// Dup'd onto standard input when not -1.
    stdin: c_int,
    /// The Landlock ruleset to enforce when not -1.
    landlock: c_int,
    /// The [`Step`] the child is at, as it goes.
    step: c_int,
    /// Set by the child when it could not exec the agent: the error number (of `step`).
    error: c_int,
}

/// The child's steps before its agent runs.
#[repr(C)]
enum Step {
    Signals,
    Stdin,
    Landlock,
    Exec,
}

/// The child: reset signal handlers, unblock every signal, take standard input and the Landlock
/// domain, and exec the first candidate that can be executed, as `execvp(3)` searches. On
/// failure it records the error number and exits with 127.
extern "C" fn child_main(request: *mut c_void) -> c_int {
    let request = request.cast::<Request>();
    #[allow(unsafe_code)]
    // SAFETY: `request` points to the live Request of `spawn`, which is suspended until this
    // process execs or exits; every pointer in it is valid for that long (see `spawn`). Only
    // system calls and the C library's async-signal-safe wrappers are called here.
    unsafe {
        let fail = |step: Step, error: c_int| -> c_int {
            ptr::write_volatile(&raw mut (*request).step, step as c_int);
            ptr::write_volatile(&raw mut (*request).error, error);
            libc::_exit(127)
        };
        default_signal_handlers();
        let none = Signals::none();
        if libc::sigprocmask(libc::SIG_SETMASK, &none.0, ptr::null_mut()) != 0 {
            return fail(Step::Signals, errno());
        }
        let stdin = (*request).stdin;
        if stdin >= 0 && libc::dup2(stdin, libc::STDIN_FILENO) < 0 {
            return fail(Step::Stdin, errno());
        }
        let landlock = (*request).landlock;
        if landlock >= 0 && libc::syscall(libc::SYS_landlock_restrict_self, landlock, 0) != 0 {
            return fail(Step::Landlock, errno());
        }
        let (argv, envp) = ((*request).argv, (*request).envp);
        let mut denied = false;
        let mut candidate = (*request).candidates;
        while !(*candidate).is_null() {
            libc::execve(*candidate, argv, envp);
            let mut error = errno();
            if error == libc::ENOEXEC {
                *(*request).shell_argv.add(1) = *candidate;
                libc::execve((*request).shell, (*request).shell_argv, envp);
                error = errno();
            }
            match error {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
                other => return fail(Step::Exec, other),
            }
            candidate = candidate.add(1);
        }
        fail(Step::Exec, if denied { libc::EACCES } else { libc::ENOENT })
    }
}

/// In the child: every signal this process handles goes back to its default action, and so
/// does `SIGPIPE`; ignored ones stay ignored. The C library's internal signals, which it does
/// not let `sigaction` touch, are left as they are.
///
/// # Safety
///
/// Only for the child of [`spawn`], before its `execve`: it changes this process's signal
/// dispositions.
#[allow(unsafe_code)]
unsafe fn default_signal_handlers() {
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY (for the block): `current` and `default` are live sigaction values, zeroed
        // (valid for this plain C struct) before the calls read or write them.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, ptr::null(), &mut current) != 0 {
                continue;
            }
            let handled =
                current.sa_sigaction != libc::SIG_DFL && current.sa_sigaction != libc::SIG_IGN;
            if handled || signal == libc::SIGPIPE {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, ptr::null_mut());
            }
        }
    }
}

/// The calling thread's `errno`.
fn errno() -> c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// A signal set.
struct Signals(libc::sigset_t);

impl Signals {
    fn none() -> Self {
        Self::made_by(libc::sigemptyset)
    }

    fn all() -> Self {
        Self::made_by(libc::sigfillset)
    }

    /// A set initialized by `init` (`sigemptyset` or `sigfillset`).
    fn made_by(init: unsafe extern "C" fn(*mut libc::sigset_t) -> c_int) -> Self {
        #[allow(unsafe_code)]
        // SAFETY: a zeroed sigset_t is a valid place for `init` to initialize.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            init(&mut set);
            Self(set)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_searched_on_the_path_in_order() {
        assert_eq!(
            candidates("npm", "/home/agent/.local/bin:/usr/bin/::/bin"),
            [
                "/home/agent/.local/bin/npm",
                "/usr/bin/npm",
                "npm",
                "/bin/npm"
            ]
        );
    }

    #[test]
    fn a_name_with_a_directory_is_taken_as_it_is() {
        assert_eq!(candidates("./run.sh", "/usr/bin"), ["./run.sh"]);
        assert_eq!(candidates("/usr/bin/env", "/bin"), ["/usr/bin/env"]);
    }
}
