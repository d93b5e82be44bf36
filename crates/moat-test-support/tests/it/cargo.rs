//! cargo against the fixture sparse registry alone, without a gate.

use moat_test_support::clients::CargoProject;
use moat_test_support::crates::{Crate, CrateVersion, FixtureCrates};

fn world() -> Vec<Crate> {
    vec![
        Crate::new("tiny_pad")
            .version("1.0.0")
            .version(CrateVersion::new("1.1.0").published_days_ago(30))
            .version(CrateVersion::new("1.2.0").yanked()),
        Crate::new("uses-tiny-pad")
            .version(CrateVersion::new("2.0.0").dependency("tiny_pad", "^1.0")),
    ]
}

#[test]
fn cargo_resolves_fetches_and_builds_from_the_fixture() {
    let registry = FixtureCrates::start(world());
    let project = CargoProject::new(
        &registry.index_url(),
        &[("uses-tiny-pad", "2"), ("tiny_pad", "^1.0")],
    );
    project.generate_lockfile().assert_success();
    assert_eq!(project.locked_version("tiny_pad").as_deref(), Some("1.1.0"));
    assert_eq!(
        project.locked_version("uses-tiny-pad").as_deref(),
        Some("2.0.0")
    );
    let lock = project.lockfile().expect("Cargo.lock written");
    assert!(
        lock.contains(&format!(
            "checksum = \"{}\"",
            registry.cksum("tiny_pad", "1.1.0")
        )),
        "{lock}"
    );
    project.fetch().assert_success();
    project.write(
        "src/lib.rs",
        "pub fn both() -> (&'static str, &'static str) { (tiny_pad::VERSION, uses_tiny_pad::version()) }\n",
    );
    project.build_offline().assert_success();
    let paths: Vec<String> = registry.requests().into_iter().map(|r| r.path).collect();
    for expected in [
        "/index/config.json",
        "/index/ti/ny/tiny_pad",
        "/index/us/es/uses-tiny-pad",
        "/dl/tiny_pad/1.1.0/download",
        "/dl/uses-tiny-pad/2.0.0/download",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not in {paths:?}"
        );
    }
}

#[test]
fn cargo_follows_a_written_or_precise_lockfile() {
    let registry = FixtureCrates::start(world());
    let project = CargoProject::new(&registry.index_url(), &[("tiny_pad", "^1.0")]);
    // A yanked version pinned in Cargo.lock still downloads.
    project.write_lockfile(&[("tiny_pad", "1.2.0", &registry.cksum("tiny_pad", "1.2.0"))]);
    project.fetch().assert_success();
    assert_eq!(project.locked_version("tiny_pad").as_deref(), Some("1.2.0"));
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.path == "/dl/tiny_pad/1.2.0/download")
    );

    project.update_precise("tiny_pad", "1.0.0").assert_success();
    assert_eq!(project.locked_version("tiny_pad").as_deref(), Some("1.0.0"));
    project.fetch().assert_success();
    project.build_offline().assert_success();
}

#[test]
fn cargo_refuses_a_corrupt_crate() {
    let registry = FixtureCrates::start(world());
    registry.set_corrupt_crate("tiny_pad", "1.1.0", true);
    let project = CargoProject::new(&registry.index_url(), &[("tiny_pad", "^1.0")]);
    project.fetch().assert_failure().assert_contains("checksum");
}
