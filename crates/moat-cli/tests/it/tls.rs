//! The upstream over TLS. The gate trusts the system's CA store (here `SSL_CERT_FILE`, which the
//! system store honours, as corporate proxies that re-sign TLS need), never roots bundled into
//! the binary: an upstream signed by a CA in the store is served, any other is refused.

use std::path::Path;

use moat_test_support::clients::{Client, Workspace};
use moat_test_support::gate::MoatGate;
use moat_test_support::npm::FixtureRegistry;
use moat_test_support::raw_http;
use moat_test_support::tls::{TestCa, TlsFront};

use crate::{MOAT, POLICY, advisories, gate_args, popular, world};

/// A gate in front of `front` whose system trust store is the one certificate `ca_pem`.
fn gate_trusting(front: &TlsFront, ca_pem: &str) -> (MoatGate, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("ca.pem");
    std::fs::write(&store, ca_pem).expect("write the trust store");
    let (advisories, popular) = (advisories(), popular());
    let args = gate_args(
        front.url(),
        &advisories,
        &popular,
        &dir.path().join("data"),
        POLICY,
        &[],
    )
    .env("SSL_CERT_FILE", &store.to_string_lossy())
    .env(
        "SSL_CERT_DIR",
        &dir.path().join("no-certs-here").to_string_lossy(),
    );
    (MoatGate::start(Path::new(MOAT), args), dir)
}

#[test]
fn an_upstream_signed_by_a_ca_in_the_system_store_is_trusted() {
    let upstream = FixtureRegistry::start(world());
    let front = TlsFront::start(upstream.url());
    let (gate, _dir) = gate_trusting(&front, front.ca_pem());
    let workspace = Workspace::new();
    let output = Client::Npm.add(&workspace, &gate.npm_registry(), &["tiny-pad@^1.0.0"]);
    output.assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.1.0"),
        "{output}"
    );
    assert!(
        upstream.requests().iter().any(|r| r.path == "/tiny-pad"),
        "the packument came through the TLS front: {:?}",
        upstream.requests()
    );
}

#[test]
fn an_upstream_signed_by_a_ca_outside_the_system_store_is_refused() {
    let upstream = FixtureRegistry::start(world());
    let front = TlsFront::start(upstream.url());
    let stranger = TestCa::new("a CA nobody trusts");
    let (gate, _dir) = gate_trusting(&front, &stranger.pem);
    let response = raw_http::get(gate.url(), "/npm/tiny-pad");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.text().to_lowercase().contains("certificate"),
        "the refusal names the certificate problem: {}",
        response.text()
    );
    assert!(
        upstream.requests().is_empty(),
        "nothing reached the upstream past the failed handshake: {:?}",
        upstream.requests()
    );
}
