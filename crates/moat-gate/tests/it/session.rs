//! A session's unix socket: every request on it is attributed to the session.

use crate::support::{self, POLICY, decisions, raw, raw_unix, start_session};

#[tokio::test]
async fn unix_socket_requests_are_attributed_to_the_session() {
    let gate = start_session(POLICY, |_| {}).await;
    let packument = raw_unix(&gate.socket, "GET", "/npm/demo", &[]).await;
    assert_eq!(packument.status, 200, "{}", packument.text());
    let blocked = raw_unix(&gate.socket, "GET", "/npm/demo/-/demo-1.1.0.tgz", &[]).await;
    assert_eq!(blocked.status, 403);
    assert!(
        blocked.status_line.contains("moat: blocked demo@1.1.0"),
        "{}",
        blocked.status_line
    );
    let anonymous = raw(gate.tcp, "GET", "/npm/demo/-/demo-1.0.1.tgz", &[]).await;
    assert_eq!(anonymous.status, 200);

    let records = decisions(&gate.audit);
    let session_identity = format!("session:{}", support::session().id);
    let block = records
        .iter()
        .find(|r| r.action == "block" && r.package == "demo")
        .expect("the block is recorded");
    assert_eq!(block.identity, session_identity);
    assert!(
        records
            .iter()
            .any(|r| r.identity == "anonymous@127.0.0.1" && r.version.as_deref() == Some("1.0.1")),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .filter(|r| r.version.as_deref() != Some("1.0.1"))
            .all(|r| r.identity == session_identity),
        "{records:?}"
    );
}

#[tokio::test]
async fn a_registry_request_sent_through_the_proxy_is_served_by_the_gate() {
    // A client that ignores NO_PROXY sends `GET http://127.0.0.1:7070/npm/...` (the gate's own
    // public URL) in absolute form: it is a registry request, not egress.
    let gate = start_session(POLICY, |_| {}).await;
    let ping = raw_unix(&gate.socket, "GET", "http://127.0.0.1:7070/npm/-/ping", &[]).await;
    assert_eq!((ping.status, ping.text().as_str()), (200, "{}"));
    let blocked = raw_unix(
        &gate.socket,
        "GET",
        "http://127.0.0.1:7070/npm/demo/-/demo-1.1.0.tgz",
        &[],
    )
    .await;
    assert_eq!(blocked.status, 403);
    assert!(
        decisions(&gate.audit)
            .iter()
            .all(|r| r.ecosystem != "egress")
    );
}
