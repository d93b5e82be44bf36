//! The host side: decide, spawn the init, limit, time out, reap.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::process::{Pid, Signal, pidfd_send_signal};

use crate::cgroup::SessionCgroup;
use crate::door::{DoorEvent, Enforce, Entry};
use crate::error::SandboxError;
use crate::forked::InitProcess;
use crate::probe::{CgroupSupport, HostReport, probe, probe_cgroups};
use crate::protocol::{Report, Reports, Request, timespec, write_frame};
use crate::spec::{Admission, ExitStatus, Outcome, Property, ResourceUsage, Spec};

/// Ends a running session from another thread (`moat stop`, a signal): as a timeout does, the
/// agent is asked to end (`SIGTERM`) and given [`Limits::stop_grace`] before the whole sandbox
/// is killed, and [`Outcome::stopped`] is set. Cloning shares the signal.
///
/// [`Limits::stop_grace`]: crate::Limits::stop_grace
#[derive(Debug, Clone)]
pub struct Stop {
    event: Arc<Event>,
}

impl Stop {
    /// A stop signal that has not fired.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            event: Arc::new(Event::new()?),
        })
    }

    /// Fires the signal; every session waiting on it is ended. Idempotent until the session
    /// acts on it; once it has (asked the agent to end), firing again kills the sandbox at once.
    pub fn stop(&self) {
        self.event.fire();
    }

    /// Clears a fired signal, so that the next [`stop`](Self::stop) is heard anew.
    pub(crate) fn rearm(&self) {
        self.event.clear();
    }

    /// The eventfd that [`Stop::stop`] writes to.
    pub(crate) fn event(&self) -> BorrowedFd<'_> {
        self.event.fd()
    }
}

/// A signal one thread fires and another polls for: an eventfd, readable once fired until
/// cleared.
#[derive(Debug)]
pub(crate) struct Event(OwnedFd);

impl Event {
    pub(crate) fn new() -> std::io::Result<Self> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Self(fd))
    }

    pub(crate) fn fire(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    pub(crate) fn clear(&self) {
        let _ = rustix::io::read(&self.0, &mut [0u8; 8]);
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
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
    let entry = Entry::admitted(admission).map_err(SandboxError::Spawn)?;
    run_admitted(
        spec,
        Init::Program(init_program),
        stop,
        entry,
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

/// [`run_with_stop`], starting the agent only once the caller has admitted and confirmed the
/// session through the [`Door`](crate::Door) of `entry`; a refusal ends the init before the
/// agent exists and is [`SandboxError::NotAdmitted`]. `on_exit` hears of the agent's exit
/// before the sandbox is torn down (see [`OnExit`]).
///
/// The init gets the spec first and builds the sandbox; meanwhile this checks what the host
/// can enforce, and the caller opens the session. Nothing of the agent runs before both pass.
/// The timeout counts from the confirmation, and so does [`Outcome::duration`].
///
/// [`request`], then [`Requested::run`]: a caller may send the request on one thread and run
/// the session on another.
pub fn run_admitted(
    spec: &Spec,
    init: Init<'_>,
    stop: &Stop,
    entry: Entry,
    on_exit: OnExit<'_>,
) -> Result<Outcome, SandboxError> {
    request(spec, init)?.run(stop, entry, on_exit)
}

/// A sandbox whose init has the session's request and builds the sandbox from it; nothing of
/// the agent runs before [`Requested::run`] admits the session. Dropped instead, its init (and
/// with it, pid 1, the sandbox) is killed and reaped.
#[derive(Debug)]
pub struct Requested(Option<RequestedParts>);

#[derive(Debug)]
struct RequestedParts {
    spec: Spec,
    init: InitProcess,
    cgroup: SessionCgroup,
    spec_pipe: std::fs::File,
    report_read: OwnedFd,
    /// The request's write, which fails only when the init is gone (its reports say why).
    sent: std::io::Result<()>,
}

impl Drop for Requested {
    fn drop(&mut self) {
        // Not run: no agent exists. The groups are removed once the init is reaped.
        if let Some(parts) = self.0.take() {
            let _ = pidfd_send_signal(&parts.init.pidfd, Signal::KILL);
            let _ = wait_with_usage(parts.init.pid);
        }
    }
}

impl Requested {
    /// Admits the session once the host can enforce what the spec asks and the caller has
    /// admitted and confirmed it through `entry`'s door, then waits for the agent's exit and
    /// the sandbox's end, as [`run_admitted`] says.
    pub fn run(
        self,
        stop: &Stop,
        entry: Entry,
        on_exit: OnExit<'_>,
    ) -> Result<Outcome, SandboxError> {
        admit_and_watch(self, stop, entry, on_exit)
    }
}

/// Starts a session's sandbox: checks the spec, settles its limits (refusing, as
/// [`run_with_stop`] says, those that cannot hold), puts the init in the session's groups and
/// sends it the request, from which it builds the sandbox while the caller opens the session.
/// Costs the calling thread a few writes; [`Requested::run`] does the rest.
pub fn request(spec: &Spec, init: Init<'_>) -> Result<Requested, SandboxError> {
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
    let mut spec_pipe = std::fs::File::from(spec_write);
    // The init builds the sandbox from the spec while the host decides and the caller admits;
    // it starts no agent before the admission and the confirmation follow, and none when the
    // pipe closes without them.
    let sent = write_frame(&mut spec_pipe, &request);
    Ok(Requested(Some(RequestedParts {
        spec: request.spec,
        init,
        cgroup,
        spec_pipe,
        report_read,
        sent,
    })))
}

/// [`Requested::run`].
fn admit_and_watch(
    mut requested: Requested,
    stop: &Stop,
    entry: Entry,
    on_exit: OnExit<'_>,
) -> Result<Outcome, SandboxError> {
    let RequestedParts {
        spec,
        init,
        cgroup,
        spec_pipe,
        report_read,
        sent,
    } = requested.0.take().expect("a request is run once");
    let spec = &spec;
    let (pid, pidfd) = (init.pid, &init.pidfd);
    // Not admitted: end of file where the admission would be makes the init exit (no agent),
    // and it is reaped here; one that has not exited within REFUSE_GRACE (a build stuck on a
    // hung mount) is killed.
    let refuse = |error: SandboxError| {
        if wait_until_exit(pidfd, stop, Some(REFUSE_GRACE)) != Ending::Exited {
            let _ = pidfd_send_signal(pidfd, Signal::KILL);
        }
        let _ = wait_with_usage(pid);
        error
    };
    let enforce = match decide(spec, host_report()) {
        Ok(enforce) => enforce,
        Err(error) => {
            drop((spec_pipe, entry));
            return Err(refuse(error));
        }
    };
    // From here on the caller's thread writes the admission and the confirmation itself.
    if let Err(refusal) = entry.open(spec_pipe, enforce, spec.limits.timeout.is_some()) {
        return Err(refuse(refusal));
    }

    let mut listener = Listener {
        spec,
        started: None,
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
    // thread reads the reports as it waits for the init (no thread of their own), and the
    // door's refusal or, with a timeout, its confirmation.
    let mut reports = Reports::new(report_read);
    let timeout = spec.limits.timeout;
    let watched = watch(
        pidfd,
        stop,
        Some(&entry),
        &mut reports,
        &mut listener,
        |started| Some(started? + timeout?),
    );
    let ending = match watched {
        Ok(ending) => ending,
        Err(refusal) => {
            drop(entry);
            return Err(refuse(refusal));
        }
    };
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
                // Without an entry, nothing is refused.
                watch(pidfd, stop, None, &mut reports, &mut listener, |_| {
                    Some(grace)
                })
                .unwrap_or(Ending::Stopped)
            });
        if !ended {
            // With the init, pid 1, dies every process of the pid namespace.
            let _ = pidfd_send_signal(pidfd, Signal::KILL);
        }
    }
    let (init_status, usage) = wait_with_usage(pid).map_err(SandboxError::Spawn)?;
    listener.started = listener.started.or_else(|| entry.confirmed_at());
    let duration = listener
        .started
        .map_or(Duration::ZERO, |started| started.elapsed());
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
        if let Some(error) = entry.write_error() {
            return Err(SandboxError::Spawn(error));
        }
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

/// Waits for the init behind `pidfd` to exit, `deadline` to pass (given when the session
/// started, once it has), or `stop` to fire, handing the init's reports to `listener` as they
/// come; and, with an `entry`, for the door to refuse the session (the refusal is the error).
fn watch(
    pidfd: &OwnedFd,
    stop: &Stop,
    entry: Option<&Entry>,
    reports: &mut Reports,
    listener: &mut Listener<'_, '_>,
    deadline: impl Fn(Option<Instant>) -> Option<Instant>,
) -> Result<Ending, SandboxError> {
    // The confirmation comes from the caller's thread; the agent's reports follow it.
    let confirmed = || entry.and_then(Entry::confirmed_at);
    loop {
        listener.started = listener.started.or_else(confirmed);
        let door = entry.map(Entry::wake_fd);
        match wait_for(pidfd, stop, deadline(listener.started), reports.fd(), door) {
            Woke::Ended(ending) => return Ok(ending),
            Woke::Reports => {
                listener.started = listener.started.or_else(confirmed);
                reports.read_available(&mut |report| listener.hear(report));
            }
            Woke::Door => {
                if let Some(DoorEvent::Refused(refusal)) = entry.map(Entry::event) {
                    return Err(refusal);
                }
            }
        }
    }
}

/// What the thread that waits for the init makes of its reports.
struct Listener<'a, 'b> {
    spec: &'a Spec,
    /// When the session was confirmed: its duration counts from then.
    started: Option<Instant>,
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
                    self.started
                        .map_or(Duration::ZERO, |started| started.elapsed()),
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
    /// What held inside, reported as the agent started.
    enforced: Vec<String>,
    /// Whether the agent is starting ([`Report::Started`]): a timeout or stop asks it to end
    /// only then.
    agent_started: bool,
    /// The session's outcome, from the agent's exit.
    exited: Option<Outcome>,
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
fn decide(spec: &Spec, host: &HostReport) -> Result<Enforce, SandboxError> {
    require_user_namespaces(host)?;
    require_landlock_and_seccomp(spec, host)?;
    Ok(Enforce {
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
    match wait_for(pidfd, stop, deadline, None, None) {
        Woke::Ended(ending) => ending,
        Woke::Reports | Woke::Door => Ending::Exited,
    }
}

/// Waits as [`wait_until_exit`] does, handing each report on to `each` as it comes. The
/// reports come first: what the init wrote before `stop` fired (that the agent is starting)
/// is heard before the stop is.
pub(crate) fn wait_hearing(
    pidfd: &OwnedFd,
    stop: &Stop,
    timeout: Option<Duration>,
    reports: &mut Reports,
    each: &mut impl FnMut(Report),
) -> Ending {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    loop {
        match wait_for(pidfd, stop, deadline, reports.fd(), None) {
            Woke::Ended(ending) => return ending,
            Woke::Reports => reports.read_available(each),
            Woke::Door => {}
        }
    }
}

/// What [`wait_for`] woke for.
enum Woke {
    Ended(Ending),
    /// `reports` has something to read; told before the exit (what the process wrote comes
    /// first).
    Reports,
    /// `door` was written to.
    Door,
}

/// Waits for the process behind `pidfd` to exit, `deadline` to pass, `stop` to fire, or
/// `reports` or `door` (when given) to be readable: the reports first, the exit before the
/// door, the door before a stop.
fn wait_for(
    pidfd: &OwnedFd,
    stop: &Stop,
    deadline: Option<Instant>,
    reports: Option<BorrowedFd<'_>>,
    door: Option<BorrowedFd<'_>>,
) -> Woke {
    loop {
        let remaining = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            return Woke::Ended(Ending::TimedOut);
        }
        let timeout = remaining.map(timespec);
        let mut fds = vec![
            PollFd::new(pidfd, PollFlags::IN),
            PollFd::new(&stop.event.0, PollFlags::IN),
        ];
        let reports_at = reports.map(|_| fds.len());
        let door_at = door.map(|_| fds.len() + usize::from(reports.is_some()));
        fds.extend(
            reports
                .iter()
                .chain(door.iter())
                .map(|fd| PollFd::new(fd, PollFlags::IN)),
        );
        let polled = rustix::event::poll(&mut fds, timeout.as_ref());
        let ready = |at: Option<usize>| at.is_some_and(|at| !fds[at].revents().is_empty());
        match polled {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) if ready(reports_at) => return Woke::Reports,
            Ok(_) if ready(Some(0)) => return Woke::Ended(Ending::Exited),
            Ok(_) if ready(door_at) => return Woke::Door,
            Ok(_) => return Woke::Ended(Ending::Stopped),
            // Polling cannot fail on valid descriptors; reaping (blocking) is still correct.
            Err(_) => return Woke::Ended(Ending::Exited),
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
        let error = decide(&spec(vec![]), &host(None, true)).expect_err("refused");
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
        let error = decide(&spec(vec![]), &host(Some(7), false)).expect_err("refused");
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
        let error = decide(&spec(all), &without).expect_err("refused");
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
