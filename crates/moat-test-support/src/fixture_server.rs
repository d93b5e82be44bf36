//! What the npm, PyPI and crates fixtures share: a background thread with its own tokio
//! runtime serving HTTP/1.1 on `127.0.0.1:0`, a "down" switch that closes connections, a delay,
//! a request log, fault switches, and the default publish times of built versions.

use std::collections::HashSet;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The controls every fixture server exposes, written once: each fixture struct holds its
/// state as `shared`, whose `common` is the [`Common`] part. Used inside the fixture's `impl`.
macro_rules! common_controls {
    () => {
        /// `http://127.0.0.1:PORT` (no trailing slash).
        pub fn url(&self) -> &str {
            &self.shared.common.base_url
        }

        /// Down: every connection, new or kept alive, is closed without an answer.
        pub fn set_down(&self, down: bool) {
            self.shared.common.set_down(down);
        }

        /// Slow: every answer waits this long first (`Duration::ZERO` to clear; a waiting
        /// request is released when the delay is cleared).
        pub fn set_delay(&self, delay: std::time::Duration) {
            self.shared.common.set_delay(delay);
        }

        /// Every request received so far, in order.
        pub fn requests(&self) -> Vec<$crate::fixture_server::RequestRecord> {
            self.shared.common.requests()
        }

        /// Forget the requests received so far.
        pub fn clear_requests(&self) {
            self.shared.common.clear_requests();
        }
    };
}
pub(crate) use common_controls;

/// One request a fixture received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The path and query exactly as sent (not decoded).
    pub path: String,
    pub accept: Option<String>,
}

/// When versions without an explicit publish time were published: long enough ago for any
/// minimum-age rule.
const DEFAULT_EPOCH: &str = "2020-01-01T00:00:00Z";

/// The publish time of version `index` of a package: `published` when set, else `index` days
/// after [`DEFAULT_EPOCH`].
pub(crate) fn publish_time(index: usize, published: Option<jiff::Timestamp>) -> jiff::Timestamp {
    published.unwrap_or_else(|| {
        let epoch: jiff::Timestamp = DEFAULT_EPOCH.parse().expect("valid epoch");
        epoch
            .checked_add(jiff::SignedDuration::from_hours(24 * index as i64))
            .expect("timestamp in range")
    })
}

/// `days` days before now.
pub(crate) fn days_ago(days: i64) -> jiff::Timestamp {
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24 * days))
        .expect("timestamp in range")
}

/// Turns a fault on (`key` in `set`) or off.
pub(crate) fn switch<T: Eq + Hash>(set: &mut HashSet<T>, key: T, on: bool) {
    if on {
        set.insert(key);
    } else {
        set.remove(&key);
    }
}

/// The switches and log every fixture has.
pub(crate) struct Common {
    pub(crate) base_url: String,
    down: Arc<AtomicBool>,
    delay: Mutex<Duration>,
    log: Mutex<Vec<RequestRecord>>,
}

impl Common {
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn clear_requests(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Logs the request.
    pub(crate) fn record(&self, request: &Request) {
        let path = request.uri().path_and_query().map_or_else(
            || request.uri().path().to_owned(),
            |pq| pq.as_str().to_owned(),
        );
        let accept = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.log.lock().unwrap().push(RequestRecord {
            method: request.method().to_string(),
            path,
            accept,
        });
    }

    /// Waits out the delay (re-read while waiting, so clearing it releases waiting requests).
    pub(crate) async fn wait_for_delay(&self) {
        let started = tokio::time::Instant::now();
        loop {
            let delay = *self.delay.lock().unwrap();
            if started.elapsed() >= delay {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A serving thread; stopped when dropped.
pub(crate) struct Running {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds `127.0.0.1:0`, builds the fixture's state around its [`Common`] part (the URL is
/// known by then), and serves every request with `handler` in a new thread.
pub(crate) fn start<S, H, T>(
    label: &str,
    state: impl FnOnce(Common) -> S,
    handler: H,
) -> (Arc<S>, Running)
where
    S: Send + Sync + 'static,
    H: axum::handler::Handler<T, Arc<S>>,
    T: 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("set_nonblocking");
    let address = listener.local_addr().expect("local_addr");
    let down = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(state(Common {
        base_url: format!("http://{address}"),
        down: down.clone(),
        delay: Mutex::new(Duration::ZERO),
        log: Mutex::new(Vec::new()),
    }));
    let router = axum::Router::new()
        .fallback(handler)
        .with_state(shared.clone());
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("fixture-{label}-{}", address.port()))
        .spawn(move || run(listener, down, router, shutdown_rx))
        .expect("spawn fixture thread");
    let running = Running {
        shutdown: Some(shutdown_tx),
        thread: Some(thread),
    };
    (shared, running)
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    listener: std::net::TcpListener,
    down: Arc<AtomicBool>,
    router: axum::Router,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("fixture runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let listener = FaultyListener {
            inner: listener,
            down,
        };
        tokio::select! {
            result = axum::serve(listener, router) => {
                if let Err(error) = result {
                    eprintln!("fixture registry stopped: {error}");
                }
            }
            _ = shutdown => {}
        }
    });
    // In-flight (possibly delayed) connections are abandoned, not awaited.
    runtime.shutdown_background();
}

/// A response with a body and a content type.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `text/plain` with a trailing newline.
pub(crate) fn text(status: StatusCode, message: &str) -> Response {
    respond(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// One byte flipped in the middle: same length, different digest.
pub(crate) fn corrupt(mut bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.is_empty() {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
    }
    bytes
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A listener whose connections read EOF while the fixture is "down": new connections are
/// closed at once, kept-alive ones at their next read.
struct FaultyListener {
    inner: tokio::net::TcpListener,
    down: Arc<AtomicBool>,
}

impl axum::serve::Listener for FaultyListener {
    type Io = FaultyStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, address)) if self.down.load(Ordering::SeqCst) => {
                    drop((stream, address));
                }
                Ok((stream, address)) => {
                    let stream = FaultyStream {
                        inner: stream,
                        down: self.down.clone(),
                    };
                    return (stream, address);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

struct FaultyStream {
    inner: tokio::net::TcpStream,
    down: Arc<AtomicBool>,
}

impl AsyncRead for FaultyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.down.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
