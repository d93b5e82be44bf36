//! LLM pass-through: the real key is added on the host side, the client's own key header is
//! dropped, responses stream, a missing key is a 503 with the reason, every call is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test servers: a panic is a failed test

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use moat_gate::Secret;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::{POLICY, decisions, raw, raw_unix, start_session};

const REAL_KEY: &str = "sk-ant-host-side-real-key";
const SANDBOX_KEY: &str = "sk-sandbox-fake";

/// One request as the fake provider received it.
#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the fake provider saw, and the switch that releases the second half of its stream.
#[derive(Default)]
struct Provider {
    received: Mutex<Vec<Received>>,
    release: tokio::sync::Notify,
}

/// A fake LLM provider on loopback speaking raw HTTP/1.1: it answers every request with a
/// chunked `text/event-stream` of two events, the second only after the test has read the
/// first (so a gate that buffered the response would hang the test).
async fn start_provider() -> (Arc<Provider>, SocketAddr) {
    let provider = Arc::new(Provider::default());
    let shared = Arc::clone(&provider);
    let addr = serve_loopback(move |stream| {
        let provider = Arc::clone(&shared);
        async move { answer(stream, &provider).await }
    })
    .await;
    (provider, addr)
}

/// A server on a loopback port that runs `answer` on every connection; its address.
async fn serve_loopback<F, A>(answer: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> A + Send + 'static,
    A: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(answer(stream));
        }
    });
    addr
}

async fn answer(stream: tokio::net::TcpStream, provider: &Provider) {
    let mut stream = BufReader::new(stream);
    let mut request_line = String::new();
    stream.read_line(&mut request_line).await.unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    provider.received.lock().unwrap().push(Received {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body: String::from_utf8(body).unwrap(),
    });
    let mut stream = stream.into_inner();
    let chunk = |data: &str| format!("{:x}\r\n{data}\r\n", data.len());
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let first = chunk("event: first\ndata: {\"n\":1}\n\n");
    stream
        .write_all(format!("{head}{first}").as_bytes())
        .await
        .unwrap();
    provider.release.notified().await;
    let second = chunk("event: second\ndata: {\"n\":2}\n\n");
    stream
        .write_all(format!("{second}0\r\n\r\n").as_bytes())
        .await
        .unwrap();
}

fn with_provider(
    addr: SocketAddr,
    anthropic: Option<&str>,
    openai: Option<&str>,
) -> impl FnOnce(&mut moat_gate::GateConfig) {
    let anthropic = anthropic.map(Secret::new);
    let openai = openai.map(Secret::new);
    move |config| {
        config.llm_upstream.anthropic = format!("http://{addr}");
        config.llm_upstream.openai = format!("http://{addr}/openai-base/");
        config.llm_keys.anthropic = anthropic;
        config.llm_keys.openai = openai;
    }
}

/// Read from `stream` until `needle` has arrived; everything read so far.
async fn read_until(stream: &mut tokio::net::UnixStream, seen: &mut Vec<u8>, needle: &[u8]) {
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let mut buffer = [0u8; 4096];
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(
            read > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buffer[..read]);
    }
}

#[tokio::test]
async fn anthropic_gets_the_real_key_and_the_stream_passes_through() {
    let (provider, addr) = start_provider().await;
    let gate = start_session(POLICY, with_provider(addr, Some(REAL_KEY), None)).await;
    let mut stream = tokio::net::UnixStream::connect(&gate.socket).await.unwrap();
    let body = r#"{"model":"claude","stream":true,"messages":[]}"#;
    let request = format!(
        "POST /llm/anthropic/v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1:7070\r\nx-api-key: {SANDBOX_KEY}\r\nAuthorization: Bearer {SANDBOX_KEY}\r\nanthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, b"event: first").await;
    // The first event arrived while the provider still holds the second: it streams.
    let head = String::from_utf8_lossy(&seen).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(!head.contains("event: second"));
    provider.release.notify_one();
    stream.read_to_end(&mut seen).await.unwrap();
    let whole = String::from_utf8_lossy(&seen).into_owned();
    assert!(whole.contains("event: second"), "{whole}");
    assert!(!whole.contains(REAL_KEY), "the key never comes back");

    let received = provider.received.lock().unwrap()[0].clone();
    assert_eq!(
        received.request_line,
        "POST /v1/messages?beta=true HTTP/1.1"
    );
    assert_eq!(received.header("x-api-key"), Some(REAL_KEY));
    assert_eq!(received.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        received.header("authorization"),
        None,
        "the client's key is dropped"
    );
    assert_eq!(received.body, body);
    assert!(
        !received
            .headers
            .iter()
            .any(|(_, v)| v.contains(SANDBOX_KEY))
    );

    let records = decisions(&gate.audit);
    let calls: Vec<_> = records.iter().filter(|r| r.ecosystem == "llm").collect();
    assert_eq!(calls.len(), 2, "{records:?}");
    assert!(calls.iter().all(|r| r.package == "anthropic"
        && r.request == "POST /v1/messages"
        && r.action == "allow"
        && r.identity == "session:s-test-1"));
    assert_eq!(calls[0].message, None);
    assert_eq!(calls[1].message.as_deref(), Some("upstream status 200"));
    let audit_text = format!("{records:?}");
    assert!(!audit_text.contains(REAL_KEY) && !audit_text.contains(SANDBOX_KEY));
}

#[tokio::test]
async fn openai_gets_a_bearer_token() {
    let (provider, addr) = start_provider().await;
    let gate = start_session(POLICY, with_provider(addr, None, Some("sk-openai-real"))).await;
    provider.release.notify_one();
    let reply = raw_unix(
        &gate.socket,
        "GET",
        "/llm/openai/v1/models",
        &[("Authorization", "Bearer sk-sandbox-fake")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.status_line);
    let received = provider.received.lock().unwrap()[0].clone();
    assert_eq!(received.request_line, "GET /openai-base/v1/models HTTP/1.1");
    assert_eq!(
        received.header("authorization"),
        Some("Bearer sk-openai-real")
    );
}

#[tokio::test]
async fn a_missing_key_is_a_503_naming_the_setting() {
    let (provider, addr) = start_provider().await;
    let gate = start_session(POLICY, with_provider(addr, None, None)).await;
    let reply = raw_unix(
        &gate.socket,
        "POST",
        "/llm/anthropic/v1/messages",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(reply.status, 503);
    let reason = "moat: no anthropic API key on the gate (llm_keys.anthropic); hint: give moat the key on the host (ANTHROPIC_API_KEY)";
    assert_eq!(reply.status_line, format!("HTTP/1.1 503 {reason}"));
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["message"], reason);
    assert!(provider.received.lock().unwrap().is_empty());
    let records = decisions(&gate.audit);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].action.as_str(), records[0].message.as_deref()),
        ("block", Some(reason))
    );
}

#[tokio::test]
async fn pass_through_answers_only_on_session_sockets() {
    let (provider, addr) = start_provider().await;
    let gate = start_session(POLICY, with_provider(addr, Some(REAL_KEY), None)).await;
    let reply = raw(
        gate.tcp,
        "POST",
        "/llm/anthropic/v1/messages",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.status_line.contains("only on session sockets"),
        "{}",
        reply.status_line
    );
    assert!(provider.received.lock().unwrap().is_empty());
    let unknown = raw_unix(&gate.socket, "GET", "/llm/mistral/v1/models", &[]).await;
    assert_eq!(unknown.status, 404);
    let dots = raw_unix(&gate.socket, "GET", "/llm/anthropic/v1/%2e%2e/admin", &[]).await;
    assert_eq!(dots.status, 400);
    assert!(provider.received.lock().unwrap().is_empty());
}

/// A loopback server that answers every request with `200` and `name` as the body, and keeps
/// the request lines it received.
async fn start_plain(name: &'static str) -> (Arc<Mutex<Vec<String>>>, SocketAddr) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&seen);
    let addr = serve_loopback(move |stream| {
        let seen = Arc::clone(&shared);
        async move {
            let mut stream = BufReader::new(stream);
            let mut request_line = String::new();
            stream.read_line(&mut request_line).await.unwrap();
            seen.lock()
                .unwrap()
                .push(request_line.trim_end().to_owned());
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).await.unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                name.len()
            );
            stream
                .into_inner()
                .write_all(answer.as_bytes())
                .await
                .unwrap();
        }
    })
    .await;
    (seen, addr)
}

/// The key goes to the configured provider and nowhere else, whatever the path after
/// `/llm/<provider>/` spells: another host after `//`, user info, a percent-encoded `//`, or a
/// whole URL.
#[tokio::test]
async fn the_key_goes_only_to_the_configured_provider_whatever_the_path_says() {
    let (provider, addr) = start_plain("provider").await;
    let (elsewhere, other) = start_plain("elsewhere").await;
    let gate = start_session(POLICY, with_provider(addr, Some(REAL_KEY), None)).await;
    for path in [
        format!("//{other}/v1/messages"),
        format!("///{other}/v1/messages"),
        format!("/@{other}/v1/messages"),
        format!("/%2f%2f{other}/v1/messages"),
        format!("/http://{other}/v1/messages"),
        format!("/..%2f..%2f{other}/v1/messages"),
    ] {
        let target = format!("/llm/anthropic{path}");
        let reply = raw_unix(&gate.socket, "GET", &target, &[]).await;
        assert!(
            reply.status == 400 || (reply.status == 200 && reply.body == b"provider"),
            "{target}: {} {}",
            reply.status_line,
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert!(
        elsewhere.lock().unwrap().is_empty(),
        "{:?}",
        elsewhere.lock().unwrap()
    );
    assert!(!provider.lock().unwrap().is_empty());
}
