//! A tiny fake npm upstream, the gate under test, and a raw HTTP/1.1 client.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failed test

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use moat_advisories::{AdvisoryDb, Ecosystem, PopularNames};
use moat_audit::AuditLog;
use moat_gate::{Gate, GateConfig, SessionContext};
use moat_policy::Policy;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const POLICY: &str = r#"
[advisories]
block-vulnerable = "high"
[age]
min-days = 3
[[deny]]
package = "npm:denied-pkg"
reason = "abandoned, once hijacked"
"#;

fn osv(id: &str, name: &str, introduced: &str, fixed: Option<&str>, severity: &str) -> String {
    let mut events = vec![serde_json::json!({ "introduced": introduced })];
    if let Some(fixed) = fixed {
        events.push(serde_json::json!({ "fixed": fixed }));
    }
    serde_json::json!({
        "schema_version": "1.6.0", "id": id, "modified": "2025-01-01T00:00:00Z",
        "summary": format!("bad things in {name}"),
        "database_specific": { "severity": severity },
        "affected": [{ "package": { "ecosystem": "npm", "name": name },
                       "ranges": [{ "type": "SEMVER", "events": events }] }]
    })
    .to_string()
}

pub fn advisories() -> AdvisoryDb {
    let records = [
        osv(
            "GHSA-demo-0000-0001",
            "demo",
            "1.1.0",
            Some("1.2.0"),
            "CRITICAL",
        ),
        osv(
            "GHSA-scop-0000-0001",
            "@scope/pkg",
            "0",
            Some("2.0.1"),
            "HIGH",
        ),
        osv("MAL-2099-1", "evil-pkg", "0", None, "CRITICAL"),
    ];
    let records: Vec<&str> = records.iter().map(String::as_str).collect();
    let (db, report) = AdvisoryDb::from_osv_json(&records);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    db
}

/// The fake upstream's behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Normal,
    Status(u16),
    Slow(Duration),
    /// Each request waits for [`Upstream::release`] before it is answered.
    Held,
}

#[derive(Default)]
pub struct Upstream {
    pub packuments: Mutex<HashMap<String, Vec<u8>>>,
    pub tarballs: Mutex<HashMap<String, Vec<u8>>>,
    pub hits: Mutex<Vec<String>>,
    pub mode: Mutex<Option<Mode>>,
    pub count: AtomicUsize,
    /// Lets the requests held in [`Mode::Held`] go on.
    pub release: tokio::sync::Notify,
}

impl Upstream {
    pub fn hits_for(&self, needle: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|hit| hit.contains(needle))
            .count()
    }
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = Some(mode);
    }
}

/// The fixture's tarball bytes: a line of text, except [`BIG`]'s first version, 200 KiB of
/// noise (large answers are served from sealed memory).
pub fn tarball_bytes(name: &str, version: &str) -> Vec<u8> {
    if (name, version) == (BIG, "1.0.0") {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        return (0..200 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
    }
    format!("tarball of {name}@{version}").into_bytes()
}

/// A package with 400 versions (a packument of about 100 KB) and a 200 KiB tarball.
pub const BIG: &str = "bigpkg";

/// Add a package: `(version, published)`; tarballs hash correctly unless `corrupt` names one.
pub fn publish(
    upstream: &Upstream,
    base: &str,
    name: &str,
    versions: &[&str],
    tags: &[(&str, &str)],
    corrupt: Option<&str>,
) {
    let basename = name.rsplit('/').next().unwrap();
    let mut doc_versions = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    time.insert("modified".into(), "2021-01-01T00:00:00.000Z".into());
    for version in versions {
        let bytes = tarball_bytes(name, version);
        let file = format!("{}-{basename}-{version}.tgz", name.replace('/', "_"));
        let integrity = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&bytes))
        );
        let served = if corrupt == Some(*version) {
            b"tampered bytes".to_vec()
        } else {
            bytes
        };
        upstream
            .tarballs
            .lock()
            .unwrap()
            .insert(file.clone(), served);
        doc_versions.insert(
            (*version).into(),
            serde_json::json!({
                "name": name, "version": version, "description": "d", "scripts": {"test": "x"},
                "dependencies": {},
                "dist": { "tarball": format!("{base}/tarballs/{file}"), "integrity": integrity }
            }),
        );
        time.insert((*version).into(), "2020-01-01T00:00:00.000Z".into());
    }
    let tags: serde_json::Map<String, serde_json::Value> = tags
        .iter()
        .map(|(tag, version)| ((*tag).into(), (*version).into()))
        .collect();
    let doc = serde_json::json!({ "_id": name, "name": name, "dist-tags": tags, "time": time, "versions": doc_versions, "readme": "r" });
    upstream
        .packuments
        .lock()
        .unwrap()
        .insert(name.to_owned(), serde_json::to_vec(&doc).unwrap());
}

async fn upstream_handler(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    upstream.hits.lock().unwrap().push(path.clone());
    upstream.count.fetch_add(1, Ordering::SeqCst);
    let mode = upstream.mode.lock().unwrap().unwrap_or(Mode::Normal);
    match mode {
        Mode::Normal => {}
        Mode::Status(code) => return http::StatusCode::from_u16(code).unwrap().into_response(),
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Held => upstream.release.notified().await,
    }
    if let Some(file) = path.strip_prefix("/tarballs/") {
        return match upstream.tarballs.lock().unwrap().get(file) {
            Some(bytes) => bytes.clone().into_response(),
            None => http::StatusCode::NOT_FOUND.into_response(),
        };
    }
    let name = percent_encoding::percent_decode_str(&path[1..])
        .decode_utf8_lossy()
        .into_owned();
    match upstream.packuments.lock().unwrap().get(&name) {
        Some(body) => (
            [(http::header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// Start the fake upstream with the standard fixture packages.
pub async fn start_upstream() -> (Arc<Upstream>, String) {
    let upstream = Arc::new(Upstream::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    publish(
        &upstream,
        &base,
        "demo",
        &["1.0.0", "1.0.1", "1.1.0"],
        &[("latest", "1.1.0"), ("beta", "1.1.0")],
        None,
    );
    publish(
        &upstream,
        &base,
        "@scope/pkg",
        &["2.0.0", "2.0.1"],
        &[("latest", "2.0.1")],
        None,
    );
    publish(
        &upstream,
        &base,
        "evil-pkg",
        &["1.0.0"],
        &[("latest", "1.0.0")],
        None,
    );
    publish(
        &upstream,
        &base,
        "badsum",
        &["1.0.0"],
        &[("latest", "1.0.0")],
        Some("1.0.0"),
    );
    let big_versions: Vec<String> = (0..400).map(|patch| format!("1.0.{patch}")).collect();
    let big_versions: Vec<&str> = big_versions.iter().map(String::as_str).collect();
    publish(
        &upstream,
        &base,
        BIG,
        &big_versions,
        &[("latest", "1.0.0")],
        None,
    );
    upstream
        .packuments
        .lock()
        .unwrap()
        .insert("broken".into(), b"{\"name\": \"broken\", ".to_vec());
    upstream.packuments.lock().unwrap().insert(
        "wrongname".into(),
        br#"{"name":"other","versions":{}}"#.to_vec(),
    );
    let app = axum::Router::new()
        .fallback(upstream_handler)
        .with_state(Arc::clone(&upstream));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (upstream, base)
}

pub struct TestGate {
    pub addr: SocketAddr,
    pub audit: AuditLog,
    pub data_dir: tempfile::TempDir,
    pub upstream: Arc<Upstream>,
}

/// A gate in front of a fresh fake upstream.
pub async fn start() -> TestGate {
    let (upstream, base) = start_upstream().await;
    start_with(upstream, &base, POLICY, |_| {}).await
}

pub async fn start_with(
    upstream: Arc<Upstream>,
    base: &str,
    policy: &str,
    tweak: impl FnOnce(&mut GateConfig),
) -> TestGate {
    let data_dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(&data_dir.path().join("audit.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = GateConfig::new(format!("http://{addr}"), data_dir.path());
    config.upstream.npm = base.to_owned();
    config.upstream.timeout = Duration::from_secs(5);
    tweak(&mut config);
    let policy = Policy::from_toml(policy).unwrap();
    let popular = HashMap::from([(
        Ecosystem::Npm,
        PopularNames::from_names(Ecosystem::Npm, ["lodash", "express"]),
    )]);
    let gate = Gate::new(config, policy, advisories(), popular, audit.clone()).unwrap();
    // Two serving loops, as `moat gate` runs on a two-core machine.
    tokio::spawn(moat_gate::serve_loops(
        listener,
        Arc::new(gate),
        2,
        std::future::pending(),
    ));
    TestGate {
        addr,
        audit,
        data_dir,
        upstream,
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one request exactly as written and read the whole answer.
pub async fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    exchange(stream, &request_text(method, path, headers)).await
}

/// [`raw`] over a session's unix socket.
pub async fn raw_unix(
    socket: &Path,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    exchange(stream, &request_text(method, target, headers)).await
}

/// A request head with `Host: gate` (unless given) and `Connection: close`.
pub fn request_text(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut request = format!("{method} {target} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str("Host: gate\r\n");
    }
    request.push_str("Connection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Write `request` and read the answer to the end of the stream.
pub async fn exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &str,
) -> Reply {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    parse_reply(&answer)
}

/// Split a raw answer into status line, headers and (undecoded) body.
pub fn parse_reply(answer: &[u8]) -> Reply {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8(answer[..split].to_vec()).unwrap();
    let body = answer[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status_line,
        status,
        headers,
        body,
    }
}

/// A gate serving one `moat run` session on a unix socket (and anonymous clients on TCP),
/// in front of the fixture npm upstream.
pub struct SessionGate {
    pub socket: PathBuf,
    pub tcp: SocketAddr,
    pub audit: AuditLog,
    /// Ends the session listener (its accept loop then drains and returns).
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The session listener's accept loop.
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Holds the data directory (and the socket) for the gate's lifetime.
    pub _data_dir: tempfile::TempDir,
}

/// The session [`start_session`] serves.
pub fn session() -> SessionContext {
    SessionContext {
        id: "s-test-1".to_owned(),
        agent: "claude".to_owned(),
        operator: "alice".to_owned(),
    }
}

/// Start a session gate with `policy` (the fixture [`POLICY`] plus, say, an `[egress]` table).
pub async fn start_session(policy: &str, tweak: impl FnOnce(&mut GateConfig)) -> SessionGate {
    let (_upstream, base) = start_upstream().await;
    let data_dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(&data_dir.path().join("audit.db")).unwrap();
    let socket = data_dir.path().join("gate.sock");
    let unix = tokio::net::UnixListener::bind(&socket).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let mut config = GateConfig::new("http://127.0.0.1:7070", data_dir.path());
    config.upstream.npm = base;
    config.upstream.timeout = Duration::from_secs(5);
    config.upstream.connect_timeout = Duration::from_secs(5);
    tweak(&mut config);
    let policy = Policy::from_toml(policy).unwrap();
    let gate = Gate::new(config, policy, advisories(), HashMap::new(), audit.clone()).unwrap();
    let gate = Arc::new(gate);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let served = tokio::spawn(moat_gate::serve_unix(
        unix,
        Arc::clone(&gate),
        session(),
        shutdown,
    ));
    tokio::spawn(moat_gate::serve(tcp, gate, std::future::pending()));
    SessionGate {
        socket,
        tcp: tcp_addr,
        audit,
        stop: Some(stop),
        served,
        _data_dir: data_dir,
    }
}

/// Every decision event in `audit`, oldest first.
pub fn decisions(audit: &AuditLog) -> Vec<moat_audit::DecisionEvent> {
    let mut events: Vec<_> = audit
        .list(&moat_audit::ListQuery::default())
        .unwrap()
        .into_iter()
        .collect();
    events.sort_by_key(|stored| stored.seq);
    events
        .into_iter()
        .filter_map(|stored| {
            if let moat_audit::Event::Decision(decision) = stored.event {
                Some(decision)
            } else {
                None
            }
        })
        .collect()
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    raw(addr, "GET", path, &[]).await
}
