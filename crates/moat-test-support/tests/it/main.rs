//! The fixture upstreams alone, without a gate: every real client installs from them (npm
//! clients here, pip and uv in `python`, cargo in `cargo`). When these fail the fixture is
//! wrong, not the gate.

mod cargo;
mod python;

use moat_test_support::clients::{Client, Workspace};
use moat_test_support::npm::{FixtureRegistry, Package, Version};

fn world() -> Vec<Package> {
    vec![
        Package::new("minimist").versions(&["1.2.0", "1.2.5", "1.2.8"]),
        Package::new("tiny-pad").versions(&["1.0.0", "1.1.0", "1.2.0"]),
        Package::new("@fixture/scoped")
            .versions(&["1.0.0", "1.1.0"])
            .tag("next", "1.0.0"),
        Package::new("uses-tiny-pad").version(
            Version::new("2.0.0")
                .dependency("tiny-pad", "^1.0.0")
                .file("lib/extra.js", "module.exports = 2;\n"),
        ),
    ]
}

fn installs_from_the_fixture(client: Client) {
    let upstream = FixtureRegistry::start(world());
    let registry = format!("{}/", upstream.url());
    let workspace = Workspace::new();
    client
        .add(
            &workspace,
            &registry,
            &["minimist@^1.2.0", "@fixture/scoped", "uses-tiny-pad"],
        )
        .assert_success();
    assert_eq!(
        workspace.installed_version("minimist").as_deref(),
        Some("1.2.8")
    );
    assert_eq!(
        workspace.installed_version("@fixture/scoped").as_deref(),
        Some("1.1.0")
    );
    assert_eq!(
        workspace.installed_version("uses-tiny-pad").as_deref(),
        Some("2.0.0")
    );
    let extra = workspace
        .project()
        .join("node_modules/uses-tiny-pad/lib/extra.js");
    assert!(extra.is_file(), "extra file not unpacked");
    let tarballs = upstream
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(".tgz"))
        .count();
    assert!(tarballs >= 4, "{:?}", upstream.requests());
}

#[test]
fn npm_installs_from_the_fixture() {
    installs_from_the_fixture(Client::Npm);
}

#[test]
fn pnpm_installs_from_the_fixture() {
    installs_from_the_fixture(Client::Pnpm);
}

#[test]
fn yarn1_installs_from_the_fixture() {
    installs_from_the_fixture(Client::Yarn1);
}

#[test]
fn yarn4_installs_from_the_fixture() {
    installs_from_the_fixture(Client::Yarn4);
}
