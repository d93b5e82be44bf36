//! The host side: decide, spawn the init, limit, time out, reap.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::process::{Pid, Signal, pidfd_send_signal};

use crate::cgroup::SessionCgroup;
use crate::error::SandboxError;
use crate::forked::InitProcess;
use crate::probe::{CgroupSupport, HostReport, probe, probe_cgroups};
use crate::protocol::{Admitted, Confirmed, Report, Reports, Request, timespec, write_frame};
use crate::spec::{Admission, ExitStatus, Outcome, Property, ResourceUsage, Spec};

/// Ends a running session from another thread (`moat stop`, a signal): as a timeout does, the
/// agent is asked to end (`SIGTERM`) and given [`Limits::stop_grace`] before the whole sandbox
/// is killed, and [`Outcome::stopped`] is set. Cloning shares the signal.
///
/// [`Limits::stop_grace`]: crate::Limits::stop_grace
#[derive(Debug, Clone)]
pub struct Stop {
    event: Arc<OwnedFd>,
}

impl Stop {
    /// A stop signal that has not fired.
    pub fn new() -> std::io::Result<Self> {
        let event = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Self {
            event: Arc::new(event),
        })
    }

    /// Fires the signal; every session waiting on it is ended. Idempotent until the session
    /// acts on it; once it has (asked the agent to end), firing again kills the sandbox at once.
    pub fn stop(&self) {
        let _ = rustix::io::write(self.event.as_fd(), &1u64.to_ne_bytes());
    }

    /// Clears a fired signal, so that the next [`stop`](Self::stop) is heard anew.
    pub(crate) fn rearm(&self) {
        let _ = rustix::io::read(self.event.as_fd(), &mut [0u8; 8]);
    }

    /// The eventfd that [`Stop::stop`] writes to.
    pub(crate) fn event(&self) -> std::os::fd::BorrowedFd<'_> {
        self.event.as_fd()
    }
}

/// What this host can enforce, probed once per process (the facts do not change while it runs).
/// [`run`] decides with this same report.
pub fn host_report() -> &'static HostReport {
    static HOST: OnceLock<HostReport> = OnceLock::new();
    HOST.get_or_init(probe)
}

/// This host's cgroups, probed once per process on first use ([`probe_cgroups`]): only a
/// session that asks for a limit needs them.
pub fn cgroup_support() -> &'static CgroupSupport {
    static CGROUPS: OnceLock<CgroupSupport> = OnceLock::new();
    CGROUPS.get_or_init(probe_cgroups)
}

/// Runs one agent session in the sandbox and waits for it; see [`run_with_stop`].
pub fn run(
    spec: &Spec,
    admission: &Admission,
    init_program: &Path,
) -> Result<Outcome, SandboxError> {
    let stop = Stop::new().map_err(SandboxError::Spawn)?;
    run_with_stop(spec, admission, init_program, &stop)
}

/// Runs one agent session in the sandbox and waits for it, or until `stop` fires.
///
/// Refuses with [`SandboxError::Unavailable`], naming what is missing and how to fix it, when
/// Landlock, seccomp or a requested limit cannot hold and the spec does not waive it in
/// [`Spec::allow_missing`], and with [`SandboxError::Unsupported`] when the host has no user
/// namespaces. `init_program` is the binary whose `main` calls [`init_main`](crate::init_main)
/// when its first argument is [`INIT_SUBCOMMAND`](crate::INIT_SUBCOMMAND).
pub fn run_with_stop(
    spec: &Spec,
    admission: &Admission,
    init_program: &Path,
    stop: &Stop,
) -> Result<Outcome, SandboxError> {
    run_admitted(
        spec,
        Init::Program(init_program),
        stop,
        admit_now(admission),
        Box::new(|_, _| {}),
    )
}

/// Where the embedded backend's init comes from.
#[derive(Debug)]
pub enum Init<'a> {
    /// Execute this binary as `PROGRAM __sandbox-init`; its `main` calls
    /// [`init_main`](crate::init_main) for that first argument.
    Program(&'a Path),
    /// An init forked earlier by the caller ([`InitProcess::fork`]), which saves the
    /// `execve`.
    Forked(InitProcess),
}

/// Waits until a session may be prepared, and answers its [`Admission`] (the gate socket, and
/// the environment and home files that point the agent at it) with the [`Confirm`] that says
/// when the agent may start; or why the session may not start. A backend calls it as late as
/// it can before anything of the agent runs: the embedded backend once its init is in the
/// session's cgroups and has the spec, so that building the sandbox overlaps the caller's work
/// (opening the session at the gate); podman before `podman run`.
pub type Admit<'a> = Box<dyn FnOnce() -> Result<(Admission, Confirm<'a>), String> + Send + 'a>;

/// Waits until the agent of an admitted session may start (the caller has the session's start
/// on record), or answers why it may not. The embedded backend's init prepares the agent's
/// start meanwhile: writes the home files, listens on the gate port, builds the confinement
/// and the command, so that little is left between the record and the agent (when all that
/// followed the record, the agent was forked 1.13 ms after the later of the gate's answer
/// and the root's completion: median of 40 sessions here).
pub type Confirm<'a> = Box<dyn FnOnce() -> Result<(), String> + Send + 'a>;

/// Hears, once, of the agent's exit as soon as it is known, with the session's [`Outcome`]:
/// every process of the session is gone by then, but the sandbox's own teardown (its init,
/// namespaces and cgroups) may still be under way, which the run waits for before it returns
/// the same outcome; [`Teardown`] says what is left. A caller records the session's end
/// meanwhile. Not called when the session does not end by the agent's exit (a timeout, a stop,
/// a failure): the run's result says.
pub type OnExit<'a> = Box<dyn FnOnce(&Outcome, Teardown) + Send + 'a>;

/// What is left of a sandbox when [`OnExit`] hears of its agent's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// Only the kernel's: the init, pid 1, has reported that every other process of the
    /// sandbox is gone and exits, and its namespaces go with it. The run waits only to reap
    /// it. A caller may end without waiting for the run, as bwrap's does once its pid 1 has
    /// reported the exit status: the exiting init is then reaped by the host's init (or the
    /// nearest subreaper). Its teardown took 0.6 to 0.8 ms here (mount and network
    /// namespaces).
    Kernel,
    /// The run has work of its own once the init is gone (removing the session's cgroups; a
    /// container's removal): wait for the run.
    Run,
}

/// How long an init that was not admitted may take to exit on its own before it is killed.
const REFUSE_GRACE: Duration = Duration::from_secs(2);

/// An [`Admit`] that lets the session start at once, with `admission`.
pub fn admit_now(admission: &Admission) -> Admit<'static> {
    let admission = admission.clone();
    Box::new(move || Ok((admission, Box::new(|| Ok(())))))
}

/// [`run_with_stop`], starting the agent only once `admit` lets it (see [`Admit`]); a refusal
/// ends the init before the agent exists and is [`SandboxError::NotAdmitted`]. `on_exit` hears
/// of the agent's exit before the sandbox is torn down (see [`OnExit`]).
///
/// The init gets the spec first and builds the sandbox; meanwhile this checks what the host
/// can enforce and calls `admit`. Nothing of the agent runs before both pass.
pub fn run_admitted(
    spec: &Spec,
    init: Init<'_>,
    stop: &Stop,
    admit: Admit<'_>,
    on_exit: OnExit<'_>,
) -> Result<Outcome, SandboxError> {
    spec.validate()?;
    // Limits are settled before the init runs: its children inherit its groups at fork.
    let mut missing = Vec::new();
    let cgroup = SessionCgroup::create(&spec.limits, &mut missing)?;
    if let Some(controller) = missing.first()
        && !spec.allow_missing.contains(&Property::Limits)
    {
        return Err(SandboxError::Unavailable {
            property: Property::Limits,
            what: format!(
                "the {} limit cannot hold on this host: no delegated cgroup v2 controller and no writable cgroup v1 hierarchy (layout: {})",
                controller.name(),
                cgroup_support().layout
            ),
            hint: "delegate the controller to moat (e.g. `systemd-run --user --scope -p Delegate=yes moat run …`), drop the limit, or pass --dangerously-skip-limits".to_owned(),
        });
    }

    let mut init = match init {
        Init::Program(program) => match InitProcess::spawn(program) {
            Ok(init) => init,
            // A host without user namespaces refuses the clone: say so, and how to fix it.
            Err(error) => {
                require_user_namespaces(host_report())?;
                return Err(error);
            }
        },
        Init::Forked(init) => init,
    };
    // The init blocks on the spec, so nothing of the session runs before it is in its groups.
    cgroup.add(init.pid())?;
    let request = Request {
        spec: spec.clone(),
        container: false,
    };
    let (spec_write, report_read) = init.take_pipes()?;
    let (pid, pidfd) = (init.pid, &init.pidfd);
    let mut spec_pipe = std::fs::File::from(spec_write);
    // Not admitted: end of file where the admission would be makes the init exit (no agent),
    // and it is reaped here; one that has not exited within REFUSE_GRACE (a build stuck on a
    // hung mount) is killed.
    let refuse = |spec_pipe: std::fs::File, error: SandboxError| {
        drop(spec_pipe);
        if wait_until_exit(pidfd, stop, Some(REFUSE_GRACE)) != Ending::Exited {
            let _ = pidfd_send_signal(pidfd, Signal::KILL);
        }
        let _ = wait_with_usage(pid);
        error
    };
    // The init builds the sandbox from the spec while the host decides and the caller admits;
    // it starts no agent before the admission follows, and none when the pipe closes without
    // one. A write fails only when the init is gone: its reports, read below, say why.
    let sent = write_frame(&mut spec_pipe, &request);
    let decision = match decide(spec, host_report()) {
        Ok(decision) => decision,
        Err(error) => return Err(refuse(spec_pipe, error)),
    };
    let (admission, confirm) = match admitted(admit) {
        Ok(admitted) => admitted,
        Err(error) => return Err(refuse(spec_pipe, error)),
    };
    let admitted = Admitted {
        admission,
        landlock: decision.landlock,
        seccomp: decision.seccomp,
    };
    // The init prepares the agent's start while `confirm` waits (for the caller's record).
    let sent = sent.and_then(|()| write_frame(&mut spec_pipe, &admitted));
    if let Err(error) = confirm() {
        return Err(refuse(spec_pipe, SandboxError::NotAdmitted(error)));
    }
    // The session's duration counts from its confirmation, not from the init's spawn.
    let started = Instant::now();
    let sent = sent.and_then(|()| write_frame(&mut spec_pipe, &Confirmed {}));
    drop(spec_pipe);

    let mut listener = Listener {
        spec,
        started,
        teardown: if cgroup.is_empty() {
            Teardown::Kernel
        } else {
            Teardown::Run
        },
        cgroup_enforced: cgroup.enforced.clone(),
        ending_asked: Ending::Exited,
        on_exit: Some(on_exit),
        heard: Heard::default(),
    };
    // The init reports the agent's exit once every process of the sandbox is gone, before the
    // namespaces are torn down: the outcome is complete then, and `on_exit` hears it. This
    // thread reads the reports as it waits for the init (no thread of their own).
    let mut reports = Reports::new(report_read);
    let deadline = spec.limits.timeout.map(|timeout| Instant::now() + timeout);
    let ending = watch(pidfd, stop, deadline, &mut reports, &mut listener);
    let (timed_out, stopped) = (ending == Ending::TimedOut, ending == Ending::Stopped);
    if timed_out || stopped {
        // An exit after a timeout or stop asked the agent to end is theirs.
        listener.ending_asked = ending;
        // SIGTERM to the init, pid 1, which relays it to the agent; a second stop, or the
        // grace passing, kills the sandbox.
        let ask = || {
            let _ = pidfd_send_signal(pidfd, Signal::TERM);
            true
        };
        let ended = listener.heard.agent_started
            && asked_to_end(stop, ask, || {
                let grace = Instant::now() + spec.limits.grace();
                watch(pidfd, stop, Some(grace), &mut reports, &mut listener)
            });
        if !ended {
            // With the init, pid 1, dies every process of the pid namespace.
            let _ = pidfd_send_signal(pidfd, Signal::KILL);
        }
    }
    let (init_status, usage) = wait_with_usage(pid).map_err(SandboxError::Spawn)?;
    let duration = started.elapsed();
    // Whatever the init wrote before it exited.
    reports.drain(&mut |report| listener.hear(report));
    let heard = listener.heard;
    drop(cgroup);
    // Reported: the agent exited and nothing of the session was left (a timeout or stop that
    // fired during the teardown after that only ended the inits).
    if let Some(exited) = heard.exited {
        return Ok(exited);
    }
    // Not reported: the setup failed, the init died, or the timeout or a stop killed it.
    if !(timed_out || stopped) {
        if let Some(message) = heard.failed {
            return Err(SandboxError::Setup(message));
        }
        if let Some(not_started) = heard.not_started {
            return Err(not_started);
        }
        sent.map_err(SandboxError::Spawn)?;
    }
    let status = if timed_out || stopped {
        ExitStatus::Signal(libc::SIGKILL)
    } else {
        init_status
    };
    let mut enforced = heard.enforced;
    enforced.extend(listener.cgroup_enforced);
    Ok(outcome(spec, ending, status, duration, usage, enforced))
}

/// Waits for the init behind `pidfd` to exit, `deadline` to pass, or `stop` to fire, handing
/// the init's reports to `listener` as they come.
fn watch(
    pidfd: &OwnedFd,
    stop: &Stop,
    deadline: Option<Instant>,
    reports: &mut Reports,
    listener: &mut Listener<'_, '_>,
) -> Ending {
    loop {
        match wait_for(pidfd, stop, deadline, reports.fd()) {
            Some(ending) => return ending,
            None => reports.read_available(&mut |report| listener.hear(report)),
        }
    }
}

/// What the thread that waits for the init makes of its reports.
struct Listener<'a, 'b> {
    spec: &'a Spec,
    /// When the session was confirmed: its duration counts from then.
    started: Instant,
    /// What is left of the sandbox once the init reports the agent's exit.
    teardown: Teardown,
    /// What the session's cgroups enforce.
    cgroup_enforced: Vec<String>,
    /// The [`Ending`] the host asked for (a timeout or stop): the agent's exit, heard after it,
    /// is labelled with it. [`Ending::Exited`] until then.
    ending_asked: Ending,
    on_exit: Option<OnExit<'b>>,
    heard: Heard,
}

impl Listener<'_, '_> {
    fn hear(&mut self, report: Report) {
        let heard = &mut self.heard;
        match report {
            Report::Failed { message } => {
                heard.failed.get_or_insert(message);
            }
            Report::NotStarted {
                program,
                error,
                code,
            } => {
                heard
                    .not_started
                    .get_or_insert(SandboxError::CommandNotStarted {
                        program,
                        error,
                        code,
                    });
            }
            Report::Started { enforced } => {
                heard.enforced.extend(enforced);
                heard.agent_started = true;
            }
            Report::Exited { status, usage } if heard.exited.is_none() => {
                let mut enforced = heard.enforced.clone();
                enforced.extend(self.cgroup_enforced.iter().cloned());
                let exited = outcome(
                    self.spec,
                    self.ending_asked,
                    status,
                    self.started.elapsed(),
                    usage,
                    enforced,
                );
                if let Some(on_exit) = self.on_exit.take() {
                    on_exit(&exited, self.teardown);
                }
                heard.exited = Some(exited);
            }
            Report::Exited { .. } => {}
        }
    }
}

/// Asks the agent to end with `ask` (a `SIGTERM` on its way to it; false if it could not be
/// sent), then waits for its sandbox with `wait`. True if that ended with the exit (within the
/// grace `wait` gives it); false if not, or if `stop` fired again meanwhile (a second `moat
/// stop` or SIGTERM does not wait).
pub(crate) fn asked_to_end(
    stop: &Stop,
    ask: impl FnOnce() -> bool,
    wait: impl FnOnce() -> Ending,
) -> bool {
    stop.rearm();
    ask() && wait() == Ending::Exited
}

/// What the init reported.
#[derive(Default)]
struct Heard {
    /// The first setup failure.
    failed: Option<String>,
    /// The agent's command could not be executed ([`SandboxError::CommandNotStarted`]).
    not_started: Option<SandboxError>,
    /// What held inside, reported when the agent started.
    enforced: Vec<String>,
    /// Whether the agent started: a timeout or stop asks it to end only then.
    agent_started: bool,
    /// The session's outcome, from the agent's exit.
    exited: Option<Outcome>,
}

/// Asks `admit` whether the session may start; the admission it answers, checked.
pub(crate) fn admitted(admit: Admit<'_>) -> Result<(Admission, Confirm<'_>), SandboxError> {
    let (admission, confirm) = admit().map_err(SandboxError::NotAdmitted)?;
    admission.validate()?;
    Ok((admission, confirm))
}

/// The [`Outcome`] of a session that ended (`ending`) with `status`: a timeout or stop is
/// reported as `SIGKILL` with its reason, and the timeout joins what was enforced.
pub(crate) fn outcome(
    spec: &Spec,
    ending: Ending,
    status: ExitStatus,
    duration: Duration,
    usage: ResourceUsage,
    mut enforced: Vec<String>,
) -> Outcome {
    if let Some(timeout) = spec.limits.timeout {
        enforced.push(format!("timeout ({})", seconds(timeout)));
    }
    let (exit_code, signal) = match status {
        ExitStatus::Code(code) => (Some(code), None),
        ExitStatus::Signal(signal) => (None, Some(signal)),
    };
    let reason = match ending {
        Ending::Exited => None,
        Ending::TimedOut => spec
            .limits
            .timeout
            .map(|timeout| format!("timed out after {}", seconds(timeout))),
        Ending::Stopped => Some("stopped".to_owned()),
    };
    Outcome {
        exit_code,
        signal,
        reason,
        timed_out: ending == Ending::TimedOut,
        stopped: ending == Ending::Stopped,
        duration,
        usage,
        enforced,
    }
}

/// `1.5s`, `30s`: a duration as people write it.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

/// Refuses a host without user namespaces (which cannot be waived: the sandbox is built in
/// them), saying how to enable them.
fn require_user_namespaces(host: &HostReport) -> Result<(), SandboxError> {
    if host.user_namespaces {
        return Ok(());
    }
    Err(SandboxError::Unsupported {
        what: "user namespaces are unavailable on this host, so the sandbox cannot be built"
            .to_owned(),
        hint: format!(
            "enable them (sysctl user.max_user_namespaces=15000, kernel.unprivileged_userns_clone=1) or use --backend podman; {}",
            host.notes.join("; ")
        ),
    })
}

/// What the init must enforce; refuses what cannot hold and was not waived.
struct Decision {
    landlock: bool,
    seccomp: bool,
}

fn decide(spec: &Spec, host: &HostReport) -> Result<Decision, SandboxError> {
    require_user_namespaces(host)?;
    require_landlock_and_seccomp(spec, host)?;
    Ok(Decision {
        landlock: host.landlock_abi.is_some(),
        seccomp: host.seccomp,
    })
}

/// Refuses, naming the fix, when Landlock or seccomp cannot hold on this host and the spec does
/// not waive it (both backends apply both inside the sandbox).
pub(crate) fn require_landlock_and_seccomp(
    spec: &Spec,
    host: &HostReport,
) -> Result<(), SandboxError> {
    let waived = |property| spec.allow_missing.contains(&property);
    if host.landlock_abi.is_none() && !waived(Property::Landlock) {
        return Err(SandboxError::Unavailable {
            property: Property::Landlock,
            what: "landlock is not available on this kernel".to_owned(),
            hint: "boot a kernel ≥ 5.13 with landlock in the lsm= list, or pass --dangerously-skip-landlock".to_owned(),
        });
    }
    if !host.seccomp && !waived(Property::Seccomp) {
        return Err(SandboxError::Unavailable {
            property: Property::Seccomp,
            what: "seccomp filters are not available on this kernel".to_owned(),
            hint:
                "use a kernel built with CONFIG_SECCOMP_FILTER, or pass --dangerously-skip-seccomp"
                    .to_owned(),
        });
    }
    Ok(())
}

/// Why waiting ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited,
    TimedOut,
    Stopped,
}

/// Waits for the process behind `pidfd` to exit, the timeout to pass, or `stop` to fire.
pub(crate) fn wait_until_exit(pidfd: &OwnedFd, stop: &Stop, timeout: Option<Duration>) -> Ending {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    wait_for(pidfd, stop, deadline, None).unwrap_or(Ending::Exited)
}

/// Waits for the process behind `pidfd` to exit, `deadline` to pass, `stop` to fire, or
/// `readable` (when given) to have something to read: `None` for that, which is told before
/// the exit (what the process wrote comes first), the exit before a stop.
fn wait_for(
    pidfd: &OwnedFd,
    stop: &Stop,
    deadline: Option<Instant>,
    readable: Option<BorrowedFd<'_>>,
) -> Option<Ending> {
    loop {
        let remaining = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            return Some(Ending::TimedOut);
        }
        let timeout = remaining.map(timespec);
        let mut fds = vec![
            PollFd::new(pidfd, PollFlags::IN),
            PollFd::new(stop.event.as_ref(), PollFlags::IN),
        ];
        if let Some(fd) = &readable {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) if fds.get(2).is_some_and(|fd| !fd.revents().is_empty()) => return None,
            Ok(_) if !fds[0].revents().is_empty() => return Some(Ending::Exited),
            Ok(_) => return Some(Ending::Stopped),
            // Polling cannot fail on valid descriptors; reaping (blocking) is still correct.
            Err(_) => return Some(Ending::Exited),
        }
    }
}

/// Reaps `pid` with `wait4`: its status and the usage of it and every descendant it reaped.
pub(crate) fn wait_with_usage(pid: Pid) -> std::io::Result<(ExitStatus, ResourceUsage)> {
    let mut status: libc::c_int = 0;
    #[allow(unsafe_code)]
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        #[allow(unsafe_code)]
        // SAFETY: both pointers are to live, writable locals of the right types; `pid` is our
        // own unreaped child (std's Child is never waited, so nothing else reaps it).
        let result = unsafe { libc::wait4(pid.as_raw_nonzero().get(), &mut status, 0, &mut usage) };
        if result >= 0 {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    let exit = if libc::WIFSIGNALED(status) {
        ExitStatus::Signal(libc::WTERMSIG(status))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    };
    let timeval = |value: libc::timeval| {
        Duration::from_secs(value.tv_sec.max(0) as u64)
            + Duration::from_micros(value.tv_usec.max(0) as u64)
    };
    let usage = ResourceUsage {
        user_cpu: timeval(usage.ru_utime),
        system_cpu: timeval(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
    };
    Ok((exit, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(landlock_abi: Option<i32>, seccomp: bool) -> HostReport {
        HostReport {
            user_namespaces: true,
            landlock_abi,
            seccomp,
            notes: vec![],
        }
    }

    fn spec(allow_missing: Vec<Property>) -> Spec {
        Spec {
            workspace: "/work".into(),
            allow_missing,
            ..crate::spec::tests::spec()
        }
    }

    #[test]
    fn missing_landlock_refuses_unless_waived() {
        let error = decide(&spec(vec![]), &host(None, true))
            .err()
            .expect("refused");
        assert!(
            matches!(
                error,
                SandboxError::Unavailable {
                    property: Property::Landlock,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("hint: "), "{error}");
        let decision = decide(&spec(vec![Property::Landlock]), &host(None, true)).expect("waived");
        assert!(!decision.landlock && decision.seccomp);
    }

    #[test]
    fn missing_seccomp_refuses_unless_waived() {
        let error = decide(&spec(vec![]), &host(Some(7), false))
            .err()
            .expect("refused");
        assert!(
            matches!(
                error,
                SandboxError::Unavailable {
                    property: Property::Seccomp,
                    ..
                }
            ),
            "{error}"
        );
        assert!(decide(&spec(vec![Property::Seccomp]), &host(Some(7), false)).is_ok());
    }

    #[test]
    fn no_user_namespaces_cannot_be_waived() {
        let mut without = host(Some(7), true);
        without.user_namespaces = false;
        let all = vec![Property::Landlock, Property::Seccomp, Property::Limits];
        let error = decide(&spec(all), &without).err().expect("refused");
        assert!(matches!(error, SandboxError::Unsupported { .. }), "{error}");
    }

    #[test]
    fn an_available_property_is_enforced_even_when_waived() {
        let decision = decide(
            &spec(vec![Property::Landlock, Property::Seccomp]),
            &host(Some(7), true),
        )
        .expect("ok");
        assert!(decision.landlock && decision.seccomp);
    }
}
