//! Starting the agent from the init: its program found on its `PATH`, then `posix_spawn`.
//!
//! The thread that starts the agent holds the agent's confinement by then
//! ([`AgentConfinement::apply`]), so the agent needs nothing run between the fork and the
//! `execve`, and the C library's `posix_spawn` starts it without copying the init's memory: a
//! `clone` with `CLONE_VM` and `CLONE_VFORK` on a stack of its own, instead of a `fork`. The
//! init is a copy of `moat run` (a large process); its `fork` took 0.25 ms of CPU per session
//! here, on the path to the agent (BENCHMARKS.md, sandbox notes of 2026-12-02).
//! `std::process::Command` would take the same path only for a dynamically linked C library (it
//! finds `posix_spawn_file_actions_addchdir_np` by a weak symbol lookup, which a static binary
//! does not have).
//!
//! [`AgentConfinement::apply`]: crate::confine::AgentConfinement::apply

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{Access, access};
use rustix::process::Pid;

/// The `PATH` the C library's `execvp` searches when the environment has none.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The agent's command, checked and encoded for `posix_spawn`.
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
        })
    }

    /// Starts the agent: its standard input is `stdin` (else this process's), its standard
    /// output and error are this process's, its signal mask is empty and `SIGPIPE` is back to
    /// its default action (Rust ignores it in this process). Every other descriptor of this
    /// process is close-on-exec. The error is the `execve`'s or the working directory's.
    ///
    /// A file the kernel cannot execute (`ENOEXEC`: no `#!` line) is run by `/bin/sh`, as
    /// `execvp` does: `/bin/sh FILE ARGUMENTS…`.
    pub(crate) fn spawn(&self, stdin: Option<BorrowedFd<'_>>) -> io::Result<Pid> {
        match self.spawn_program(&self.program, &self.argv, stdin) {
            Err(error) if error.raw_os_error() == Some(libc::ENOEXEC) => {
                let mut argv = vec![c"/bin/sh".to_owned(), self.program.clone()];
                argv.extend(self.argv.iter().skip(1).cloned());
                self.spawn_program(c"/bin/sh", &argv, stdin)
            }
            spawned => spawned,
        }
    }

    fn spawn_program(
        &self,
        program: &CStr,
        argv: &[CString],
        stdin: Option<BorrowedFd<'_>>,
    ) -> io::Result<Pid> {
        let argv = null_terminated(argv);
        let envp = null_terminated(&self.envp);
        let mut pid: libc::pid_t = 0;
        let mut actions = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        let mut attributes = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        #[allow(unsafe_code)]
        // SAFETY: the file actions and attributes are initialized before use and destroyed
        // after; the signal sets are locals initialized by sigemptyset; `program`, `cwd` and
        // the strings behind `argv` and `envp` are NUL-terminated CStrings that outlive the
        // call, and both arrays end with a null pointer and outlive the call. posix_spawn runs the
        // child on a stack of its own and returns once it has executed (or failed to).
        let result = unsafe {
            let actions = actions.as_mut_ptr();
            let attributes = attributes.as_mut_ptr();
            libc::posix_spawn_file_actions_init(actions);
            libc::posix_spawnattr_init(attributes);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            let mut pipe_signal: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe_signal);
            libc::sigaddset(&mut pipe_signal, libc::SIGPIPE);
            let prepared = [
                stdin.map_or(0, |fd| {
                    libc::posix_spawn_file_actions_adddup2(actions, fd.as_raw_fd(), 0)
                }),
                libc::posix_spawn_file_actions_addchdir_np(actions, self.cwd.as_ptr()),
                libc::posix_spawnattr_setsigmask(attributes, &empty),
                libc::posix_spawnattr_setsigdefault(attributes, &pipe_signal),
                libc::posix_spawnattr_setflags(
                    attributes,
                    (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
                ),
            ];
            let result = match prepared.into_iter().find(|&result| result != 0) {
                Some(error) => error,
                None => libc::posix_spawn(
                    &mut pid,
                    program.as_ptr(),
                    actions,
                    attributes,
                    argv.as_ptr(),
                    envp.as_ptr(),
                ),
            };
            libc::posix_spawnattr_destroy(attributes);
            libc::posix_spawn_file_actions_destroy(actions);
            result
        };
        if result != 0 {
            return Err(io::Error::from_raw_os_error(result));
        }
        Pid::from_raw(pid).ok_or_else(|| io::Error::other("posix_spawn gave no pid"))
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
    fn the_spawned_agent_gets_its_arguments_environment_and_directory() {
        let dir = std::env::temp_dir().join(format!("moat-agent-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let command = [
            "sh".to_owned(),
            "-c".to_owned(),
            "printf '%s %s %s' \"$0\" \"$GREETING\" \"$(pwd)\" > out".to_owned(),
        ];
        let env = [
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("GREETING".to_owned(), "hello".to_owned()),
        ];
        let agent = AgentCommand::new(&command, &env, &dir).expect("command");
        let pid = agent.spawn(None).expect("spawn");
        let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            .expect("wait")
            .expect("status");
        assert_eq!(status.1.exit_status(), Some(0));
        let out = std::fs::read_to_string(dir.join("out")).expect("out");
        assert_eq!(out, format!("sh hello {}", dir.display()));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
