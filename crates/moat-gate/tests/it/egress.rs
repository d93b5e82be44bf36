//! The egress forward proxy: absolute-form and CONNECT to hosts on `[egress] allow`, 403 with
//! the reason (rule `moat.egress`) for everything else, every decision recorded first.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test servers: a panic is a failed test

use std::net::SocketAddr;

use axum::extract::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{POLICY, decisions, exchange, raw, raw_unix, request_text, start_session};

/// A loopback server standing in for an allowed host: it echoes what it received.
async fn start_target() -> SocketAddr {
    async fn echo(request: Request) -> String {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        format!(
            "{} {} host={} proxy-authorization={} x-hop={} x-kept={}",
            request.method(),
            request.uri(),
            header("host"),
            header("proxy-authorization"),
            header("x-hop"),
            header("x-kept"),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn egress_policy(allow: &[String]) -> String {
    let allow: Vec<String> = allow.iter().map(|entry| format!("\"{entry}\"")).collect();
    format!("{POLICY}\n[egress]\nallow = [{}]\n", allow.join(", "))
}

#[tokio::test]
async fn allowed_host_through_absolute_form() {
    let target = start_target().await;
    let gate = start_session(&egress_policy(&[target.to_string()]), |_| {}).await;
    let url = format!("http://{target}/hello?x=1");
    let reply = raw_unix(
        &gate.socket,
        "GET",
        &url,
        &[
            ("Host", &target.to_string()),
            ("Proxy-Authorization", "Basic c2VjcmV0"),
            ("Connection", "close, x-hop"),
            ("X-Hop", "dropped"),
            ("X-Kept", "kept"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.status_line);
    assert_eq!(
        reply.text(),
        format!("GET /hello?x=1 host={target} proxy-authorization=- x-hop=- x-kept=kept")
    );
    let records = decisions(&gate.audit);
    let record = records.iter().find(|r| r.ecosystem == "egress").unwrap();
    assert_eq!(record.package, target.to_string());
    assert_eq!(
        (record.request.as_str(), record.action.as_str()),
        ("http", "allow")
    );
    assert_eq!(record.identity, "session:s-test-1");
    assert!(record.rules.is_empty() && record.message.is_none());
}

#[tokio::test]
async fn allowed_host_through_connect() {
    let target = start_target().await;
    let gate = start_session(&egress_policy(&[target.to_string()]), |_| {}).await;
    let mut stream = tokio::net::UnixStream::connect(&gate.socket).await.unwrap();
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(connect.as_bytes()).await.unwrap();
    // Read the answer head byte by byte: whatever follows it belongs to the tunnel.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200 Connection established\r\n"),
        "{head}"
    );
    // No body framing a client could misread as the start of the tunnel.
    let head_lower = head.to_ascii_lowercase();
    assert!(!head_lower.contains("transfer-encoding"), "{head}");
    // Inside the tunnel: a plain HTTP exchange with the target.
    let reply = exchange(
        stream,
        &request_text("GET", "/tunnelled", &[("Host", "inner")]),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().starts_with("GET /tunnelled host=inner"),
        "{}",
        reply.text()
    );
    let records = decisions(&gate.audit);
    let record = records.iter().find(|r| r.ecosystem == "egress").unwrap();
    assert_eq!(
        (
            record.package.as_str(),
            record.request.as_str(),
            record.action.as_str()
        ),
        (target.to_string().as_str(), "connect", "allow")
    );
}

#[tokio::test]
async fn hosts_not_on_the_allow_list_are_refused_with_the_reason() {
    let target = start_target().await;
    let gate = start_session(&egress_policy(&[target.to_string()]), |_| {}).await;
    let denied = raw_unix(&gate.socket, "CONNECT", "example.com:443", &[]).await;
    let message = "moat: egress to example.com:443 denied (moat.egress): not in the policy's [egress] allow list; ask for \"example.com:443\" to be added to it";
    assert_eq!(denied.status, 403);
    assert_eq!(denied.status_line, format!("HTTP/1.1 403 {message}"));
    assert_eq!(denied.text(), format!("{message}\n"));
    // The allowed address on another port, by absolute form.
    let other_port = format!("http://127.0.0.1:{}/x", target.port() + 1);
    let denied = raw_unix(&gate.socket, "GET", &other_port, &[]).await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.status_line.contains("(moat.egress)"),
        "{}",
        denied.status_line
    );
    // https in absolute form is not forwarded (CONNECT is the way).
    let https = raw_unix(&gate.socket, "GET", &format!("https://{target}/"), &[]).await;
    assert_eq!(https.status, 400);

    let records = decisions(&gate.audit);
    let blocks: Vec<_> = records.iter().filter(|r| r.ecosystem == "egress").collect();
    assert_eq!(blocks.len(), 2, "{records:?}");
    assert!(blocks.iter().all(|r| r.action == "block"
        && r.rules == ["moat.egress"]
        && r.identity == "session:s-test-1"));
    assert_eq!(blocks[0].package, "example.com:443");
    assert_eq!(blocks[0].request, "connect");
    assert_eq!(blocks[0].message.as_deref(), Some(message));
    assert_eq!(blocks[1].request, "http");
}

#[tokio::test]
async fn nothing_is_allowed_by_default() {
    let target = start_target().await;
    let gate = start_session(POLICY, |_| {}).await;
    let denied = raw_unix(&gate.socket, "CONNECT", &target.to_string(), &[]).await;
    assert_eq!(denied.status, 403);
    let denied = raw(gate.tcp, "GET", &format!("http://{target}/"), &[]).await;
    assert_eq!(denied.status, 403);
    let records = decisions(&gate.audit);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].identity, "anonymous@127.0.0.1");
}

#[tokio::test]
async fn a_name_entry_never_reaches_a_loopback_address() {
    // `localhost` is on the list, but it resolves to loopback: only an address entry admits that.
    let target = start_target().await;
    let entry = format!("localhost:{}", target.port());
    let gate = start_session(&egress_policy(std::slice::from_ref(&entry)), |_| {}).await;
    let denied = raw_unix(&gate.socket, "CONNECT", &entry, &[]).await;
    assert_eq!(denied.status, 403, "{}", denied.status_line);
    assert!(
        denied
            .status_line
            .contains("resolves to a non-public address"),
        "{}",
        denied.status_line
    );
    let records = decisions(&gate.audit);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, "block");
}

#[tokio::test]
async fn shutdown_closes_open_tunnels() {
    let target = start_target().await;
    let policy = egress_policy(&[target.to_string()]);
    let mut gate = start_session(&policy, |config| {
        config.limits.shutdown_timeout = std::time::Duration::from_millis(200);
    })
    .await;
    let mut stream = tokio::net::UnixStream::connect(&gate.socket).await.unwrap();
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(connect.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // The tunnel is open and idle; ending the session closes it and the accept loop returns.
    gate.stop.take().unwrap().send(()).unwrap();
    gate.served.await.unwrap().unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(tokio::net::UnixStream::connect(&gate.socket).await.is_err());
}

/// Run curl (a real proxy client) with `args`; its exit code, stdout and stderr.
async fn curl(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--noproxy", ""])
            .args(&args)
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .output()
            .expect("curl is needed for this test");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn curl_goes_through_the_proxy_and_reads_the_refusal() {
    let target = start_target().await;
    let gate = start_session(&egress_policy(&[target.to_string()]), |_| {}).await;
    let proxy = format!("http://{}", gate.tcp);
    let url = format!("http://{target}/via-curl");
    let (code, out, err) = curl(vec!["-x".into(), proxy.clone(), url.clone()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("GET /via-curl host="), "{out}");
    // --proxytunnel: the same through CONNECT.
    let (code, out, err) = curl(vec!["-p".into(), "-x".into(), proxy.clone(), url]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("GET /via-curl host="), "{out}");
    // A refused CONNECT: curl prints the status, the body is the reason.
    let (code, _, err) = curl(vec!["-x".into(), proxy, "https://example.com/".into()]).await;
    assert_ne!(code, 0);
    assert!(err.contains("403"), "{err}");
    let records = decisions(&gate.audit);
    let actions: Vec<_> = records
        .iter()
        .map(|r| (r.request.as_str(), r.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("http", "allow"),
            ("connect", "allow"),
            ("connect", "block")
        ]
    );
}
