//! The control socket of a long-running gate: `moat run` asks the gate that already serves a
//! data directory to serve its session, so that one process (and one audit writer) holds the
//! data directory.
//!
//! The socket is `<data-dir>/gate.ctl` (mode 0600; connections from another user are
//! refused). One connection per session, newline-delimited JSON:
//!
//! 1. gate → client, on connect: [`Hello`] (`{"moat":"gate","pid":…,"public_url":…,"policy":…}`);
//! 2. client → gate: `{"op":"open","session":{"id","agent","operator"},"start":<SessionStart>}`,
//!    which a client may send before it has read the hello (`moat run` does: one round trip
//!    less before its agent starts).
//!    The gate binds `<data-dir>/sessions/<id>/sandbox/gate.sock`, appends the `session-start`
//!    event (with its own policy revision: the one it decides with), serves the socket with the
//!    session's identity, and answers [`Reply`] `{"ok":true,"socket":…,"policy":…}` or
//!    `{"ok":false,"error":…}` (then closes the connection);
//! 3. client → gate: `{"op":"close","end":<SessionEnd>}`. The gate stops the session's
//!    listener (open connections drain), appends the `session-end` event, answers
//!    `{"ok":true}`, then removes `sessions/<id>/` (the client leaves that to the gate).
//!    With `"handed_over":true` the gate does not answer: the client has written the end into
//!    its session file ([`crate::session_file::SessionFile::end`]) first and may be gone. The
//!    gate removes the file only with the session's directory, once the end is on record, so
//!    that a gate that dies first (or cannot write) leaves the end to the next sweep. `moat
//!    run` closes so: its caller has the agent's exit status without waiting for a round trip
//!    and the end's `fdatasync`. A reader of the log waits for such ends
//!    ([`crate::session_file::settle`]);
//! 4. gate → client, unasked: `{"ok":false,"ended":<reason>}` when the gate ended the session
//!    itself (it is shutting down) and recorded that end, before it closes the connection.
//!
//! When the connection drops without a close, the end in the session's file is handed over (a
//! `moat run` that wrote it there and exited at once: its quick end); without one (`moat run`
//! crashed or was killed), the gate ends the session itself with the reason `moat run
//! disconnected`. When the gate shuts down with
//! sessions open, it ends each with `gate stopped` and closes their connections, which tells
//! `moat run` to stop its sandbox. Either way every recorded start has its end, and the end is
//! the session's last event. A gate that ends a session itself tells `moat run` so
//! (`{"ended":…}`); a connection that just ends means the gate died, and the session's end
//! is then recorded by the next gate ([`crate::session_file`]), as it is for a `moat run`
//! killed outright with a gate of its own.
//!
//! [`ControlClient`] is the `moat run` side.

use std::collections::HashSet;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moat_audit::{Event, SessionEnd, SessionStart};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

use crate::session_file::{SessionFile, end_abandoned_sessions, remove_session_dir};
use crate::{Gate, SessionContext};

/// The control socket's file name in the data directory.
pub const CONTROL_SOCKET: &str = "gate.ctl";
/// A session's socket file name, in the session's [`session_socket_dir`].
pub const SESSION_SOCKET: &str = "gate.sock";

/// The directory of the sessions' directories, `<data-dir>/sessions/`, resolved when it is a
/// symlink: the sandbox mounts a session's socket directory by its path, and its init, which
/// sees the host's root under another root by then, cannot follow an absolute symlink in it.
pub fn sessions_dir(data_dir: &Path) -> PathBuf {
    let dir = data_dir.join("sessions");
    dir.canonicalize().unwrap_or(dir)
}

/// A session's directory, `<data-dir>/sessions/<id>/` (see [`sessions_dir`]): the gate removes
/// it when the session ends.
pub fn session_dir(data_dir: &Path, id: &str) -> PathBuf {
    sessions_dir(data_dir).join(id)
}

/// The directory in a session's directory that the gate binds the session's socket
/// ([`SESSION_SOCKET`]) in: `<session-dir>/sandbox/`. It holds nothing else, because the
/// session's sandbox mounts it: `moat run` creates it before the session opens, and its
/// embedded sandbox shows it to the agent (read-only, at `/run/moat`) before the gate has bound
/// the socket.
pub fn session_socket_dir(session_dir: &Path) -> PathBuf {
    session_dir.join("sandbox")
}

/// The longest path a unix socket address holds (`sun_path` is 108 bytes with its NUL).
const SOCKET_ADDRESS_MAX: usize = 107;

/// Runs `act` (a bind or a connect) with an address for the unix socket at `path`: `path`
/// itself when it fits a socket address, else `/proc/self/fd/N/NAME`, `N` a descriptor of the
/// socket's directory, open while `act` runs. The same socket either way; a data directory deep
/// in the file system makes a session's socket path longer than an address holds
/// (`path must be shorter than SUN_LEN`).
pub fn at_socket_address<T>(
    path: &Path,
    act: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    if path.as_os_str().len() <= SOCKET_ADDRESS_MAX {
        return act(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return act(path);
    };
    let dir = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    act(&short)
}

/// A listening unix socket for a tokio runtime, bound at `path` ([`at_socket_address`]). Call
/// within a tokio runtime.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    let listener = at_socket_address(path, |address| {
        std::os::unix::net::UnixListener::bind(address)
    })?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// A connection to the unix socket at `path` ([`at_socket_address`]); its error says why none
/// was made (no socket, a stale one, …).
pub fn connect_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    at_socket_address(path, |address| {
        std::os::unix::net::UnixStream::connect(address)
    })
}

/// The longest message line either side accepts.
const MAX_MESSAGE: u64 = 64 * 1024;
/// How long a client may take to send its `open` (and to answer the hello).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `moat run` waits for the gate's hello and for each answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The gate's first line on every control connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// Always `gate`.
    pub moat: String,
    /// The gate's process id.
    pub pid: u32,
    /// The URL the gate writes into rewritten metadata (tarball URLs, `why` links); a session
    /// must reach the gate at this address.
    pub public_url: String,
    /// The revision of the policy the gate decides with.
    pub policy: String,
    /// The gate records the end a session's file holds when the session's connection drops
    /// without a close, so that `moat run` may write the end there and exit at once. Absent
    /// (false) from a gate that predates this.
    #[serde(default)]
    pub ends_from_session_file: bool,
}

/// What the client asks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Serve this session and record its start.
    Open {
        session: SessionContext,
        start: Box<SessionStart>,
    },
    /// Record the session's end and stop serving it.
    Close {
        end: SessionEnd,
        /// The end is in the session's file too, and the client does not wait for an answer.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        handed_over: bool,
    },
}

/// The gate's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub ok: bool,
    /// The session's socket (answer to `open`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// The policy revision recorded in the session start (answer to `open`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Sent unasked (or instead of the answer to a close) when the gate ended the session
    /// itself, shutting down: the end it recorded has this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

impl Reply {
    fn ok() -> Reply {
        Reply {
            ok: true,
            ..Reply::default()
        }
    }

    fn failed(error: impl Into<String>) -> Reply {
        Reply {
            error: Some(error.into()),
            ..Reply::default()
        }
    }
}

/// A control-socket failure, on either side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Another live gate already answers on the control socket.
    #[error("another moat gate already serves this data directory (it answers on {0})")]
    InUse(PathBuf),
    /// The socket could not be bound, connected, read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The other side said something this side does not understand, or nothing in time.
    #[error("control protocol: {0}")]
    Protocol(String),
    /// The gate refused the request.
    #[error("{0}")]
    Refused(String),
    /// The gate closed the connection.
    #[error("the gate closed the control connection")]
    Closed,
    /// The gate ended the session itself (it is shutting down) and recorded that end.
    #[error("the gate ended the session itself and recorded its end ({0})")]
    EndedByGate(String),
}

/// Bind the control socket at `path` (`<data-dir>/gate.ctl`), mode 0600. A file left there by
/// a gate that no longer runs (nothing answers on it) is removed first; a live gate's is left
/// alone ([`ControlError::InUse`]). Call within a tokio runtime.
pub fn bind_control(path: &Path) -> Result<ControlSocket, ControlError> {
    match connect_unix(path) {
        Ok(_) => return Err(ControlError::InUse(path.to_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)?;
        }
        Err(err) => {
            return Err(ControlError::Io(std::io::Error::new(
                err.kind(),
                format!("{}: {err}", path.display()),
            )));
        }
    }
    let listener = bind_unix(path).map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot bind {}: {err}", path.display()))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(ControlSocket {
        listener,
        path: path.to_owned(),
    })
}

/// The bound control socket ([`bind_control`]), for [`serve_control`].
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    /// Where it is (its address may be a shorter `/proc/self/fd/…` one).
    path: PathBuf,
}

/// Serve the control socket until `shutdown` completes: each connection may open one session
/// on `gate` (see the module documentation). On shutdown, sessions still open are ended
/// (`gate stopped`) and their listeners stopped; then the socket file is removed.
pub async fn serve_control(
    control: ControlSocket,
    gate: Arc<Gate>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ControlSocket { listener, path } = control;
    // Only the user the gate runs as may open sessions (the socket's mode says so too).
    let owner = std::fs::metadata(&path)?.uid();
    let active: Active = Arc::default();
    let protected = protected_state(&gate);
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let sweeper = tokio::spawn(sweep_abandoned_sessions(
        Arc::clone(&gate),
        Arc::clone(&active),
    ));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == owner => {}
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), "control socket: refused another user");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "control socket: no peer credentials");
                continue;
            }
        }
        let connection = Connection {
            gate: Arc::clone(&gate),
            active: Arc::clone(&active),
            protected: Arc::clone(&protected),
            stopped: stopped.clone(),
        };
        connections.spawn(connection.serve(stream));
    }
    drop(listener);
    sweeper.abort();
    let _ = stop.send(true);
    // Each open session drains its listener (bounded by the shutdown timeout) and records its
    // end; give them that long, plus time to write.
    let grace = gate.config.limits.shutdown_timeout + Duration::from_secs(5);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("control socket: sessions did not end in time");
        connections.abort_all();
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// How often a running gate looks for sessions left without an end.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Records the ends of sessions left without one ([`end_abandoned_sessions`]), now and every
/// [`SWEEP_INTERVAL`]: a `moat run` that was still stopping its sandbox when the gate before
/// this one died is abandoned only once it has exited. The sessions this gate holds (`active`)
/// are its own to end, including those whose `moat run` has gone after handing over the end.
async fn sweep_abandoned_sessions(gate: Arc<Gate>, active: Active) {
    let mut every = tokio::time::interval(SWEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let held = |id: &str| {
        active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    };
    loop {
        every.tick().await;
        end_abandoned_sessions(&gate.config.data_dir, &gate.audit, held).await;
    }
}

/// Session ids open on this gate: from the open until the end is on record.
type Active = Arc<Mutex<HashSet<String>>>;

/// One control connection.
struct Connection {
    gate: Arc<Gate>,
    active: Active,
    /// What no session may show its agent ([`protected_state`]).
    protected: Arc<[(&'static str, PathBuf)]>,
    stopped: watch::Receiver<bool>,
}

/// Whether `path` is absolute and names no `.` or `..` component, so that comparing it by
/// components compares what it names.
fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|part| matches!(part, Component::RootDir | Component::Normal(_)))
}

/// This gate's own state, which no session may show its agent (by its workspace or a read-only
/// path): its data directory, audit log and signing key, resolved once (they do not move while
/// the gate runs).
fn protected_state(gate: &Gate) -> Arc<[(&'static str, PathBuf)]> {
    let audit = &gate.audit;
    [
        ("data directory", gate.config.data_dir.as_path()),
        ("audit log", audit.path()),
        ("audit signing key", audit.key_path()),
    ]
    .into_iter()
    .map(|(what, path)| {
        let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        (what, resolved)
    })
    .collect()
}

/// A session this gate serves.
struct Served {
    session: SessionContext,
    dir: PathBuf,
    opened: Instant,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// What `moat run` is told once a session's end is recorded (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tell {
    /// The answer to its close.
    Answer,
    /// Nothing: it handed the end over and may be gone.
    Nothing,
    /// That the gate ended the session itself and recorded the end (`ended`).
    Notice,
}

/// How a served session ended.
enum Ending {
    /// `moat run` sent the end, and waits for it to be on record.
    Closed(Box<SessionEnd>),
    /// `moat run` handed the end over, unanswered: the end is in its session file too, which
    /// stays until the end is on record.
    Handed(Box<SessionEnd>),
    Disconnected,
    GateStopped,
    Protocol(String),
}

impl Connection {
    async fn serve(mut self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut read = tokio::io::BufReader::new(read);
        let hello = Hello {
            moat: "gate".to_owned(),
            pid: std::process::id(),
            public_url: self.gate.config.public_url.clone(),
            policy: self.gate.policy().revision().to_owned(),
            ends_from_session_file: true,
        };
        if send(&mut write, &hello).await.is_err() {
            return;
        }
        let request = tokio::time::timeout(OPEN_TIMEOUT, read_message::<Request>(&mut read)).await;
        let (session, start) = match request {
            Ok(Ok(Some(Request::Open { session, start }))) => (session, *start),
            Ok(Ok(Some(Request::Close { .. }))) => {
                let _ = send(&mut write, &Reply::failed("no session is open")).await;
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Err(err)) => {
                let _ = send(&mut write, &Reply::failed(err.to_string())).await;
                return;
            }
            Err(_) => {
                let _ = send(&mut write, &Reply::failed("no request in time")).await;
                return;
            }
        };
        let served = match self.open(session, start).await {
            Ok(served) => served,
            Err(error) => {
                let _ = send(&mut write, &Reply::failed(error)).await;
                return;
            }
        };
        let opened = Reply {
            ok: true,
            socket: Some(session_socket_dir(&served.dir).join(SESSION_SOCKET)),
            policy: Some(self.gate.policy().revision().to_owned()),
            ..Reply::default()
        };
        let answered = send(&mut write, &opened).await.is_ok();
        let session = &served.session;
        tracing::info!(session = %session.id, agent = %session.agent, operator = %session.operator, "session opened");
        // `None`: the gate is stopping.
        let message = if answered {
            tokio::select! {
                message = read_message::<Request>(&mut read) => Some(message),
                _ = self.stopped.wait_for(|stopped| *stopped) => None,
            }
        } else {
            Some(Ok(None))
        };
        let ending = match message {
            Some(Ok(Some(Request::Close {
                end,
                handed_over: false,
            }))) => Ending::Closed(Box::new(end)),
            Some(Ok(Some(Request::Close {
                end,
                handed_over: true,
            }))) => Ending::Handed(Box::new(end)),
            Some(Ok(Some(Request::Open { .. }))) => {
                Ending::Protocol("a second open on one connection".to_owned())
            }
            Some(Ok(None)) => Ending::Disconnected,
            Some(Err(ControlError::Protocol(problem))) => Ending::Protocol(problem),
            Some(Err(_)) => Ending::Disconnected,
            None => Ending::GateStopped,
        };
        self.close(served, ending, &mut write).await;
        let _ = write.shutdown().await;
    }

    /// Bind the session's socket, record the start, serve the socket.
    async fn open(
        &mut self,
        session: SessionContext,
        mut start: SessionStart,
    ) -> Result<Served, String> {
        if !valid_session_id(&session.id) {
            return Err(format!(
                "invalid session id {:?}: 1 to 64 letters, digits, '-' or '_'",
                session.id
            ));
        }
        let shown = std::iter::once(("the workspace", &start.workspace)).chain(
            start
                .read_only
                .iter()
                .map(|path| ("the read-only path", path)),
        );
        for (label, path) in shown {
            if let Some(refusal) = self.shows_gate_state(label, Path::new(path)) {
                return Err(refusal);
            }
        }
        if !self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session.id.clone())
        {
            return Err(format!("session {} is already open", session.id));
        }
        let opened = self.bind_and_record(&session, &mut start).await;
        if opened.is_err() {
            self.forget(&session.id);
        }
        let (dir, listener) = opened?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve_unix(
            listener,
            Arc::clone(&self.gate),
            session.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Served {
            session,
            dir,
            opened: Instant::now(),
            stop,
            server,
        })
    }

    /// Why a session that shows the agent `path` (its workspace, which it may write, or a path
    /// it may read) may not open here: the agent would see this gate's data directory, audit
    /// log or signing key (`moat run` checks the ones it is configured with; this gate's may
    /// differ). Inside, the agent could rewrite the log and sign with the key.
    ///
    /// `path` is resolved as this gate sees it, symlinks followed. A path the gate cannot
    /// resolve (a gate that sees another file system, e.g. a service with a private `/tmp`)
    /// is compared as given, which must then be absolute and plain (no `.` or `..`): `moat
    /// run` sends every path resolved.
    fn shows_gate_state(&self, label: &str, path: &Path) -> Option<String> {
        let resolved = match path.canonicalize() {
            Ok(resolved) => resolved,
            Err(_) if is_plain_absolute(path) => path.to_path_buf(),
            Err(e) => {
                return Some(format!(
                    "{label} {} cannot be checked ({e}): send it absolute, without '.' or '..'",
                    path.display()
                ));
            }
        };
        self.protected.iter().find_map(|(what, protected)| {
            (protected.starts_with(&resolved) || resolved.starts_with(protected)).then(|| {
                format!(
                    "{label} {} would show the agent this gate's {what} ({}): give the agent \
                     a directory of its own",
                    path.display(),
                    protected.display()
                )
            })
        })
    }

    async fn bind_and_record(
        &self,
        session: &SessionContext,
        start: &mut SessionStart,
    ) -> Result<(PathBuf, UnixListener), String> {
        let dir = session_dir(&self.gate.config.data_dir, &session.id);
        let socket_dir = session_socket_dir(&dir);
        // Only this user may reach the session's socket (`moat run` makes them so too).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&socket_dir)
            .map_err(|e| format!("cannot create {}: {e}", socket_dir.display()))?;
        let socket = socket_dir.join(SESSION_SOCKET);
        if connect_unix(&socket).is_ok() {
            return Err(format!("session {} is served elsewhere", session.id));
        }
        let _ = std::fs::remove_file(&socket);
        let listener = bind_unix(&socket)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        // The record says what this gate does: its policy, this session's id.
        start.session = session.id.clone();
        start.policy = self.gate.policy().revision().to_owned();
        if let Err(err) = self
            .gate
            .audit
            .append(Event::SessionStart(start.clone()))
            .await
        {
            drop(listener);
            remove_session_dir(dir).await;
            return Err(format!("cannot record the session start: {err}"));
        }
        Ok((dir, listener))
    }

    /// Stop serving the session, record its end, remove the session's directory, then answer a
    /// close that waits for that. A handed-over end that cannot be recorded leaves the
    /// directory, whose session file holds the end, to the next sweep.
    async fn close(&self, served: Served, ending: Ending, write: &mut OwnedWriteHalf) {
        let Served {
            session,
            dir,
            opened,
            stop,
            server,
        } = served;
        // Requests in flight finish first: the end is the session's last event.
        let _ = stop.send(());
        let _ = server.await;
        let reason = |reason: String| SessionEnd {
            time: jiff::Timestamp::now(),
            session: session.id.clone(),
            exit_code: None,
            signal: None,
            duration_ms: u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
            user_cpu_ms: 0,
            system_cpu_ms: 0,
            max_rss_kib: 0,
            reason: Some(reason),
        };
        // A `moat run` that wrote the end into its session file and exited without a word
        // (its quick end) handed it over all the same.
        let ending = if matches!(ending, Ending::Disconnected)
            && let Some(end) = SessionFile::read(&dir).and_then(|file| file.end)
        {
            Ending::Handed(Box::new(end))
        } else {
            ending
        };
        let (mut end, tell) = match ending {
            Ending::Closed(end) => (*end, Tell::Answer),
            Ending::Handed(end) => (*end, Tell::Nothing),
            Ending::Disconnected => (reason("moat run disconnected".to_owned()), Tell::Notice),
            Ending::GateStopped => (reason("gate stopped".to_owned()), Tell::Notice),
            Ending::Protocol(problem) => {
                (reason(format!("control protocol: {problem}")), Tell::Notice)
            }
        };
        end.session = session.id.clone();
        let ending = end.reason.clone().unwrap_or_else(|| "closed".to_owned());
        if tell == Tell::Notice {
            // `moat run` did not get to remove its session file: the end is recorded now.
            crate::session_file::remove_session_file(&dir);
        }
        // The session's counted repeats go on record before its end (they are this session's).
        let recorded = match self.gate.audit.flush_repeats().await {
            Ok(()) => self.gate.audit.append(Event::SessionEnd(end)).await,
            Err(err) => Err(err),
        };
        // A handed-over end not on record stays in the session file, for the next sweep. Removed
        // before the answer: `moat run` hears of the end once nothing of the session is left.
        if recorded.is_ok() || tell != Tell::Nothing {
            remove_session_dir(dir).await;
        }
        match (tell, &recorded) {
            (Tell::Answer, Ok(_)) => {
                let _ = send(write, &Reply::ok()).await;
            }
            (Tell::Answer, Err(err)) => {
                let _ = send(
                    write,
                    &Reply::failed(format!("cannot record the session end: {err}")),
                )
                .await;
            }
            // `moat run` learns that the end is on record (a connection that just closes means
            // a gate that died: then `moat run` leaves the session's file for the next gate).
            (Tell::Notice, Ok(_)) => {
                let notice = Reply {
                    ended: Some(ending.clone()),
                    ..Reply::default()
                };
                let _ = send(write, &notice).await;
            }
            (Tell::Notice, Err(_)) | (Tell::Nothing, _) => {}
        }
        self.forget(&session.id);
        match &recorded {
            Ok(_) => tracing::info!(session = %session.id, %ending, "session ended"),
            Err(err) => {
                tracing::error!(session = %session.id, error = %err, "session end not recorded");
            }
        }
    }

    fn forget(&self, id: &str) {
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// A session id is a path component: letters, digits, `-`, `_`; at most 64.
fn valid_session_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Write one message line.
async fn send(
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    message: &impl serde::Serialize,
) -> Result<(), ControlError> {
    let mut line = serde_json::to_vec(message)
        .map_err(|e| ControlError::Protocol(format!("cannot encode a message: {e}")))?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await?;
    Ok(())
}

/// Read one message line; `None` at the end of the stream.
async fn read_message<T: serde::de::DeserializeOwned>(
    read: &mut (impl AsyncBufRead + Unpin),
) -> Result<Option<T>, ControlError> {
    let mut line = Vec::new();
    let n = read.take(MAX_MESSAGE).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_MESSAGE {
            ControlError::Protocol("message too long".to_owned())
        } else {
            ControlError::Closed
        });
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| ControlError::Protocol(format!("unreadable message: {e}")))
}

/// The `moat run` side of a control connection.
#[derive(Debug)]
pub struct ControlClient {
    /// Where the gate was reached, for messages.
    path: PathBuf,
    /// The gate's hello, once read: with the answer to the first request, which is sent
    /// without waiting for it (one round trip less per session).
    hello: Option<Hello>,
    write: OwnedWriteHalf,
    /// Lines from the gate, read by a task of their own so that waiting for one can be
    /// abandoned (in a `select!`) without losing data.
    lines: mpsc::Receiver<Result<Vec<u8>, String>>,
}

/// The gate's answer to an open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The session's socket, to bind-mount into the sandbox.
    pub socket: PathBuf,
    /// The policy revision recorded in the session start.
    pub policy: String,
}

impl ControlClient {
    /// The connection to the gate. Its end tells the gate that `moat run` is gone (it then
    /// records the end the session file holds): whoever holds a copy delays that.
    pub fn connection(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self.write.as_ref())
    }

    /// Connect to the gate serving `path` (`<data-dir>/gate.ctl`). `Ok(None)` when no gate
    /// answers there (no socket, or a stale one): start a gate of your own. Any other failure
    /// is an error: a gate is there but cannot be used, and a second gate on the same data
    /// directory would be a second audit writer. The gate's hello is not waited for here:
    /// [`open`](Self::open) sends its request at once and reads the hello with the answer, or
    /// ask for it with [`hello`](Self::hello).
    pub async fn connect(path: &Path) -> Result<Option<ControlClient>, ControlError> {
        let connected = connect_unix(path).and_then(|stream| {
            stream.set_nonblocking(true)?;
            UnixStream::from_std(stream)
        });
        let stream = match connected {
            Ok(stream) => stream,
            Err(err)
                // No socket, a stale one, or a path no socket can have (too long).
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::InvalidInput
                ) =>
            {
                return Ok(None);
            }
            Err(err) => {
                return Err(ControlError::Io(std::io::Error::new(
                    err.kind(),
                    format!("cannot connect to {}: {err}", path.display()),
                )));
            }
        };
        let (read, write) = stream.into_split();
        let (tx, lines) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut read = tokio::io::BufReader::new(read);
            loop {
                let mut line = Vec::new();
                let result = (&mut read)
                    .take(MAX_MESSAGE)
                    .read_until(b'\n', &mut line)
                    .await;
                let message = match result {
                    Ok(0) => break,
                    Ok(_) if line.last() == Some(&b'\n') => Ok(line),
                    Ok(_) => Err("the gate sent an incomplete or oversized message".to_owned()),
                    Err(err) => Err(err.to_string()),
                };
                let last = message.is_err();
                if tx.send(message).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Some(ControlClient {
            path: path.to_owned(),
            hello: None,
            write,
            lines,
        }))
    }

    /// What the gate says first on every connection: its pid, public URL and policy revision.
    /// Read on the first call (or by [`open`](Self::open)); an error when the socket's peer is
    /// not a moat gate.
    pub async fn hello(&mut self) -> Result<&Hello, ControlError> {
        let hello = match self.hello.take() {
            Some(hello) => hello,
            None => {
                let hello: Hello = self.receive().await?;
                if hello.moat != "gate" {
                    return Err(ControlError::Protocol(format!(
                        "{} is not a moat gate's control socket",
                        self.path.display()
                    )));
                }
                hello
            }
        };
        Ok(self.hello.insert(hello))
    }

    /// Ask the gate to record `start` and serve `session`. The request leaves at once, before
    /// the gate's hello is read (the gate reads it after sending its hello); the gate records
    /// its own policy revision in `start`. Returns once the gate has answered.
    pub async fn open(
        &mut self,
        session: &SessionContext,
        start: SessionStart,
    ) -> Result<Opened, ControlError> {
        self.request_open(session, start).await?;
        self.opened().await
    }

    /// The first half of [`open`](Self::open): sends the request and returns the gate's hello,
    /// which comes before the answer; that follows once the start is on record
    /// ([`opened`](Self::opened)). What the hello says (the gate's URL) lets a caller prepare
    /// the session meanwhile.
    pub async fn request_open(
        &mut self,
        session: &SessionContext,
        start: SessionStart,
    ) -> Result<&Hello, ControlError> {
        let request = Request::Open {
            session: session.clone(),
            start: Box::new(start),
        };
        send(&mut self.write, &request).await?;
        self.hello().await
    }

    /// The second half of [`open`](Self::open): the gate's answer to the request sent by
    /// [`request_open`](Self::request_open).
    pub async fn opened(&mut self) -> Result<Opened, ControlError> {
        let hello_policy = self.hello().await?.policy.clone();
        let reply: Reply = self.receive().await?;
        match reply {
            Reply {
                ok: true,
                socket: Some(socket),
                policy,
                ..
            } => Ok(Opened {
                socket,
                policy: policy.unwrap_or(hello_policy),
            }),
            Reply { error, .. } => {
                Err(ControlError::Refused(error.unwrap_or_else(|| {
                    "the gate refused the session".to_owned()
                })))
            }
        }
    }

    /// Resolves when the gate ends the session on its own: true when it said that it recorded
    /// the end (it is shutting down), false when the connection just ended (it died). Never
    /// resolves otherwise. Cancel-safe.
    pub async fn ended_by_gate(&mut self) -> bool {
        // Anything unsolicited, or the end of the stream, means the session is over.
        let line = self.lines.recv().await;
        // Later receives see the channel closed.
        self.lines.close();
        line.and_then(Result::ok)
            .and_then(|line| serde_json::from_slice::<Reply>(&line).ok())
            .is_some_and(|reply| reply.ended.is_some())
    }

    /// Record `end` and stop the session: returns once the end is on record.
    pub async fn close(mut self, end: SessionEnd) -> Result<(), ControlError> {
        let close = Request::Close {
            end,
            handed_over: false,
        };
        send(&mut self.write, &close).await?;
        let reply: Reply = self.receive().await?;
        if let Some(reason) = reply.ended {
            return Err(ControlError::EndedByGate(reason));
        }
        if reply.ok {
            Ok(())
        } else {
            Err(ControlError::Refused(reply.error.unwrap_or_else(|| {
                "the gate refused to close the session".to_owned()
            })))
        }
    }

    /// Hand `end` to the gate and stop the session: returns once it is sent; the gate records
    /// it, unanswered. The session's file must hold `end` already
    /// ([`crate::session_file::SessionFile::end`]): the gate removes it once the end is on
    /// record, and a gate that dies before leaves it to the next.
    pub async fn hand_over(mut self, end: SessionEnd) -> Result<(), ControlError> {
        let close = Request::Close {
            end,
            handed_over: true,
        };
        send(&mut self.write, &close).await
    }

    async fn receive<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ControlError> {
        let line = tokio::time::timeout(REPLY_TIMEOUT, self.lines.recv())
            .await
            .map_err(|_| ControlError::Protocol("the gate did not answer in time".to_owned()))?
            .ok_or(ControlError::Closed)?
            .map_err(ControlError::Protocol)?;
        serde_json::from_slice(&line)
            .map_err(|e| ControlError::Protocol(format!("unreadable answer: {e}")))
    }
}
