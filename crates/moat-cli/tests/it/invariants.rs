//! Named security invariants (DESIGN.md "Security invariants"), end to end.

use std::path::Path;

use moat_test_support::clients::{Client, Workspace};
use moat_test_support::gate::{GateArgs, MoatGate};
use moat_test_support::raw_http;

use crate::{Env, GONE_EVIL_ADVISORY, MOAT, POLICY, date_from_today};

const NPM: Client = Client::Npm;

fn waiver(rule: &str, package: &str, until: &str) -> String {
    format!(
        "\n[[waiver]]\nrule = \"{rule}\"\npackage = \"{package}\"\nuntil = \"{until}\"\n\
         reason = \"e2e waiver\"\n"
    )
}

/// A version admitted (and cached) under one policy is refused once the policy changes: the
/// cache never answers for the policy.
#[test]
fn cached_artifact_is_refused_after_the_policy_changes() {
    let waived = format!(
        "{POLICY}{}",
        waiver("moat.vulnerable", "npm:tiny-pad@1.2.0", &date_from_today(1))
    );
    let mut env = Env::start_with(&waived, &[]);
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["tiny-pad@1.2.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.2.0")
    );
    let packument = |env: &Env| {
        raw_http::request(
            env.gate.url(),
            "GET",
            "/npm/tiny-pad",
            &[("Accept", "application/json")],
        )
    };
    let before = packument(&env);
    assert_eq!(before.status, 200, "{}", before.status_line);

    env.restart_with(POLICY, &[]);
    let tarball = raw_http::get(env.gate.url(), "/npm/tiny-pad/-/tiny-pad-1.2.0.tgz");
    assert_eq!(tarball.status, 403, "{}", tarball.status_line);
    assert!(
        tarball.status_line.contains("moat: blocked tiny-pad@1.2.0"),
        "{}",
        tarball.status_line
    );
    let after = packument(&env);
    assert_eq!(after.status, 200, "{}", after.status_line);
    let deprecated = after.json()["versions"]["1.2.0"]["deprecated"].clone();
    assert!(
        deprecated
            .as_str()
            .is_some_and(|d| d.contains("moat: blocked")),
        "1.2.0 not marked after the policy change: {deprecated}"
    );
    if let (Some(old), Some(new)) = (before.header("etag"), after.header("etag")) {
        assert_ne!(old, new, "the metadata ETag must change with the policy");
    }
    let fresh = Workspace::new();
    NPM.add(&fresh, &env.registry(), &["tiny-pad@1.2.0"])
        .assert_failure()
        .assert_contains("moat.vulnerable");
    assert_eq!(fresh.installed_version("tiny-pad"), None);
}

/// Malicious is never waivable: a policy that tries is refused before the gate serves
/// anything.
#[test]
fn malicious_cannot_be_waived() {
    let env = Env::start();
    let policy = format!(
        "{POLICY}{}",
        waiver("moat.malicious", "npm:cxp-jquery", &date_from_today(30))
    );
    let advisories = crate::advisories();
    let popular = crate::popular();
    let args = GateArgs::new(
        env.upstream.url(),
        advisories.path(),
        popular.path(),
        &policy,
    );
    match MoatGate::try_start(Path::new(MOAT), args) {
        Ok(gate) => {
            // If it starts anyway, it must still refuse the package.
            let response = raw_http::get(gate.url(), "/npm/cxp-jquery");
            panic!(
                "the gate started with a waiver of moat.malicious; /npm/cxp-jquery -> {}",
                response.status_line
            );
        }
        Err(failure) => assert!(failure.contains("cannot be waived"), "{failure}"),
    }
}

/// Deny wins: a waiver for the same version does not lift a deny.
#[test]
fn deny_wins_over_a_waiver() {
    let policy = format!(
        "{POLICY}\n[[deny]]\npackage = \"npm:tiny-pad@1.2.0\"\nreason = \"e2e: denied version\"\n{}",
        waiver(
            "moat.vulnerable",
            "npm:tiny-pad@1.2.0",
            &date_from_today(30)
        )
    );
    let env = Env::start_with(&policy, &[]);
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["tiny-pad@1.2.0"])
        .assert_failure()
        .assert_contains("moat: blocked tiny-pad@1.2.0")
        .assert_contains("moat.denied");
    NPM.add(&workspace, &env.registry(), &["tiny-pad@^1.0.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.1.0")
    );
}

/// A whole-package block is decided from the name alone: a malicious name the upstream does
/// not have answers 403 with the reason, not 404.
#[test]
fn malicious_name_is_refused_even_when_upstream_has_none() {
    let env = Env::start();
    let response = raw_http::get(env.gate.url(), "/npm/gone-evil");
    assert_eq!(response.status, 403, "{}", response.status_line);
    assert!(
        response.status_line.contains("moat.malicious"),
        "{}",
        response.status_line
    );
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["gone-evil"])
        .assert_failure()
        .assert_contains("moat: blocked gone-evil")
        .assert_contains(GONE_EVIL_ADVISORY);
}

/// A policy change reaches a client whose on-disk metadata cache is warm (pnpm and yarn 4 keep
/// one; DESIGN.md: the ETag depends on the policy). Whatever the client does with its cache,
/// the newly blocked version never installs; the expected outcome is the newest approved one.
fn policy_change_reaches_a_warm_client_cache(client: Client) {
    let waived = format!(
        "{POLICY}{}",
        waiver("moat.vulnerable", "npm:tiny-pad@1.2.0", &date_from_today(1))
    );
    let mut env = Env::start_with(&waived, &[]);
    let workspace = Workspace::new();
    client
        .add(&workspace, &env.registry(), &["tiny-pad@^1.0.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.2.0")
    );

    env.restart_with(POLICY, &[]);
    workspace.reset_project();
    let output = client.add(&workspace, &env.registry(), &["tiny-pad@^1.0.0"]);
    assert_ne!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.2.0"),
        "a blocked version installed from a warm cache: {output}"
    );
    output.assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.1.0"),
        "{output}"
    );
}

#[test]
fn policy_change_reaches_npm_with_a_warm_cache() {
    policy_change_reaches_a_warm_client_cache(Client::Npm);
}

#[test]
fn policy_change_reaches_pnpm_with_a_warm_cache() {
    policy_change_reaches_a_warm_client_cache(Client::Pnpm);
}

#[test]
fn policy_change_reaches_yarn4_with_a_warm_cache() {
    policy_change_reaches_a_warm_client_cache(Client::Yarn4);
}
