//! Route behaviour: ping, methods, why, ETags, not found, raw reason phrase.

use crate::support::{self, get, raw, start};

#[tokio::test]
async fn ping_method_and_not_found() {
    let gate = start().await;
    let ping = get(gate.addr, "/npm/-/ping").await;
    assert_eq!((ping.status, ping.text().as_str()), (200, "{}"));
    let post = raw(gate.addr, "POST", "/npm/demo", &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 405);
    assert!(
        post.status_line
            .starts_with("HTTP/1.1 405 moat: method not allowed"),
        "{}",
        post.status_line
    );
    let missing = get(gate.addr, "/npm/no-such-package").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), serde_json::json!({"error": "not found"}));
    assert_eq!(get(gate.addr, "/npm/demo/9.9.9").await.status, 404);
    assert_eq!(
        get(gate.addr, "/npm/demo/-/demo-9.9.9.tgz").await.status,
        404
    );
    assert_eq!(get(gate.addr, "/elsewhere").await.status, 404);
}

#[tokio::test]
async fn abbreviated_form_and_tarball_urls() {
    let gate = start().await;
    let reply = raw(
        gate.addr,
        "GET",
        "/npm/@scope%2fpkg",
        &[(
            "Accept",
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
        )],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/vnd.npm.install-v1+json")
    );
    let doc = reply.json();
    assert!(doc.get("readme").is_none());
    assert!(doc["versions"]["2.0.1"].get("description").is_none());
    let tarball = doc["versions"]["2.0.1"]["dist"]["tarball"]
        .as_str()
        .unwrap();
    assert_eq!(
        tarball,
        format!("http://{}/npm/@scope/pkg/-/pkg-2.0.1.tgz", gate.addr)
    );
    let fetched = get(gate.addr, &tarball[tarball.find("/npm/").unwrap()..]).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, support::tarball_bytes("@scope/pkg", "2.0.1"));
    // warm: served again from the cache, upstream asked once
    assert_eq!(
        get(gate.addr, "/npm/@scope/pkg/-/pkg-2.0.1.tgz")
            .await
            .status,
        200
    );
    assert_eq!(gate.upstream.hits_for("/tarballs/"), 1);
    let on_disk = std::fs::read_dir(gate.data_dir.path().join("cache/npm/sha512"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 1);
}

#[tokio::test]
async fn etag_revalidation_and_policy_dependence() {
    let gate = start().await;
    let first = get(gate.addr, "/npm/demo").await;
    let etag = first.header("etag").unwrap().to_owned();
    let again = raw(gate.addr, "GET", "/npm/demo", &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(
        gate.upstream.hits_for("/demo"),
        1,
        "warm path does not go upstream"
    );
    // The abbreviated form has its own ETag.
    let abbreviated = raw(
        gate.addr,
        "GET",
        "/npm/demo",
        &[("Accept", "application/vnd.npm.install-v1+json")],
    )
    .await;
    assert_ne!(abbreviated.header("etag"), Some(etag.as_str()));
    // Another policy: another ETag for the same upstream document.
    let (upstream, base) = support::start_upstream().await;
    let stricter = format!(
        "{}\n[[deny]]\npackage = \"npm:demo@1.0.0\"\nreason = \"test\"\n",
        support::POLICY
    );
    let other = support::start_with(upstream, &base, &stricter, |_| {}).await;
    let changed = raw(other.addr, "GET", "/npm/demo", &[("If-None-Match", &etag)]).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn why_text_and_json() {
    let gate = start().await;
    let text = get(gate.addr, "/-/why/npm/demo/1.1.0").await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let body = text.text();
    for needle in [
        "demo@1.1.0: blocked",
        "moat.vulnerable",
        "GHSA-demo-0000-0001 (critical)",
        "fixed in: 1.2.0",
        "[[waiver]]",
        "demo@1.0.1",
    ] {
        assert!(body.contains(needle), "missing {needle:?}:\n{body}");
    }
    let json = get(gate.addr, "/-/why/npm/demo/1.1.0?format=json")
        .await
        .json();
    assert_eq!(json["action"], "block");
    assert_eq!(json["approved"][0], "1.0.1");
    let json = raw(
        gate.addr,
        "GET",
        "/-/why/npm/evil-pkg",
        &[("Accept", "application/json")],
    )
    .await
    .json();
    assert_eq!(json["findings"][0]["rule"], "moat.malicious");
    let evil = get(gate.addr, "/-/why/npm/evil-pkg").await.text();
    assert!(evil.contains("moat.malicious cannot be waived"), "{evil}");
    assert_eq!(get(gate.addr, "/-/why/npm/demo/9.9.9").await.status, 404);
    let records = gate.audit.list(&moat_audit::ListQuery::default()).unwrap();
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.event, moat_audit::Event::Decision(d) if d.request == "why"))
    );
}

/// `serve_loops`: every connection is served, whichever loop it lands on, and a shutdown
/// drains them and returns once every loop has stopped; the listener is closed by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_loops_answer_every_connection_and_stop_on_shutdown() {
    use std::collections::HashMap;
    use std::sync::Arc;

    let (_upstream, base) = support::start_upstream().await;
    let data_dir = tempfile::tempdir().unwrap();
    let audit = moat_audit::AuditLog::open(&data_dir.path().join("audit.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = moat_gate::GateConfig::new(format!("http://{addr}"), data_dir.path());
    config.upstream.npm = base;
    let policy = moat_policy::Policy::from_toml(support::POLICY).unwrap();
    let gate =
        moat_gate::Gate::new(config, policy, support::advisories(), HashMap::new(), audit).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(moat_gate::serve_loops(listener, Arc::new(gate), 3, async {
        let _ = stopped.await;
    }));

    let requests: Vec<_> = (0..24)
        .map(|_| tokio::spawn(async move { get(addr, "/npm/demo/-/demo-1.0.1.tgz").await }))
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().status, 200);
    }
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Large answers (a 200 KiB tarball, a packument of about 100 KB) are kept in sealed memory and
/// sent with sendfile(2): they arrive whole and unchanged, from the upstream fetch and from
/// memory after it, over TCP and over a session's unix socket; HEAD gives the same length.
#[tokio::test]
async fn large_answers_arrive_unchanged_from_sealed_memory() {
    let gate = support::start().await;
    let tarball = support::tarball_bytes(support::BIG, "1.0.0");
    let tarball_path = format!("/npm/{0}/-/{0}-1.0.0.tgz", support::BIG);
    let packument_path = format!("/npm/{}", support::BIG);
    let mut packuments = Vec::new();
    for _ in 0..3 {
        let reply = get(gate.addr, &tarball_path).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.body == tarball, "the tarball arrived changed");
        let reply = get(gate.addr, &packument_path).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        packuments.push(reply.body);
    }
    assert!(packuments.windows(2).all(|pair| pair[0] == pair[1]));
    // The gate runs in this process: the tarball and the packument are held in sealed memfds.
    let sealed = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/memfd:moat-sealed"))
        .count();
    assert!(sealed >= 2, "{sealed} sealed memfds open");
    let doc: serde_json::Value = serde_json::from_slice(&packuments[0]).unwrap();
    assert_eq!(doc["versions"].as_object().unwrap().len(), 400);
    assert!(packuments[0].len() > 64 * 1024);
    let head = support::raw(gate.addr, "HEAD", &tarball_path, &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(tarball.len().to_string().as_str())
    );
    assert!(head.body.is_empty());

    let session = support::start_session(support::POLICY, |_| {}).await;
    for _ in 0..2 {
        let reply = support::raw_unix(&session.socket, "GET", &tarball_path, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            reply.body == tarball,
            "the tarball arrived changed on the unix socket"
        );
    }
}
