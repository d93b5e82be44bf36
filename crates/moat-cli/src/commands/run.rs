//! `moat run -- COMMAND…`: one agent session in a sandbox whose only way out is a gate serving
//! this session alone, recorded from start to end in the audit log.
//!
//! The gate: a `moat gate` that serves the same data directory when one runs (asked through
//! `<data-dir>/gate.ctl` to serve the session and record its start and end: one audit writer
//! per data directory), else a gate built here from the sources given.
//!
//! Order: hand the sandbox's spec to its init (forked at the start of `main`, or started now),
//! which builds the sandbox meanwhile → find or build the gate → probe the host (the sandbox
//! refuses when an isolation property is missing and not waived) → ask the gate to open the
//! session (socket, audit `session-start`; a running gate gets the request as soon as it is
//! connected to, and its hello comes before its answer) → admit the session with the gate
//! socket, the port inside and the environment and home files that point the agent's clients
//! at the gate: the init, whose root already shows the socket's directory, writes the home
//! files and prepares the agent's start while the gate records the session's start → confirm
//! once the gate has answered: the init starts the agent → hand the `session-end` to the gate
//! (or record it) → exit with the agent's status. Nothing of the agent runs before its start is
//! recorded; building and preparing the sandbox overlap finding the gate and its durable
//! append.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_audit::{AuditLog, Event, SessionEnd, SessionStart};
use moat_gate::session_file::{SessionFile, end_abandoned_sessions, remove_session_file};
use moat_gate::{ControlClient, Gate, GateConfig, SessionContext};
use moat_sandbox::{Admission, Backend, Limits, Outcome, Property, SandboxError, Spec, Teardown};

use crate::cli::{BackendArg, GlobalArgs, RunArgs};
use crate::config::{AuditStore, Loaded, Sources};
use crate::error::UserError;

/// The address the gate has inside every sandbox.
const GATE_PORT: u16 = 7070;
/// What the LLM key variables hold inside the sandbox.
const LLM_KEY_PLACEHOLDER: &str = "moat-gate-adds-the-key";

/// `$HOME` inside the sandbox.
const HOME: &str = "/home/agent";

pub fn run(
    global: &GlobalArgs,
    loaded: &Loaded,
    args: RunArgs,
    forked_init: Option<moat_sandbox::InitProcess>,
) -> anyhow::Result<ExitCode> {
    let workspace = workspace(args.workspace.as_deref())?;
    let ro_paths = read_only_paths(&args.ro_paths)?;
    let data_dir = loaded.data_dir(global)?;
    let audit_store = loaded.audit_store(global, &data_dir);
    keep_moat_state_out(&workspace, &ro_paths, &data_dir, &audit_store)?;
    std::fs::create_dir_all(&data_dir)?;
    let limits = Limits {
        memory: args.memory.as_deref().map(parse_size).transpose()?,
        pids: args.pids,
        cpus: args.cpus,
        timeout: args.timeout,
        stop_grace: Some(args.stop_timeout),
    };
    let mut waived = Vec::new();
    if args.dangerously_skip_limits {
        waived.push(Property::Limits);
    }
    if args.dangerously_no_landlock {
        waived.push(Property::Landlock);
    }
    if args.dangerously_no_seccomp {
        waived.push(Property::Seccomp);
    }
    let secrets = read_secrets(&args.secrets)?;
    let session = SessionContext {
        id: new_session_id()?,
        agent: args
            .agent
            .clone()
            .unwrap_or_else(|| agent_name(&args.command)),
        operator: args.operator.clone().unwrap_or_else(host_user),
    };
    let backend = match args.backend {
        BackendArg::Embedded => Backend::Embedded,
        BackendArg::Podman => Backend::Podman {
            program: PathBuf::from("podman"),
            image: args.image.clone(),
        },
    };
    if args.image.is_some() && backend == Backend::Embedded {
        return Err(UserError::new("--image applies to --backend podman only")
            .hint("add --backend podman, or drop --image")
            .into());
    }
    // The sandbox mounts the directory the gate will bind the session's socket in before the
    // session opens: it exists from now on.
    let mut session_dir = SessionDir::create(&data_dir, &session.id)?;
    let spec = Spec {
        command: args.command.clone(),
        workspace: workspace.clone(),
        gate_dir: session_dir.socket_dir.clone(),
        home: PathBuf::from(HOME),
        ro_paths,
        limits,
        allow_missing: waived,
        stdin_prefix: secrets_frame(&secrets),
    };
    // `moat stop` sends SIGTERM, a closed terminal SIGHUP: either ends the sandbox, and the
    // session is still recorded as ended. Ctrl-C is the agent's (`stop_on_signals`).
    let stop = moat_sandbox::Stop::new()?;

    // The sandbox starts now, before the gate is even found: its init builds it from the spec
    // while this thread finds the gate, opens the session and records its start, and runs
    // nothing of the agent before this thread admits and confirms the session through `door`.
    // Any error here drops `door`, which ends the sandbox unadmitted; it is waited for either
    // way.
    let (door, entry) = moat_sandbox::door()?;
    let terminal = moat_sandbox::TerminalModes::save();
    let quick_end = Arc::new(QuickEnd::default());
    let sandbox = SandboxThread::start(
        backend.clone(),
        spec.clone(),
        forked_init,
        stop.clone(),
        entry,
        Arc::clone(&quick_end),
    )?;
    let session_id = session.id.clone();
    let session_run = SessionRun {
        loaded,
        audit_store: &audit_store,
        args: &args,
        data_dir: &data_dir,
        session_dir: &mut session_dir,
        session,
        spec: &spec,
        backend: &backend,
        stop,
        quick_end,
        terminal: terminal.clone(),
    };
    let outcome = session_run.drive(door, sandbox.finished, sandbox.exited);
    // A sandbox that only the kernel still tears down (its init exiting) is not waited for;
    // its thread, waiting to reap the init, ends with this process.
    if !matches!(outcome, Ok((_, Teardown::Kernel))) {
        let _ = sandbox.thread.join();
    }
    if let Some(terminal) = terminal {
        terminal.restore();
    }
    drop(session_dir);
    let (outcome, _) = outcome?;
    if let Some(reason) = &outcome.reason {
        say!("moat: session {session_id} {reason}");
    }
    Ok(ExitCode::from(exit_code(&outcome)))
}

/// What `moat run` exits with: 124 when the timeout ended the session, as `timeout(1)` does
/// (whatever the agent did with its SIGTERM, a caller must not take the session as done),
/// otherwise the agent's code, or 128 + the signal that ended it, as a shell reports it.
fn exit_code(outcome: &moat_sandbox::Outcome) -> u8 {
    const TIMED_OUT: u8 = 124;
    if outcome.timed_out {
        return TIMED_OUT;
    }
    match (outcome.exit_code, outcome.signal) {
        (Some(code), _) => u8::try_from(code.clamp(0, 255)).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(1),
        (None, None) => 1,
    }
}

/// The session's directory, `<data-dir>/sessions/<id>/`, removed when dropped unless
/// [`SessionDir::left_to_gate`]. A gate of this process leaves it to `moat run`, and so does a
/// running gate that ended the session itself, or a session that never opened; one whose gate
/// died is left, with its session file, for a later gate to record its end.
/// A running gate that took the close removes it itself, once the end is on record: removing
/// it here as well raced with that removal (0.3 to 0.8 ms of `unlinkat`s at the end of
/// `moat run` in a system-call trace).
struct SessionDir {
    path: PathBuf,
    /// The directory in it the gate binds the session's socket in, which the sandbox mounts.
    socket_dir: PathBuf,
    remove: bool,
}

impl SessionDir {
    /// Creates the directory with the one the gate binds the session's socket in (mode 0700).
    fn create(data_dir: &Path, id: &str) -> anyhow::Result<SessionDir> {
        let path = moat_gate::control::session_dir(data_dir, id);
        let dir = SessionDir {
            socket_dir: moat_gate::control::session_socket_dir(&path),
            path,
            remove: true,
        };
        // The session's directory first (`sessions/` is there but for the first session), then
        // the socket's in it: two `mkdir`s, where creating the inner one first takes three.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder
            .create(&dir.path)
            .and_then(|()| builder.create(&dir.socket_dir))
            .map_err(|e| {
                UserError::new(format!("cannot create {}: {e}", dir.socket_dir.display()))
            })?;
        Ok(dir)
    }

    /// The running gate that served the session answered its close, and removes the
    /// directory; or it died, and a later gate records the end and removes it.
    fn left_to_gate(&mut self) {
        self.remove = false;
    }
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The thread that runs the sandbox: it blocks until the sandbox is gone (or the session was
/// not admitted) and hands the result over; the agent's exit is heard before that.
struct SandboxThread {
    thread: std::thread::JoinHandle<()>,
    /// The sandbox's result, once it is torn down.
    finished: tokio::sync::oneshot::Receiver<Result<Outcome, SandboxError>>,
    /// The agent's exit, as soon as nothing of the session is left, and what is left of the
    /// sandbox ([`moat_sandbox::OnExit`]).
    exited: tokio::sync::oneshot::Receiver<(Outcome, Teardown)>,
}

impl SandboxThread {
    fn start(
        backend: Backend,
        spec: Spec,
        forked_init: Option<moat_sandbox::InitProcess>,
        stop: moat_sandbox::Stop,
        entry: moat_sandbox::Entry,
        quick_end: Arc<QuickEnd>,
    ) -> anyhow::Result<Self> {
        let (done, finished) = tokio::sync::oneshot::channel();
        let (exit, exited) = tokio::sync::oneshot::channel();
        // A forked init gets its request from this thread, before the sandbox's thread is
        // started: the init is often waiting for it (the root it prepares meanwhile is ready
        // about when the request comes), and that thread wrote it 0.5 ms after it was started
        // (median of 150 traced sessions).
        let forked = match (&backend, forked_init) {
            (Backend::Embedded, Some(forked)) => Forked::Requested(moat_sandbox::request(
                &spec,
                moat_sandbox::Init::Forked(forked),
            )),
            (_, unused) => Forked::Unused(unused),
        };
        let thread = std::thread::Builder::new()
            .name("moat-sandbox".to_owned())
            .spawn(move || {
                let on_exit: moat_sandbox::OnExit<'static> = Box::new(move |outcome, teardown| {
                    // Ends this process when it can; else the session run goes on.
                    quick_end.agent_exited(outcome, teardown);
                    let _ = exit.send((outcome.clone(), teardown));
                });
                let result = match forked {
                    Forked::Requested(requested) => {
                        requested.and_then(|requested| requested.run(&stop, entry, on_exit))
                    }
                    // Podman starts the init itself inside the container; a forked one goes
                    // unused. Without one, the init is this program, executed.
                    Forked::Unused(unused) => {
                        drop(unused);
                        std::env::current_exe()
                            .map_err(SandboxError::Spawn)
                            .and_then(|init| {
                                moat_sandbox::run_backend_admitted(
                                    &backend, &spec, &init, &stop, entry, on_exit,
                                )
                            })
                    }
                };
                let _ = done.send(result);
            })?;
        Ok(Self {
            thread,
            finished,
            exited,
        })
    }
}

/// What becomes of the init `moat run` forked as it started.
#[allow(clippy::large_enum_variant)] // one per session, moved once into the sandbox's thread
enum Forked {
    /// The embedded backend's: it has its request (or could not be sent one).
    Requested(Result<moat_sandbox::Requested, SandboxError>),
    /// Another backend's, or none was forked.
    Unused(Option<moat_sandbox::InitProcess>),
}

/// One session from the gate's side: find the gate, open the session and record its start,
/// admit the sandbox, wait for the agent, record the end.
struct SessionRun<'a> {
    loaded: &'a Loaded,
    audit_store: &'a AuditStore,
    args: &'a RunArgs,
    data_dir: &'a Path,
    session_dir: &'a mut SessionDir,
    session: SessionContext,
    spec: &'a Spec,
    backend: &'a Backend,
    stop: moat_sandbox::Stop,
    quick_end: Arc<QuickEnd>,
    /// The terminal's modes before the session, which the quick end puts back.
    terminal: Option<moat_sandbox::TerminalModes>,
}

impl SessionRun<'_> {
    /// Returns the sandbox's outcome once the end is recorded (or handed to a running gate),
    /// and what is left of the sandbox: [`Teardown::Kernel`] when the run is not waited for.
    /// Returning early drops `door`, which ends a sandbox not yet admitted or confirmed.
    fn drive(
        self,
        door: moat_sandbox::Door,
        mut sandbox: tokio::sync::oneshot::Receiver<Result<Outcome, SandboxError>>,
        mut exited: tokio::sync::oneshot::Receiver<(Outcome, Teardown)>,
    ) -> anyhow::Result<(Outcome, Teardown)> {
        let Self {
            loaded,
            audit_store,
            args,
            data_dir,
            session_dir,
            session,
            spec,
            backend,
            stop,
            quick_end,
            terminal,
        } = self;
        let (runtime, mut gate) = session_gate(loaded, args, data_dir, audit_store)?;

        runtime.block_on(async move {
            let enforced = moat_sandbox::host_report().enforceable(spec);
            let start = SessionStart {
                time: jiff::Timestamp::now(),
                session: session.id.clone(),
                operator: session.operator.clone(),
                agent: session.agent.clone(),
                command: spec.command.clone(),
                workspace: spec.workspace.display().to_string(),
                read_only: spec
                    .ro_paths
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect(),
                backend: backend.name().to_owned(),
                // Filled in by the gate: the revision of the policy it decides with.
                policy: String::new(),
                host: host_name(),
                enforced,
                waived: spec.allow_missing.iter().map(|p| p.to_string()).collect(),
            };
            let running = gate.request_open(&session, &spec.gate_dir, start).await?;
            let gate_takes_the_file_end = running
                .as_ref()
                .is_some_and(|hello| hello.ends_from_session_file);
            let gate_port = running.map_or(GATE_PORT, |hello| {
                announce_running_gate(&hello, args, data_dir)
            });
            let public_url = format!("http://127.0.0.1:{gate_port}");
            let env = environment(&args.env, &public_url)?;
            let home_files = home_files(&public_url);
            let started = Instant::now();
            // The embedded backend's agent is in this process's group: a terminal's Ctrl-C
            // reaches it directly. A container's agent is not.
            moat_sandbox::stop_on_signals(&stop, *backend == Backend::Embedded)?;
            // The gate binds the session's socket in the session's socket directory, by name.
            let gate_socket = spec.gate_dir.join(moat_gate::control::SESSION_SOCKET);
            door.admit(Admission {
                gate_socket: gate_socket.clone(),
                gate_port,
                env,
                home_files,
            });
            // The quick end's keeper (see `Closing`), started while the gate records the
            // session's start, which this thread waits for anyway. Only a running gate that
            // takes the end from the session file allows a quick end.
            let keeper = gate_takes_the_file_end
                .then(|| moat_sandbox::keep_address_space(gate.connection().as_slice()).ok())
                .flatten();
            // The init prepares the agent's start while the gate records the session's start;
            // the agent starts once that is on record.
            gate.opened(&session, &gate_socket).await?;
            door.confirm();
            say!(
                "moat: session {} ({} for {}) in {}",
                session.id,
                session.agent,
                session.operator,
                spec.workspace.display()
            );
            // For `moat ps` and `moat stop`, once the agent is on its way.
            let session_file =
                SessionFile::for_this_process(&session, &spec.command, &spec.workspace)?;
            let written = session_file.write(&session_dir.path)?;
            // A running gate that takes the end from the session file when the connection
            // drops (an older one would record `moat run disconnected`).
            if gate_takes_the_file_end && let Ok(file) = written.try_clone() {
                quick_end.arm(Closing {
                    session: session.id.clone(),
                    record: session_file.clone(),
                    file,
                    terminal,
                    _keeper: keeper,
                });
            }
            // The agent's exit is heard before the sandbox's teardown when it exits on its
            // own (the end is recorded meanwhile), else with the sandbox's result. A running
            // gate that shuts down ends the session (and records its end): without the gate
            // the sandbox has no way out, so it stops too.
            let heard = tokio::select! {
                ended = agent_ended(&mut exited, &mut sandbox) => Ok(ended),
                recorded = gate.ended_by_gate() => Err(recorded),
            };
            // The agent's exit, heard meanwhile, is being handed over by the quick end, which
            // ends this process, or comes back with it.
            let heard = match heard {
                Err(_) if !quick_end.disarm() => Ok(agent_ended(&mut exited, &mut sandbox).await),
                heard => heard,
            };
            // `left`: heard early, what is left of the sandbox. `ended_by_gate`: the gate
            // ended the session, having recorded its end or not.
            let (result, left, ended_by_gate) = match heard {
                Ok((result, left)) => (result?, left, None),
                Err(recorded) => {
                    say!(
                        "moat: the gate closed session {}'s control connection (it stopped); stopping the sandbox",
                        session.id
                    );
                    stop.stop();
                    ((&mut sandbox).await?, None, Some(recorded))
                }
            };
            let end = match &result {
                Ok(outcome) => SessionEnd {
                    // Stopped because the gate went away: the record says so (a later gate
                    // records it when this one died), not just `stopped`.
                    reason: match ended_by_gate {
                        Some(_) => Some("stopped: its gate went away".to_owned()),
                        None => outcome.reason.clone(),
                    },
                    ..session_end(&session.id, outcome)
                },
                Err(err) => {
                    // A command that could not be started ends the session with the code the
                    // caller gets (127 or 126).
                    let (exit_code, reason) =
                        if let SandboxError::CommandNotStarted { code, .. } = err {
                            (Some(*code), err.to_string())
                        } else {
                            (None, format!("sandbox failed: {err}"))
                        };
                    SessionEnd {
                        time: jiff::Timestamp::now(),
                        session: session.id.clone(),
                        exit_code,
                        signal: None,
                        duration_ms: millis(started.elapsed()),
                        user_cpu_ms: 0,
                        system_cpu_ms: 0,
                        max_rss_kib: 0,
                        reason: Some(reason),
                    }
                }
            };
            let closed = match ended_by_gate {
                // The gate recorded the end as it stopped (and removed the session file).
                Some(true) => Ok(Closed::ByUs),
                Some(false) => Ok(Closed::NotRecorded),
                None => {
                    gate.close(end.clone(), &session_dir.path, (&session_file, &written))
                        .await
                }
            };
            // Heard early, the sandbox is still being torn down. When the run has work of its
            // own left, wait for that, and for its result, which is the outcome heard; when
            // only the kernel's is left (the init exiting), not.
            let result = match left {
                Some(Teardown::Run) => sandbox.await?,
                Some(Teardown::Kernel) | None => result,
            };
            match closed? {
                Closed::ByRunningGate => session_dir.left_to_gate(),
                Closed::ByUs => {}
                // The gate went away while the session ended, and may have recorded the end
                // before it died: the next gate looks before it records one.
                Closed::NotRecorded => match (SessionFile {
                    end_maybe_recorded: true,
                    end: Some(end),
                    ..session_file
                })
                // Written anew: the file may have been removed for a close that waits.
                .write(&session_dir.path)
                .map(drop)
                {
                    Ok(()) => {
                        session_dir.left_to_gate();
                        say!(
                            "moat: session {}'s end may not be on record (its gate died); the next gate on {} records it if it is not",
                            session.id,
                            data_dir.display()
                        );
                    }
                    Err(err) => say!(
                        "moat: warning: session {}'s end may not be on record (its gate died), and its file could not be kept for the next gate: {err}",
                        session.id
                    ),
                },
            }
            // Not heard early: the run has returned, and its thread is done.
            let left = left.unwrap_or(Teardown::Run);
            session_result(result).map(|outcome| (outcome, left))
        })
    }
}

/// The agent's exit as the sandbox reports it, once every process of the session is gone, and
/// what is left of the sandbox (`None`: nothing, the run returned; it returned without
/// hearing an exit when the session failed or was stopped).
async fn agent_ended(
    exited: &mut tokio::sync::oneshot::Receiver<(Outcome, Teardown)>,
    sandbox: &mut tokio::sync::oneshot::Receiver<Result<Outcome, SandboxError>>,
) -> (
    Result<Result<Outcome, SandboxError>, tokio::sync::oneshot::error::RecvError>,
    Option<Teardown>,
) {
    match exited.await {
        Ok((outcome, teardown)) => (Ok(Ok(outcome)), Some(teardown)),
        Err(_) => (sandbox.await, None),
    }
}

/// The record of a session's end with `outcome`, as it happened (its reason the outcome's).
fn session_end(session: &str, outcome: &Outcome) -> SessionEnd {
    SessionEnd {
        time: jiff::Timestamp::now(),
        session: session.to_owned(),
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        duration_ms: millis(outcome.duration),
        user_cpu_ms: millis(outcome.usage.user_cpu),
        system_cpu_ms: millis(outcome.usage.system_cpu),
        max_rss_kib: outcome.usage.max_rss_kib,
        reason: outcome.reason.clone(),
    }
}

/// The end of a session whose agent exited on its own, with a running gate and only the
/// kernel's teardown left (the common case), done by the thread that hears the exit (the
/// sandbox's thread, which reads its init's reports as it waits for it), which then ends this
/// process: the end written into the session file, the terminal's modes put back, exit with
/// the agent's status. The control connection closes with the process, and the gate records
/// the end the file holds (`moat_gate::control`). The thread that drives the session is not
/// woken for that, and the process does not wait for its runtime to wind down; telling the
/// gate on the connection first let the gate's woken thread preempt this one on its CPU
/// before it exited (0.13 ms in a trace; BENCHMARKS.md, sandbox notes of 2026-12-02, for what
/// the whole change measured).
///
/// Armed by [`SessionRun::drive`] once the session file is written. Whichever comes first takes
/// it: the agent's exit ([`QuickEnd::agent_exited`]), or the drive acting on something else (the
/// gate ending the session; [`QuickEnd::disarm`]). A quick end whose file cannot be written
/// leaves the end to the drive, as if there were none.
#[derive(Default)]
struct QuickEnd(std::sync::Mutex<QuickState>);

#[derive(Default)]
enum QuickState {
    #[default]
    Unarmed,
    Armed(Box<Closing>),
    Taken,
}

/// What the quick end needs of the session.
struct Closing {
    session: String,
    /// The session file as written, and the file (see [`SessionFile::write_over`]).
    record: SessionFile,
    file: std::fs::File,
    terminal: Option<moat_sandbox::TerminalModes>,
    /// Holds this process's memory while it exits, and the connection to the gate: the caller
    /// hears the exit before the unmapping, and the gate, woken by the connection's end, does
    /// not take the exiting process's CPU ([`moat_sandbox::keep_address_space`]).
    _keeper: Option<moat_sandbox::AddressSpaceKeeper>,
}

impl QuickEnd {
    fn arm(&self, closing: Closing) {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if matches!(*state, QuickState::Unarmed) {
            *state = QuickState::Armed(Box::new(closing));
        }
    }

    /// Takes it: what it held when armed, and whether it was there to take (not taken yet).
    fn take(&self) -> (Option<Box<Closing>>, bool) {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match std::mem::replace(&mut *state, QuickState::Taken) {
            QuickState::Armed(closing) => (Some(closing), true),
            QuickState::Unarmed => (None, true),
            QuickState::Taken => (None, false),
        }
    }

    /// The drive acts on its own: no quick end from now on. False when the agent's exit took it
    /// first.
    fn disarm(&self) -> bool {
        self.take().1
    }

    /// Heard from the sandbox: ends this process when the agent exited on its own and only the
    /// kernel's teardown is left; returns otherwise (or when the quick end fails).
    fn agent_exited(&self, outcome: &Outcome, teardown: Teardown) {
        let (Some(closing), _) = self.take() else {
            return;
        };
        if teardown != Teardown::Kernel || outcome.reason.is_some() {
            return;
        }
        let end = session_end(&closing.session, outcome);
        let record = SessionFile {
            end: Some(end.clone()),
            ..closing.record
        };
        if record.write_over(&closing.file).is_err() {
            return;
        }
        if let Some(terminal) = &closing.terminal {
            terminal.restore();
        }
        // Nothing is left to flush (moat run writes nothing to stdout), and every other thread
        // is waiting: no clean-up to run.
        moat_sandbox::exit_now(i32::from(exit_code(outcome)));
    }
}

/// The session's result as `moat run` reports it. A command that could not be started in the
/// sandbox is the user's to fix: it says where the sandbox looks, and `moat run` exits as a shell
/// would (127 not found, 126 not executable).
fn session_result(result: Result<Outcome, SandboxError>) -> anyhow::Result<Outcome> {
    match result {
        Err(SandboxError::CommandNotStarted {
            program,
            error,
            code,
        }) => {
            let hint = if code == 127 {
                format!(
                    "the command is looked up on the sandbox's PATH ({AGENT_PATH} unless --env \
                     sets it), and the sandbox shows only /usr, the workspace and the --ro \
                     paths: for a command installed elsewhere (e.g. ~/.local/bin), add `--ro \
                     DIR` and run it by its full path"
                )
            } else {
                "the file is there but cannot be executed in the sandbox: check its mode and its \
                 `#!` line, and that it lies under /usr, the workspace or a --ro path"
                    .to_owned()
            };
            Err(
                UserError::new(format!("could not start {program} in the sandbox: {error}"))
                    .hint(hint)
                    .exit_code(u8::try_from(code).unwrap_or(1))
                    .into(),
            )
        }
        other => Ok(other?),
    }
}

/// The gate that serves a session: a running `moat gate` on the same data directory (reached
/// through its control socket), or one of the session's own, in this process.
enum SessionGate {
    /// A `moat gate` process serves the session and records its start and end.
    Running(ControlClient),
    /// This process serves the session and writes the audit log itself.
    InProcess {
        gate: Arc<Gate>,
        audit: AuditLog,
        policy: String,
        /// The session listener's stop switch and accept loop, once opened.
        server: Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<std::io::Result<()>>,
        )>,
    },
}

/// Use the gate that serves `data_dir` when one runs; otherwise load the sources and build a
/// gate for this session. Returns the runtime to drive the session on and the gate; the port
/// the sandbox reaches it at comes with the session's open ([`SessionGate::open`]).
///
/// With a running gate this process only talks on the control connection and waits for the
/// sandbox: one thread does that (a multi-threaded runtime's start-up and cross-thread wake-ups
/// cost each session about a millisecond here). A gate of the session's own serves on a
/// multi-threaded one.
fn session_gate(
    loaded: &Loaded,
    args: &RunArgs,
    data_dir: &Path,
    audit_store: &AuditStore,
) -> anyhow::Result<(tokio::runtime::Runtime, SessionGate)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let control = data_dir.join(moat_gate::CONTROL_SOCKET);
    let running = runtime
        .block_on(ControlClient::connect(&control))
        .map_err(|e| {
            UserError::new(format!(
                "a gate answers on {} but cannot serve this session: {e}",
                control.display()
            ))
            .hint(
                "stop that gate (or fix it) and run again: a second gate on one data directory \
                 would be a second audit writer",
            )
        })?;
    if let Some(client) = running {
        return Ok((runtime, SessionGate::Running(client)));
    }
    drop(runtime);
    let runtime = super::runtime()?;
    let sources = Sources::load(loaded, &args.sources, data_dir)?;
    let policy = sources.policy.revision().to_owned();
    let audit = audit_store.open().map_err(|e| {
        UserError::new(format!("cannot open the audit log: {e}"))
            .hint("a session is recorded before it starts; it will not start without its log")
    })?;
    // No gate runs here: no session is held open by one.
    for id in runtime.block_on(end_abandoned_sessions(data_dir, &audit, |_| false)) {
        say!(
            "moat: recorded the end of session {id}, whose moat run or gate died without recording it"
        );
    }
    let config = GateConfig {
        llm_keys: super::gate::llm_keys(),
        llm_upstream: super::gate::llm_upstream(&args.llm),
        upstream: super::gate::upstream_config(&sources),
        ..GateConfig::new(format!("http://127.0.0.1:{GATE_PORT}"), data_dir)
    };
    let gate = {
        let _runtime = runtime.enter();
        Gate::new(
            config,
            sources.policy,
            sources.advisories,
            sources.popular,
            audit.clone(),
        )?
    };
    let gate = SessionGate::InProcess {
        gate: Arc::new(gate),
        audit,
        policy,
        server: None,
    };
    Ok((runtime, gate))
}

/// Says which running gate serves the session, and what of this command line it ignores;
/// returns the port the sandbox reaches the gate at.
fn announce_running_gate(
    hello: &moat_gate::control::Hello,
    args: &RunArgs,
    data_dir: &Path,
) -> u16 {
    say!(
        "moat: using the running gate (pid {}, {}) that serves {}",
        hello.pid,
        hello.public_url,
        data_dir.display()
    );
    let ignored = ignored_flags(args);
    if !ignored.is_empty() {
        say!(
            "moat: warning: {} ignored: the running gate's policy, advisories and upstreams apply",
            ignored.join(", ")
        );
    }
    if ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
    {
        say!(
            "moat: note: the LLM pass-through uses the API keys of the running gate's environment, not this one's"
        );
    }
    sandbox_port(&hello.public_url).unwrap_or_else(|| {
        say!(
            "moat: warning: the running gate's public URL {} is not http://127.0.0.1:PORT; \
             the sandbox reaches the gate at 127.0.0.1:{GATE_PORT}, and URLs the gate \
             rewrites (tarballs, why links) may not resolve inside",
            hello.public_url
        );
        GATE_PORT
    })
}

impl SessionGate {
    /// The connection to a running gate, whose end is the session's end.
    fn connection(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            SessionGate::Running(client) => Some(client.connection()),
            SessionGate::InProcess { .. } => None,
        }
    }

    /// Asks the gate to serve the session and record its start, with the revision of the
    /// policy the gate decides with. Returns a running gate's hello, which comes before its
    /// answer ([`opened`](Self::opened)): its public URL gives the port the sandbox reaches it
    /// at (a gate of this process is at [`GATE_PORT`], and opens the session at once). A gate
    /// of this process binds the socket in `socket_dir`; a running gate binds it in the same
    /// directory, which it finds itself.
    async fn request_open(
        &mut self,
        session: &SessionContext,
        socket_dir: &Path,
        start: SessionStart,
    ) -> anyhow::Result<Option<moat_gate::control::Hello>> {
        match self {
            SessionGate::Running(client) => {
                let hello = client.request_open(session, start).await.map_err(|e| {
                    UserError::new(format!("the running gate did not open the session: {e}"))
                })?;
                Ok(Some(hello.clone()))
            }
            SessionGate::InProcess {
                gate,
                audit,
                policy,
                server,
            } => {
                let mut start = start;
                start.policy = policy.clone();
                let socket = socket_dir.join(moat_gate::control::SESSION_SOCKET);
                let listener = moat_gate::control::bind_unix(&socket).map_err(|e| {
                    UserError::new(format!("cannot listen on {}: {e}", socket.display()))
                })?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let served = tokio::spawn(moat_gate::serve_unix(
                    listener,
                    Arc::clone(gate),
                    session.clone(),
                    async move {
                        let _ = stopped.await;
                    },
                ));
                *server = Some((stop, served));
                audit.append(Event::SessionStart(start)).await?;
                Ok(None)
            }
        }
    }

    /// Returns once the gate has the session's start on record, serving it at `socket`, where
    /// the sandbox looks for it (a gate of this process does, and has it on record already).
    async fn opened(&mut self, session: &SessionContext, socket: &Path) -> anyhow::Result<()> {
        let SessionGate::Running(client) = self else {
            return Ok(());
        };
        let opened = client.opened().await.map_err(|e| {
            UserError::new(format!("the running gate did not open the session: {e}"))
        })?;
        if opened.socket != socket {
            return Err(UserError::new(format!(
                "the gate serves session {} at {}, not at {}",
                session.id,
                opened.socket.display(),
                socket.display()
            ))
            .hint("is the running gate an older moat? restart it")
            .into());
        }
        Ok(())
    }

    /// Resolves when a running gate ends the session on its own: true when it recorded the
    /// end (it shut down), false when it died. Never for a gate in this process.
    async fn ended_by_gate(&mut self) -> bool {
        match self {
            SessionGate::Running(client) => client.ended_by_gate().await,
            SessionGate::InProcess { .. } => std::future::pending().await,
        }
    }

    /// Record the session's end and stop serving it. `dir` is the session's directory, with
    /// its session `file` as written, and open.
    ///
    /// A running gate is handed the end, unanswered: `moat run` returns the agent's status
    /// while the gate records the end (waiting for its answer, after the end's `fdatasync`,
    /// took 1.25 ms after the agent's exit in single-session traces here). The session file
    /// holds the end first, and the gate removes it with the directory once the end is on
    /// record; a gate that dies before leaves the end to the next one, and readers of the log
    /// wait for it (`session_file::settle`). When the file cannot hold the end, `moat run`
    /// waits for the record instead.
    async fn close(
        self,
        end: SessionEnd,
        dir: &Path,
        (file, written): (&SessionFile, &std::fs::File),
    ) -> anyhow::Result<Closed> {
        match self {
            SessionGate::Running(client) => {
                let held = SessionFile {
                    end: Some(end.clone()),
                    ..file.clone()
                }
                .write_over(written);
                let closed = match held {
                    Ok(()) => client.hand_over(end).await,
                    Err(err) => {
                        say!(
                            "moat: warning: cannot write the session's end into {} ({err}); waiting for the gate to record it",
                            dir.display()
                        );
                        // Whoever records the end removes the session file first (a file
                        // left means no end: `end_abandoned_sessions`).
                        remove_session_file(dir);
                        client.close(end).await
                    }
                };
                Self::closed_by_running_gate(closed)
            }
            SessionGate::InProcess { audit, server, .. } => {
                remove_session_file(dir);
                // The session's counted repeats go on record before its end.
                let recorded = match audit.flush_repeats().await {
                    Ok(()) => audit.append(Event::SessionEnd(end)).await,
                    Err(err) => Err(err),
                };
                if let Some((stop, served)) = server {
                    let _ = stop.send(());
                    let _ = served.await;
                }
                audit.shutdown().await;
                recorded?;
                Ok(Closed::ByUs)
            }
        }
    }

    /// What a running gate's taking of the close (or answer to it) means for the session's
    /// directory.
    fn closed_by_running_gate(
        closed: Result<(), moat_gate::ControlError>,
    ) -> anyhow::Result<Closed> {
        match closed {
            Ok(()) => Ok(Closed::ByRunningGate),
            Err(e @ moat_gate::ControlError::Refused(_)) => Err(UserError::new(format!(
                "the running gate did not record the session end: {e}"
            ))
            .into()),
            Err(moat_gate::ControlError::EndedByGate(reason)) => {
                say!(
                    "moat: the running gate stopped before it answered the session's close; it recorded the end itself ({reason})"
                );
                Ok(Closed::ByUs)
            }
            Err(e) => {
                say!("moat: warning: the running gate went away as the session ended ({e})");
                Ok(Closed::NotRecorded)
            }
        }
    }
}

/// Who removes the session's directory once the session is closed ([`SessionDir`]).
#[derive(Debug, PartialEq, Eq)]
enum Closed {
    /// The running gate took the close (or answered it), and removes the directory once the
    /// end is on record.
    ByRunningGate,
    /// `moat run` removes it: the gate is this process's, or the running gate recorded the end
    /// as it stopped.
    ByUs,
    /// The running gate went away while the session ended, perhaps after recording the end: the
    /// directory and its session file stay for a later gate, which records the end unless the
    /// log has it (`end_abandoned_sessions`) and removes them.
    NotRecorded,
}

/// The flags a running gate does not take from `moat run`.
fn ignored_flags(args: &RunArgs) -> Vec<&'static str> {
    let sources = &args.sources;
    [
        ("--advisories", sources.advisories.is_some()),
        ("--popular", sources.popular.is_some()),
        ("--policy", sources.policy.is_some()),
        ("--upstream-npm", sources.upstream_npm.is_some()),
        ("--upstream-pypi", sources.upstream_pypi.is_some()),
        ("--upstream-crates", sources.upstream_crates.is_some()),
        ("--upstream-timeout", sources.upstream_timeout.is_some()),
        (
            "--upstream-anthropic",
            args.llm.upstream_anthropic.is_some(),
        ),
        ("--upstream-openai", args.llm.upstream_openai.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect()
}

/// The port a running gate's public URL names, when the sandbox can reach it there: an
/// `http://127.0.0.1:PORT` (or `localhost`) URL. The gate writes that URL into the metadata it
/// rewrites, so the sandbox must answer at the same address.
fn sandbox_port(public_url: &str) -> Option<u16> {
    let url = reqwest::Url::parse(public_url).ok()?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost"));
    (url.scheme() == "http" && loopback)
        .then(|| url.port_or_known_default())
        .flatten()
}

/// The workspace: the given directory or the current one, which must exist.
fn workspace(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir.to_owned(),
        None => std::env::current_dir()?,
    };
    dir.canonicalize().map_err(|e| {
        UserError::new(format!("workspace {}: {e}", dir.display()))
            .hint("pass an existing directory with --workspace DIR")
            .into()
    })
}

/// The `--ro` paths as the sandbox binds them: resolved as the host sees them (absolute,
/// symlinks followed). The sandbox's init mounts them by path once the host's root is under
/// another root, where an absolute symlink would lead elsewhere.
fn read_only_paths(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    given
        .iter()
        .map(|path| {
            path.canonicalize().map_err(|e| {
                UserError::new(format!("--ro {}: {e}", path.display()))
                    .hint("pass an existing file or directory of this host")
                    .into()
            })
        })
        .collect()
}

/// Refuses a session that would show the agent moat's own state: the data directory (the
/// artifact cache, the sessions' sockets and, by default, the audit log and its key), and the
/// audit log and its signing key wherever they are. Under the workspace, which the agent may
/// write, it could rewrite the log and sign with the key; under a `--ro` path it could still
/// read the key, and sign checkpoints of a log it forged.
fn keep_moat_state_out(
    workspace: &Path,
    ro_paths: &[PathBuf],
    data_dir: &Path,
    audit: &AuditStore,
) -> anyhow::Result<()> {
    let mut protected = vec![("data directory", data_dir.to_path_buf())];
    protected.extend(audit.protected_files());
    let shown = std::iter::once(("the workspace", workspace))
        .chain(ro_paths.iter().map(|path| ("--ro", path.as_path())));
    for (label, shown) in shown {
        for (what, path) in &protected {
            let relation = if path.starts_with(shown) {
                "would show the agent"
            } else if shown.starts_with(path) {
                "lies inside"
            } else {
                continue;
            };
            return Err(UserError::new(format!(
                "{label} {} {relation} moat's {what} ({})",
                shown.display(),
                path.display()
            ))
            .hint(
                "give the agent a directory of its own (--workspace DIR, a project directory), \
                 or keep moat's data, audit log and key elsewhere (--data-dir, --audit-store)",
            )
            .into());
        }
    }
    Ok(())
}

/// The agent's `PATH`, unless `--env` sets another.
const AGENT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The agent's whole environment: nothing is inherited from the host but the terminal type.
fn environment(extra: &[String], gate: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = [
        ("PATH", AGENT_PATH),
        ("HOME", HOME),
        ("USER", "agent"),
        ("LANG", "C.UTF-8"),
        ("NO_PROXY", "127.0.0.1,localhost"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Ok(term) = std::env::var("TERM") {
        env.push(("TERM".to_owned(), term));
    }
    for (name, value) in [
        ("HTTP_PROXY", gate.to_owned()),
        ("HTTPS_PROXY", gate.to_owned()),
        ("http_proxy", gate.to_owned()),
        ("https_proxy", gate.to_owned()),
        ("no_proxy", "127.0.0.1,localhost".to_owned()),
        ("npm_config_registry", format!("{gate}/npm/")),
        ("PIP_INDEX_URL", format!("{gate}/pypi/simple/")),
        ("UV_INDEX_URL", format!("{gate}/pypi/simple/")),
        ("ANTHROPIC_BASE_URL", format!("{gate}/llm/anthropic")),
        ("OPENAI_BASE_URL", format!("{gate}/llm/openai/v1")),
        // Placeholders, not keys: SDKs and agent CLIs refuse to start without a key variable;
        // the gate drops whatever key header arrives and adds the real one on the host side.
        ("ANTHROPIC_API_KEY", LLM_KEY_PLACEHOLDER.to_owned()),
        ("OPENAI_API_KEY", LLM_KEY_PLACEHOLDER.to_owned()),
    ] {
        env.push((name.to_owned(), value));
    }
    for pair in extra {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(UserError::new(format!("--env {pair}: expected NAME=VALUE")).into());
        };
        env.retain(|(existing, _)| existing != name);
        env.push((name.to_owned(), value.to_owned()));
    }
    Ok(env)
}

/// Client configuration written into the sandbox's `$HOME`: every ordinary client goes
/// through the gate with no agent cooperation.
fn home_files(gate: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let files = [
        (
            ".npmrc",
            format!("registry={gate}/npm/\nfund=false\naudit=false\nupdate-notifier=false\n"),
        ),
        (
            ".config/pip/pip.conf",
            format!(
                "[global]\nindex-url = {gate}/pypi/simple/\ndisable-pip-version-check = true\n"
            ),
        ),
        (
            ".config/uv/uv.toml",
            format!("[[index]]\nurl = \"{gate}/pypi/simple/\"\ndefault = true\n"),
        ),
        (
            ".cargo/config.toml",
            format!(
                "[source.crates-io]\nreplace-with = \"moat\"\n\n[source.moat]\nregistry = \"sparse+{gate}/crates/index/\"\n\n[http]\nproxy = \"\"\n"
            ),
        ),
    ];
    files
        .into_iter()
        .map(|(path, text)| (PathBuf::from(path), text.into_bytes()))
        .collect()
}

/// `NAME` → value from the host environment; `NAME=@FILE` → the file's contents (trailing
/// newline removed). Never from argv.
fn read_secrets(specs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    specs
        .iter()
        .map(|spec| {
            let (name, value) = match spec.split_once("=@") {
                Some((name, file)) => {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        UserError::new(format!("secret {name}: cannot read {file}: {e}"))
                    })?;
                    (name, text.trim_end_matches(['\r', '\n']).to_owned())
                }
                None if spec.contains('=') => {
                    return Err(UserError::new(format!(
                        "--secret {}: a value on the command line would be visible to every user",
                        spec.split('=').next().unwrap_or(spec)
                    ))
                    .hint("pass --secret NAME (read from the environment) or --secret NAME=@FILE")
                    .into());
                }
                None => {
                    let value = std::env::var(spec).map_err(|_| {
                        UserError::new(format!("secret {spec}: not set in the environment"))
                            .hint("export it, or pass --secret NAME=@FILE")
                    })?;
                    (spec.as_str(), value)
                }
            };
            Ok((name.to_owned(), value))
        })
        .collect()
}

/// The framed secrets line for the agent's stdin: `MOAT-SECRETS {"NAME":"value",…}\n`.
fn secrets_frame(secrets: &[(String, String)]) -> Option<Vec<u8>> {
    if secrets.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = secrets
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut frame = b"MOAT-SECRETS ".to_vec();
    frame.extend(serde_json::to_vec(&map).unwrap_or_default());
    frame.push(b'\n');
    Some(frame)
}

/// `2G`, `512M`, `64k`, `1000000` → bytes.
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let scale: u64 = match unit.to_ascii_lowercase().trim_end_matches(['b', 'i']) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => {
            return Err(UserError::new(format!("--memory {text}: unknown unit"))
                .hint("use a number of bytes or a size like 512M or 2G")
                .into());
        }
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| UserError::new(format!("--memory {text}: not a size")))?;
    value
        .checked_mul(scale)
        .ok_or_else(|| UserError::new(format!("--memory {text}: too large")).into())
}

/// 16 hex characters from the kernel's random source.
fn new_session_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(hex::encode(bytes))
}

fn agent_name(command: &[String]) -> String {
    command
        .first()
        .map(|program| {
            Path::new(program)
                .file_name()
                .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "agent".to_owned())
}

/// The operator when `--operator` is not given: the name of the user this process runs as, from
/// `/etc/passwd` (so that a service or cron job, which has no `$USER`, is still named), else
/// `$USER` or `$LOGNAME`, else `uid N`.
fn host_user() -> String {
    let uid = rustix::process::getuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| user_name(&passwd, uid))
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The name `passwd` (the text of `/etc/passwd`) gives `uid`.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_named_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# a comment\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 1001), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("2T").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn secrets_never_come_from_argv() {
        assert!(read_secrets(&["TOKEN=abc".to_owned()]).is_err());
        let frame = secrets_frame(&[("TOKEN".to_owned(), "s3cr3t".to_owned())]).unwrap();
        assert_eq!(frame, b"MOAT-SECRETS {\"TOKEN\":\"s3cr3t\"}\n");
        assert_eq!(secrets_frame(&[]), None);
    }

    #[test]
    fn environment_points_every_client_at_the_gate() {
        let env = environment(&["EXTRA=1".to_owned()], "http://127.0.0.1:7070").unwrap();
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:7070"));
        assert_eq!(
            get("PIP_INDEX_URL"),
            Some("http://127.0.0.1:7070/pypi/simple/")
        );
        assert_eq!(get("EXTRA"), Some("1"));
        assert_eq!(get("ANTHROPIC_API_KEY"), Some(LLM_KEY_PLACEHOLDER));
        assert!(environment(&["NOVALUE".to_owned()], "x").is_err());
    }
}
