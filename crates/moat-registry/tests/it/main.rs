//! Integration tests of the upstream client against a raw TCP responder on 127.0.0.1:0.
#![allow(clippy::unwrap_used)] // test support: a panic is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moat_registry::{PackumentResponse, Upstream, UpstreamConfig, UpstreamError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serve every connection with `answer(request_head)`, recording the request heads.
async fn responder(answer: fn(&str) -> Vec<u8>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1
                {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                record.lock().unwrap().push(head.clone());
                let _ = stream.write_all(&answer(&head)).await;
            });
        }
    });
    (base, seen)
}

fn reply(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn client(base: &str) -> Upstream {
    let config = UpstreamConfig {
        npm: format!("{base}/"),
        timeout: Duration::from_millis(500),
        ..UpstreamConfig::default()
    };
    Upstream::new(&config).unwrap()
}

#[tokio::test]
async fn packument_fetch_revalidation_and_scoped_url() {
    let (base, seen) = responder(|head| {
        if head.contains("if-none-match: \"v1\"") {
            reply("304 Not Modified", "ETag: \"v1\"\r\n", "")
        } else if head.starts_with("GET /@scope%2fpkg ") {
            reply("200 OK", "ETag: \"v1\"\r\n", r#"{"name":"@scope/pkg"}"#)
        } else {
            reply("404 Not Found", "", "{}")
        }
    })
    .await;
    let upstream = client(&base);
    let fresh = upstream
        .packument("@scope/pkg", None, 1 << 20)
        .await
        .unwrap();
    let PackumentResponse::Fresh { body, etag } = fresh else {
        panic!("{fresh:?}")
    };
    assert_eq!(&body[..], br#"{"name":"@scope/pkg"}"#);
    assert_eq!(etag.as_deref(), Some("\"v1\""));
    let again = upstream
        .packument("@scope/pkg", Some("\"v1\""), 1 << 20)
        .await
        .unwrap();
    assert_eq!(again, PackumentResponse::NotModified);
    assert_eq!(
        upstream.packument("missing", None, 1 << 20).await.unwrap(),
        PackumentResponse::NotFound
    );
    let heads = seen.lock().unwrap();
    assert!(
        heads[0].contains("accept: application/json"),
        "always the full packument: {}",
        heads[0]
    );
    assert!(heads[0].contains("user-agent: moat/"), "{}", heads[0]);
}

#[tokio::test]
async fn failures_are_classified() {
    let (base, _) = responder(|head| {
        if head.starts_with("GET /big ") {
            reply("200 OK", "", &"x".repeat(2048))
        } else if head.starts_with("GET /slow ") {
            std::thread::sleep(Duration::from_millis(900));
            reply("200 OK", "", "{}")
        } else {
            reply("503 Service Unavailable", "", "down")
        }
    })
    .await;
    let upstream = client(&base);
    assert_eq!(
        upstream.packument("down", None, 1 << 20).await,
        Err(UpstreamError::Status(503))
    );
    assert_eq!(
        upstream.packument("big", None, 1024).await,
        Err(UpstreamError::TooLarge(1024))
    );
    assert_eq!(
        upstream.packument("slow", None, 1 << 20).await,
        Err(UpstreamError::TimedOut(Duration::from_millis(500)))
    );
    assert_eq!(
        upstream.artifact("file:///etc/passwd", 10).await,
        Err(UpstreamError::InvalidUrl("file:///etc/passwd".into()))
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let err = client(&dead)
        .packument("x", None, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().starts_with("unreachable: "), "{err}");
}

#[tokio::test]
async fn proxies_come_from_config_only() {
    let (proxy, seen) = responder(|_| reply("200 OK", "", r#"{"name":"via-proxy"}"#)).await;
    let config = UpstreamConfig {
        npm: "http://registry.invalid".into(),
        proxy: Some(moat_registry::ProxyConfig {
            http: Some(proxy),
            https: None,
            no_proxy: None,
        }),
        ..UpstreamConfig::default()
    };
    let upstream = Upstream::new(&config).unwrap();
    let answer = upstream
        .packument("via-proxy", None, 1 << 20)
        .await
        .unwrap();
    assert!(
        matches!(answer, PackumentResponse::Fresh { .. }),
        "{answer:?}"
    );
    assert!(seen.lock().unwrap()[0].starts_with("GET http://registry.invalid/via-proxy HTTP/1.1"));
    let bad = UpstreamConfig {
        proxy: Some(moat_registry::ProxyConfig {
            http: Some("::not a url".into()),
            https: None,
            no_proxy: None,
        }),
        ..UpstreamConfig::default()
    };
    assert!(matches!(Upstream::new(&bad), Err(UpstreamError::Config(_))));
}
