//! The core cases every client must pass, written once. Reasons are asserted where
//! `shared/reference/clients.md` says the client prints them.

use moat_test_support::clients::{Client, Workspace};

use crate::{Env, MINIMIST_ADVISORY, approved_version};

/// A range whose newest version is blocked installs the newest approved one: npm and yarn 4
/// skip the deprecated version, pnpm 10 and yarn 1 follow `latest`, which the gate moved.
pub fn range_is_steered(client: Client) {
    let env = Env::start();
    let workspace = Workspace::new();
    client
        .add(&workspace, &env.registry(), &["tiny-pad@^1.0.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.1.0"),
        "{}",
        client.name()
    );
}

/// An exact pin of a vulnerable version fails. Every client prints the block message: npm,
/// pnpm 10 and yarn 1 in their deprecation warning, npm, pnpm 10 and yarn 4 in the 403 of
/// the tarball. The agent retries with the approved version, which installs.
pub fn pin_is_refused_with_reason_and_correction_installs(client: Client) {
    let env = Env::start();
    let workspace = Workspace::new();
    let refused = client.add(&workspace, &env.registry(), &["minimist@1.2.5"]);
    refused
        .assert_failure()
        .assert_contains("moat: blocked minimist@1.2.5")
        .assert_contains(MINIMIST_ADVISORY);
    assert_eq!(workspace.installed_version("minimist"), None);
    let approved = approved_version(&refused.text(), "minimist")
        .unwrap_or_else(|| panic!("no approved version in: {refused}"));
    workspace.reset_install();
    client
        .add(
            &workspace,
            &env.registry(),
            &[&format!("minimist@{approved}")],
        )
        .assert_success();
    assert_eq!(workspace.installed_version("minimist"), Some(approved));
}

/// The tarball's 403 reason itself (not only the deprecation warning) reaches the user, for
/// the clients that print it: npm, pnpm 10, yarn 4.
pub fn tarball_refusal_shows_the_reason(client: Client, marker: &str) {
    let env = Env::start();
    let workspace = Workspace::new();
    let refused = client.add(&workspace, &env.registry(), &["minimist@1.2.5"]);
    refused.assert_failure().assert_contains(marker);
    let shown_with_status = refused
        .text()
        .lines()
        .any(|line| line.contains("403") && line.contains("moat: blocked minimist@1.2.5"));
    assert!(shown_with_status, "no 403 line with the reason: {refused}");
}

/// A malicious package is refused on its metadata; npm, pnpm and yarn 4 print the reason
/// phrase, yarn 1 the JSON error: all of them show the message.
pub fn malicious_is_refused_with_reason(client: Client) {
    let env = Env::start();
    let workspace = Workspace::new();
    client
        .add(&workspace, &env.registry(), &["cxp-jquery"])
        .assert_failure()
        .assert_contains("moat: blocked cxp-jquery")
        .assert_contains("moat.malicious");
    assert_eq!(workspace.installed_version("cxp-jquery"), None);
}

/// A dependency's range is steered the same way (`uses-tiny-pad` asks for `tiny-pad@^1.0.0`).
pub fn dependency_range_is_steered(client: Client) {
    let env = Env::start();
    let workspace = Workspace::new();
    client
        .add(&workspace, &env.registry(), &["uses-tiny-pad"])
        .assert_success();
    let versions: Vec<String> = workspace
        .versions_anywhere("tiny-pad")
        .into_iter()
        .collect();
    assert_eq!(versions, ["1.1.0"], "{}", client.name());
}
