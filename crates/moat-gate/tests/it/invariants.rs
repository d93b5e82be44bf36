//! The security invariants of the gate, one named test each.

use std::time::Duration;

use crate::support::{self, Mode, get, raw, start, tarball_bytes};

fn assert_blocked(reply: &support::Reply, subject: &str, context: &str) {
    assert_eq!(reply.status, 403, "{context}: {reply:?}");
    assert!(
        reply
            .status_line
            .starts_with(&format!("HTTP/1.1 403 moat: blocked {subject}")),
        "{context}: status line {:?}",
        reply.status_line
    );
}

#[tokio::test]
async fn blocked_version_unreachable_by_any_spelling() {
    let gate = start().await;
    let blocked_tarball = tarball_bytes("demo", "1.1.0");
    // Every spelling of the tarball and version document of demo@1.1.0 gets the 403.
    for path in [
        "/npm/demo/-/demo-1.1.0.tgz",
        "//npm//demo//-//demo-1.1.0.tgz",
        "/npm/demo/-/DEMO-1.1.0.tgz",
        "/npm/%64emo/-/demo-1.1.0.tgz",
        "/npm/demo%2f-%2fdemo-1.1.0.tgz",
        "/npm/demo%2F-%2Fdemo-1.1.0.tgz",
        "/npm/demo/1.1.0",
        "/npm/demo/v1.1.0",
        "/npm/demo/=1.1.0",
        "/npm/demo/beta",
        "/npm/demo/1.1.0?write=true",
    ] {
        assert_blocked(&get(gate.addr, path).await, "demo@1.1.0", path);
    }
    let head = raw(gate.addr, "HEAD", "/npm/demo/-/demo-1.1.0.tgz", &[]).await;
    assert_blocked(&head, "demo@1.1.0", "HEAD");
    assert!(head.body.is_empty());
    let range = raw(
        gate.addr,
        "GET",
        "/npm/demo/-/demo-1.1.0.tgz",
        &[("Range", "bytes=0-3")],
    )
    .await;
    assert_blocked(&range, "demo@1.1.0", "Range");
    // Another case of the name is another upstream package (or none), never the blocked bytes.
    let upper = get(gate.addr, "/npm/DEMO/-/demo-1.1.0.tgz").await;
    assert!(matches!(upper.status, 403 | 404), "{upper:?}");
    assert_ne!(upper.body, blocked_tarball);
    // Spellings that could mean something else elsewhere are refused outright.
    for path in [
        "/npm/demo%252f-%252fdemo-1.1.0.tgz",
        "/npm/x/..%2fdemo/-/demo-1.1.0.tgz",
        "/npm/demo/-/demo-1.1.0.tgz%00",
        "/npm/demo%5c-%5cdemo-1.1.0.tgz",
    ] {
        assert_eq!(get(gate.addr, path).await.status, 400, "{path}");
    }
    // Scoped: every encoding of the scope.
    for path in [
        "/npm/@scope/pkg/-/pkg-2.0.0.tgz",
        "/npm/@scope%2fpkg/-/pkg-2.0.0.tgz",
        "/npm/@scope%2Fpkg/-/pkg-2.0.0.tgz",
        "/npm/%40scope%2Fpkg/-/pkg-2.0.0.tgz",
        "/npm/%40scope%2fpkg/2.0.0",
    ] {
        assert_blocked(&get(gate.addr, path).await, "@scope/pkg@2.0.0", path);
    }
    // Metadata steers: deprecated with the message, latest moved, in both forms.
    for accept in ["application/json", "application/vnd.npm.install-v1+json"] {
        let reply = raw(gate.addr, "GET", "/npm/demo", &[("Accept", accept)]).await;
        assert_eq!(reply.status, 200, "{accept}");
        let doc = reply.json();
        assert_eq!(doc["dist-tags"]["latest"], "1.0.1", "{accept}");
        let deprecated = doc["versions"]["1.1.0"]["deprecated"].as_str().unwrap();
        assert!(
            deprecated.starts_with("moat: blocked demo@1.1.0"),
            "{deprecated}"
        );
        assert!(doc["versions"]["1.0.1"].get("deprecated").is_none());
    }
    let latest = get(gate.addr, "/npm/demo/latest").await;
    assert_eq!(latest.status, 200);
    assert_eq!(latest.json()["version"], "1.0.1");
    let tags = get(gate.addr, "/npm/-/package/demo/dist-tags").await;
    assert_eq!(tags.json()["latest"], "1.0.1");
    // The approved version is served, bytes unchanged.
    let ok = get(gate.addr, "/npm/demo/-/demo-1.0.1.tgz").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, tarball_bytes("demo", "1.0.1"));
    // Every block was recorded: in full, or counted as a repeat of one recorded in full.
    gate.audit.flush_repeats().await.unwrap();
    let blocks = gate
        .audit
        .list(&moat_audit::ListQuery {
            action: Some("block".into()),
            ..Default::default()
        })
        .unwrap();
    let refused: u64 = blocks
        .iter()
        .map(|stored| match &stored.event {
            moat_audit::Event::Decision(decision) => decision.answers(),
            other @ (moat_audit::Event::SessionStart(_) | moat_audit::Event::SessionEnd(_)) => {
                panic!("not a decision: {other:?}")
            }
        })
        .sum();
    assert!(refused >= 16, "{refused}");
}

#[tokio::test]
async fn no_audit_record_no_answer() {
    let gate = start().await;
    // Warm the caches first, so that only the audit stands between the client and the answer.
    assert_eq!(get(gate.addr, "/npm/demo").await.status, 200);
    assert_eq!(
        get(gate.addr, "/npm/demo/-/demo-1.0.1.tgz").await.status,
        200
    );
    gate.audit.shutdown().await;
    for path in [
        "/npm/demo",
        "/npm/demo/1.0.1",
        "/npm/demo/-/demo-1.0.1.tgz",
        "/npm/demo/-/demo-1.1.0.tgz",
        "/npm/evil-pkg",
        "/-/why/npm/demo/1.1.0",
    ] {
        let reply = get(gate.addr, path).await;
        assert_eq!(reply.status, 503, "{path}");
        assert_eq!(
            reply.status_line, "HTTP/1.1 503 moat: audit log unavailable; refusing to answer",
            "{path}"
        );
        assert!(!reply.text().contains("tarball of"), "{path}");
        assert!(!reply.text().contains("versions"), "{path}");
    }
}

#[tokio::test]
async fn upstream_integrity_mismatch_is_refused_and_not_cached() {
    let gate = start().await;
    for attempt in 0..2 {
        let reply = get(gate.addr, "/npm/badsum/-/badsum-1.0.0.tgz").await;
        assert_eq!(reply.status, 502, "{reply:?}");
        assert!(
            reply.status_line.starts_with(
                "HTTP/1.1 502 moat: upstream tarball for badsum@1.0.0 failed its integrity check"
            ),
            "{}",
            reply.status_line
        );
        assert!(!reply.text().contains("tampered"));
        assert_eq!(
            gate.upstream.hits_for("/tarballs/badsum"),
            attempt + 1,
            "refetched: nothing was cached"
        );
    }
    let cache = gate.data_dir.path().join("cache/npm/sha512");
    let cached = std::fs::read_dir(&cache)
        .map(|dir| dir.count())
        .unwrap_or(0);
    assert_eq!(cached, 0, "nothing written to {}", cache.display());
}

#[tokio::test]
async fn upstream_down_is_502_and_nothing_cached() {
    // Nothing listening: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (upstream, _) = support::start_upstream().await;
    let gate = support::start_with(upstream, &dead, support::POLICY, |_| {}).await;
    let reply = get(gate.addr, "/npm/demo").await;
    assert_eq!(reply.status, 502);
    assert!(
        reply
            .status_line
            .starts_with("HTTP/1.1 502 moat: upstream npm unreachable: "),
        "{}",
        reply.status_line
    );
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("moat: upstream npm unreachable")
    );

    // A failing upstream: 5xx is a 502, and the failure is not cached once it recovers.
    let gate = start().await;
    gate.upstream.set_mode(Mode::Status(500));
    let reply = get(gate.addr, "/npm/demo").await;
    assert_eq!(reply.status, 502);
    assert!(
        reply
            .status_line
            .contains("moat: upstream npm answered HTTP 500"),
        "{}",
        reply.status_line
    );
    gate.upstream.set_mode(Mode::Normal);
    assert_eq!(get(gate.addr, "/npm/demo").await.status, 200);

    // A slow upstream: 504 with the timeout.
    let (upstream, base) = support::start_upstream().await;
    upstream.set_mode(Mode::Slow(Duration::from_secs(3)));
    let gate = support::start_with(upstream, &base, support::POLICY, |config| {
        config.upstream.timeout = Duration::from_millis(300);
    })
    .await;
    let reply = get(gate.addr, "/npm/demo").await;
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        reply
            .status_line
            .starts_with("HTTP/1.1 504 moat: upstream npm timed out after"),
        "{}",
        reply.status_line
    );
}

#[tokio::test]
async fn malformed_upstream_json_is_502() {
    let gate = start().await;
    let reply = get(gate.addr, "/npm/broken").await;
    assert_eq!(reply.status, 502);
    assert!(
        reply
            .status_line
            .starts_with("HTTP/1.1 502 moat: upstream sent malformed metadata for broken: "),
        "{}",
        reply.status_line
    );
    let reply = get(gate.addr, "/npm/wrongname/-/wrongname-1.0.0.tgz").await;
    assert_eq!(reply.status, 502);
    assert!(
        reply
            .status_line
            .contains("is for `other`, not `wrongname`"),
        "{}",
        reply.status_line
    );
}

#[tokio::test]
async fn whole_package_block_decided_without_upstream() {
    let gate = start().await;
    for path in [
        "/npm/evil-pkg",
        "/npm/evil-pkg/1.0.0",
        "/npm/evil-pkg/latest",
        "/npm/evil-pkg/-/evil-pkg-1.0.0.tgz",
        "/npm/EVIL-PKG",
        "/npm/-/package/evil-pkg/dist-tags",
    ] {
        let reply = get(gate.addr, path).await;
        assert_eq!(reply.status, 403, "{path}");
        assert!(
            reply.status_line.contains("moat: blocked "),
            "{path}: {}",
            reply.status_line
        );
        let body = reply.json();
        assert!(
            body["error"].as_str().unwrap().contains("moat.malicious"),
            "{body}"
        );
        assert_eq!(body["moat"]["action"], "block");
    }
    let denied = get(gate.addr, "/npm/denied-pkg").await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.status_line.contains("moat.denied"),
        "{}",
        denied.status_line
    );
    assert_eq!(gate.upstream.hits_for("evil"), 0, "upstream never asked");
    assert_eq!(gate.upstream.hits_for("denied"), 0, "upstream never asked");
}
