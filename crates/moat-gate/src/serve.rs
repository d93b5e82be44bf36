//! The router (every path canonicalised before routing) and the HTTP/1.1 accept loops: TCP
//! (anonymous clients) and a session's unix socket (every request attributed to the session).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CONTENT_LENGTH, HeaderValue};
use http::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use moat_advisories::Ecosystem;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use crate::Gate;
use crate::call::Call;
use crate::caller::{Caller, SessionContext};
use crate::respond::{self, JSON};
use crate::sealed::ZeroCopy;

/// Answer one request on the gate's routes: `/npm/…`, `/pypi/…`, `/crates/…`,
/// `/-/why/<npm|pypi|crates>/<name>[/<version>]`, `/-/audit/…` (checkpoint and proofs),
/// `/llm/<anthropic|openai>/…` (session sockets only), and the egress forward proxy
/// (absolute-form requests and `CONNECT`). Every path is canonicalised before routing.
/// `identity` is the caller's, worked out once per connection.
async fn handle(gate: &Arc<Gate>, caller: &Caller, identity: &str, request: Request) -> Response {
    if request.method() == Method::CONNECT
        || (request.uri().scheme().is_some() && !gate.is_own_authority(request.uri()))
    {
        return crate::egress::proxy(gate, identity, request).await;
    }
    if request.uri().path().starts_with("/llm/") {
        return crate::llm::pass_through(gate, caller.session(), identity, request).await;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let reason = "moat: method not allowed: the gate only answers GET and HEAD";
        let mut response = respond::error(StatusCode::METHOD_NOT_ALLOWED, reason);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|len| len > gate.config.limits.max_request_body) {
        return respond::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "moat: request body too large",
        );
    }
    let segments = match moat_registry::npm::canonical_segments(request.uri().path()) {
        Ok(segments) => segments,
        Err(err) => {
            return respond::error(
                StatusCode::BAD_REQUEST,
                &format!("moat: bad request: {err}"),
            );
        }
    };
    let headers = request.headers();
    let call = Call {
        gate,
        headers,
        identity,
    };
    match segments.first().map(String::as_str) {
        Some("npm") => call.npm(&segments[1..]).await,
        Some("pypi") => call.pypi(&segments[1..]).await,
        Some("crates") => call.crates(&segments[1..]).await,
        Some("-") if segments.get(1).is_some_and(|s| s == "audit") => {
            crate::audit_routes::handle(&gate.audit, &segments[2..], request.uri().query()).await
        }
        Some("-") if segments.get(1).is_some_and(|s| s == "why") => {
            let json = headers
                .get_all(ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains(JSON)))
                || request
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|p| p == "format=json"));
            call.why(&segments[2..], json).await
        }
        _ => respond::error(StatusCode::NOT_FOUND, "not found"),
    }
}

impl Call<'_> {
    /// `GET /-/why/<ecosystem>/<name>[/<version>]`.
    async fn why(&self, segments: &[String], json: bool) -> Response {
        let gate = self.gate;
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        let Some((ecosystem, parts)) = parts
            .split_first()
            .and_then(|(first, rest)| Some((first.parse::<Ecosystem>().ok()?, rest)))
        else {
            return respond::error(StatusCode::NOT_FOUND, "not found");
        };
        let (name, version) = match (ecosystem, parts) {
            (Ecosystem::Npm, [scope, name, rest @ ..]) if scope.starts_with('@') => {
                (format!("{scope}/{name}"), rest)
            }
            (_, [name, rest @ ..]) => ((*name).to_owned(), rest),
            _ => return respond::error(StatusCode::NOT_FOUND, "not found"),
        };
        let version = match version {
            [] => None,
            [version] => Some(*version),
            _ => return respond::error(StatusCode::NOT_FOUND, "not found"),
        };
        let verdict = match gate.why(ecosystem, &name, version).await {
            Ok(verdict) => verdict,
            Err(err) => return respond::gate_error(&err),
        };
        let why_url = gate.why_url(ecosystem, &name, version);
        if let Err(err) = self.record(&name, version, "why", &verdict, None).await {
            return respond::gate_error(&err);
        }
        if json {
            let body = serde_json::to_vec(&verdict).unwrap_or_default();
            return respond::bytes(StatusCode::OK, JSON, Bytes::from(body));
        }
        let text = crate::why::render_text(&verdict, &why_url);
        respond::bytes(StatusCode::OK, respond::TEXT, Bytes::from(text))
    }
}

/// Serve `gate` on a TCP `listener` over HTTP/1.1 until `shutdown` completes; then stop
/// accepting, let open connections finish their current request, and close whatever is left
/// (proxy tunnels included) after the shutdown timeout. Requests are anonymous, recorded as
/// `anonymous@<ip>`.
pub async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(Listener::Tcp(listener), gate, shutdown).await
}

/// Serve `gate` on a TCP `listener` like [`serve`], from `loops` threads each running an event
/// loop of its own (a single-threaded runtime), the way nginx runs one process per core: this
/// task accepts, and hands each connection to one loop (by the CPU it came in on, so that a
/// client thread's connections share a loop; see `pick_loop`), which serves it to its end. No
/// request waits for another thread to pick its task up, and no thread steals another's: on
/// two cores shared with the clients, the tarball route served 118k-129k requests/s this way
/// against 97k on one work-stealing runtime (BENCHMARKS.md). Returns once every loop has
/// drained (see [`serve`]), with the error of a loop that failed.
pub async fn serve_loops(
    listener: TcpListener,
    gate: Arc<Gate>,
    loops: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut hands = Vec::new();
    let mut threads = Vec::new();
    for index in 0..loops.max(1) {
        let (hand, handed) = mpsc::channel(HANDED_CAPACITY);
        let open = Arc::new(AtomicUsize::new(0));
        hands.push((hand, Arc::clone(&open)));
        let gate = Arc::clone(&gate);
        let mut stopped = stopped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("moat-loop-{index}"))
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(serve_on(Listener::Handed(handed, open), gate, async move {
                        let _ = stopped.wait_for(|stopped| *stopped).await;
                    }))
            })?;
        threads.push(thread);
    }
    tokio::pin!(shutdown);
    // Each loop's open connections, read afresh for every connection (one buffer for all).
    let mut counts: Vec<usize> = Vec::with_capacity(hands.len());
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let mut connection = match stream.into_std() {
            Ok(stream) => (stream, peer),
            Err(err) => {
                tracing::warn!(error = %err, "cannot hand a connection to a serving loop");
                continue;
            }
        };
        // A loop that has stopped (it could not start its runtime) is left out from then on.
        let incoming_cpu = rustix::net::sockopt::socket_incoming_cpu(&connection.0).ok();
        loop {
            counts.clear();
            counts.extend(hands.iter().map(|(_, open)| open.load(Ordering::Relaxed)));
            let Some(index) = pick_loop(&counts, incoming_cpu) else {
                break;
            };
            let (hand, open) = &hands[index];
            // Counted here, uncounted by the loop when the connection ends.
            open.fetch_add(1, Ordering::Relaxed);
            match hand.send(connection).await {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => {
                    open.fetch_sub(1, Ordering::Relaxed);
                    tracing::error!("a serving loop has stopped; its share goes to the others");
                    hands.swap_remove(index);
                    connection = back;
                }
            }
        }
        if hands.is_empty() {
            break;
        }
    }
    drop(listener);
    drop(hands);
    let _ = stop.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a serving loop panicked")))
            })
            .collect::<std::io::Result<Vec<()>>>()
    })
    .await
    .map_err(std::io::Error::other)?;
    joined.map(drop)
}

/// Connections accepted but not yet taken up by their loop.
const HANDED_CAPACITY: usize = 1024;

/// How many more open connections the loop of a connection's CPU may have than the least
/// loaded loop before the connection goes to the least loaded one instead.
const BALANCE_SLACK: usize = 16;

/// The loop for a new connection, given each loop's `open` connections and the CPU the
/// connection came in on (`SO_INCOMING_CPU`; on loopback, the CPU its client was running on
/// when it connected): loop `cpu % loops`, unless that loop has more than [`BALANCE_SLACK`]
/// connections over the least loaded one, which then gets it. `None` when no loop is left.
///
/// Why by CPU: a client thread's connections then share one loop, so that client thread and
/// that loop only feed each other and take turns, each running as soon as the other has
/// answered. Dealt out one by one instead (to the loop with the fewest open), every client
/// thread talks to every loop; on two cores shared with two `wrk` threads, a loop and a client
/// thread on one core were then both kept busy from the other core and took turns by whole
/// scheduler ticks (4 ms at `CONFIG_HZ=250`): the wheel's and the `.crate`'s p99 were
/// 6.1-7.9 ms through the gate against 2.0-6.3 ms through nginx, and 3.0-4.6 ms by CPU
/// (BENCHMARKS.md, PyPI and crates.io runs of 2026-12-01 08:48 and 09:10).
fn pick_loop(open: &[usize], incoming_cpu: Option<u32>) -> Option<usize> {
    let least = (0..open.len()).min_by_key(|&i| open[i])?;
    let Some(cpu) = incoming_cpu.and_then(|cpu| usize::try_from(cpu).ok()) else {
        return Some(least);
    };
    let local = cpu % open.len();
    Some(if open[local] <= open[least] + BALANCE_SLACK {
        local
    } else {
        least
    })
}

/// Serve `gate` on a session's unix socket, like [`serve`]: every request on it is
/// attributed to `session` (audit identity `session:<id>`), and the LLM pass-through routes,
/// which answer only on session sockets, are open.
pub async fn serve_unix(
    listener: UnixListener,
    gate: Arc<Gate>,
    session: SessionContext,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(Listener::Unix(listener, Arc::new(session)), gate, shutdown).await
}

/// A connection's byte stream, whatever the listener (always a [`ZeroCopy`] socket).
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Arc<SessionContext>),
    /// Connections accepted by [`serve_loops`], and how many of this loop's are open.
    Handed(
        mpsc::Receiver<(std::net::TcpStream, SocketAddr)>,
        Arc<AtomicUsize>,
    ),
}

/// Uncounts a handed connection when it ends.
struct Open(Option<Arc<AtomicUsize>>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(open) = &self.0 {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Listener {
    /// The next connection; `None` once a handing listener's acceptor is gone.
    async fn accept(&mut self) -> Option<std::io::Result<(Box<dyn Io>, Caller, Open)>> {
        match self {
            Listener::Tcp(listener) => Some(listener.accept().await.map(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                (
                    Box::new(ZeroCopy(stream)) as Box<dyn Io>,
                    Caller::Peer(peer),
                    Open(None),
                )
            })),
            Listener::Unix(listener, session) => {
                Some(listener.accept().await.map(|(stream, _)| {
                    let caller = Caller::Session(Arc::clone(session));
                    (
                        Box::new(ZeroCopy(stream)) as Box<dyn Io>,
                        caller,
                        Open(None),
                    )
                }))
            }
            Listener::Handed(handed, open) => {
                let (stream, peer) = handed.recv().await?;
                let open = Open(Some(Arc::clone(open)));
                Some(tokio::net::TcpStream::from_std(stream).map(|stream| {
                    let stream = Box::new(ZeroCopy(stream)) as Box<dyn Io>;
                    (stream, Caller::Peer(peer), open)
                }))
            }
        }
    }
}

/// Work that outlives its request (a `CONNECT` tunnel), handed to the accept loop so that
/// shutdown drains and then closes it like a connection.
#[derive(Debug, Clone)]
pub(crate) struct Background(mpsc::Sender<BoxFuture>);

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Tunnels waiting to be taken up by the accept loop.
const BACKGROUND_CAPACITY: usize = 64;

impl Background {
    /// Run `task` under the accept loop; `false` when the gate is shutting down (or too busy).
    pub(crate) fn spawn(
        extensions: &http::Extensions,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> bool {
        match extensions.get::<Background>() {
            Some(background) => background.0.try_send(Box::pin(task)).is_ok(),
            None => {
                tokio::spawn(task);
                true
            }
        }
    }
}

async fn serve_on(
    mut listener: Listener,
    gate: Arc<Gate>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = gate.config.limits.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (background, mut tasks) = mpsc::channel(BACKGROUND_CAPACITY);
    let background = Background(background);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, caller, open) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            Some(task) = tasks.recv() => {
                connections.spawn(task);
                continue;
            }
            accepted = listener.accept() => match accepted {
                // The acceptor is gone: nothing more comes; wait for the shutdown.
                None => {
                    (&mut shutdown).await;
                    break;
                }
                Some(Ok(accepted)) => accepted,
                Some(Err(err)) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let gate = Arc::clone(&gate);
        let mut stopped = stopped.clone();
        let limits = limits.clone();
        let background = background.clone();
        connections.spawn(async move {
            let _open = open;
            // The caller and its audit identity, worked out once for all its requests.
            let peer = Arc::new((caller.identity(), caller));
            let service_peer = Arc::clone(&peer);
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    // A tunnel outlives its request: it runs under this loop (see `Background`).
                    if request.method() == Method::CONNECT {
                        request.extensions_mut().insert(background.clone());
                    }
                    let gate = Arc::clone(&gate);
                    let peer = Arc::clone(&service_peer);
                    async move {
                        let (identity, caller) = &*peer;
                        let request = request.map(axum::body::Body::new);
                        let response = handle(&gate, caller, identity, request).await;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        let caller = &peer.0;
                        tracing::debug!(error = %err, %caller, "connection ended with an error");
                    }
                }
                _ = stopped.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    // Tunnels admitted from now on are refused (their requests answer 503).
    drop(tasks);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown timeout: closing remaining connections");
        connections.abort_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{BALANCE_SLACK, pick_loop};

    #[test]
    fn a_connection_goes_to_the_loop_of_the_cpu_it_came_in_on() {
        assert_eq!(pick_loop(&[0, 0], Some(0)), Some(0));
        assert_eq!(pick_loop(&[0, 0], Some(1)), Some(1));
        assert_eq!(pick_loop(&[0, 0, 0], Some(7)), Some(1));
        // Ahead of the least loaded loop, but within the slack: still its own loop.
        assert_eq!(pick_loop(&[BALANCE_SLACK, 0], Some(0)), Some(0));
        assert_eq!(pick_loop(&[5, 9], Some(1)), Some(1));
    }

    #[test]
    fn a_loop_too_far_ahead_gives_the_connection_to_the_least_loaded() {
        assert_eq!(pick_loop(&[BALANCE_SLACK + 1, 0], Some(0)), Some(1));
        assert_eq!(pick_loop(&[30, 2, 40], Some(2)), Some(1));
    }

    #[test]
    fn without_a_cpu_the_least_loaded_loop_gets_the_connection() {
        assert_eq!(pick_loop(&[3, 1, 2], None), Some(1));
        assert_eq!(pick_loop(&[], Some(0)), None);
        assert_eq!(pick_loop(&[], None), None);
    }
}
