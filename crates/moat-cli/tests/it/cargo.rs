//! cargo through the gate's sparse registry: steering (blocked versions yanked in the index),
//! refusals cargo prints (the 403 body of a `.crate` download, the line that holds for a
//! `Cargo.lock`), crates blocked as a whole (403 on the index file), crates.io name rules, URL
//! spellings and upstream faults. Assertions follow `shared/reference/clients.md`.

use moat_test_support::clients::CargoProject;
use moat_test_support::crates::{Crate, CrateVersion, FixtureCrates};
use moat_test_support::raw_http;

use crate::{approved_version, date_from_today};

/// A fixture advisory (HIGH) for `tinycrate` 1.2.0 and later, its newest release.
const TINYCRATE_ADVISORY: &str = "RUSTSEC-2099-0001";
const EVIL_ADVISORY: &str = "MAL-MOAT-RS-0001";
const GONE_ADVISORY: &str = "MAL-MOAT-RS-0002";

/// The base policy (`crate::POLICY`), denying `left-pad-rs` instead of an npm package.
fn policy() -> String {
    crate::POLICY.replace("npm:event-stream", "crates.io:left-pad-rs")
}

pub(crate) fn world() -> Vec<Crate> {
    vec![
        Crate::new("tinycrate").versions(&["1.0.0", "1.1.0", "1.2.0"]),
        Crate::new("evil-crate").versions(&["0.1.0"]),
        Crate::new("serde_json").versions(&["1.0.100", "1.0.108"]),
        // A typosquat of serde_json (a dropped separator).
        Crate::new("serdejson").versions(&["1.0.0"]),
        Crate::new("left-pad-rs").versions(&["1.0.0"]),
        Crate::new("fresh-crate")
            .version("1.0.0")
            .version(CrateVersion::new("1.1.0").published_days_ago(1)),
    ]
}

type CargoEnv = crate::EcosystemEnv<FixtureCrates>;

impl CargoEnv {
    fn start() -> Self {
        Self::start_with(&policy())
    }

    fn start_with(policy: &str) -> Self {
        Self::start_upstream(FixtureCrates::start(world()), policy)
    }

    fn start_upstream(upstream: FixtureCrates, policy: &str) -> Self {
        let url = format!("{}/index", upstream.url());
        Self::new(upstream, "--upstream-crates", &url, policy)
    }

    /// `sparse+http://127.0.0.1:PORT/crates/index/`.
    fn index(&self) -> String {
        format!("sparse+{}/crates/index/", self.gate.url())
    }

    fn project(&self, dependencies: &[(&str, &str)]) -> CargoProject {
        CargoProject::new(&self.index(), dependencies)
    }

    /// A project whose `Cargo.lock` pins `name@version` (as the upstream's index has it).
    fn locked_project(&self, name: &str, version: &str) -> CargoProject {
        let requirement = format!("={version}");
        let project = self.project(&[(name, requirement.as_str())]);
        let cksum = self.upstream.cksum(name, version);
        project.write_lockfile(&[(name, version, cksum.as_str())]);
        project
    }
}

#[test]
fn loose_requirement_resolves_to_the_newest_approved_version() {
    let env = CargoEnv::start();
    let project = env.project(&[("tinycrate", "1")]);
    let output = project.fetch();
    output.assert_success();
    assert_eq!(
        project.locked_version("tinycrate").as_deref(),
        Some("1.1.0")
    );
    project.build_offline().assert_success();
}

/// The line that holds: a `Cargo.lock` pinning a blocked version skips resolution, so the
/// download is refused and cargo prints the reason from the body — the advisory and an
/// approved version, with which the retry succeeds.
#[test]
fn lockfile_pin_of_a_vulnerable_version_fails_with_reason_and_approved_version_works() {
    let env = CargoEnv::start();
    let project = env.locked_project("tinycrate", "1.2.0");
    let refused = project.fetch();
    refused
        .assert_failure()
        .assert_contains("moat: blocked tinycrate@1.2.0 (moat.vulnerable)")
        .assert_contains(TINYCRATE_ADVISORY)
        .assert_contains("403");
    let text = refused.text();
    let approved = approved_version(&text, "tinycrate")
        .unwrap_or_else(|| panic!("no approved version in: {text}"));
    assert_eq!(approved, "1.1.0");
    let pin = format!("={approved}");
    project.remove_lockfile();
    project.set_dependencies(&[("tinycrate", pin.as_str())]);
    project.fetch().assert_success();
    assert_eq!(
        project.locked_version("tinycrate").as_deref(),
        Some("1.1.0")
    );
}

/// An exact pin in `Cargo.toml` meets the yank during resolution: cargo refuses it but prints no
/// reason of the registry's (it has no field for one); `moat why` gives it.
#[test]
fn manifest_pin_of_a_vulnerable_version_is_refused_as_yanked() {
    let env = CargoEnv::start();
    let project = env.project(&[("tinycrate", "=1.2.0")]);
    project.fetch().assert_failure().assert_contains("yanked");
    assert_eq!(project.locked_version("tinycrate"), None);
}

#[test]
fn malicious_typosquat_and_denied_crates_are_refused_with_their_rule() {
    let env = CargoEnv::start();
    let cases: [(&str, &[&str]); 4] = [
        ("evil-crate", &["moat.malicious", EVIL_ADVISORY]),
        ("gone-evil-rs", &["moat.malicious", GONE_ADVISORY]),
        ("serdejson", &["moat.typosquat", "did you mean serde_json"]),
        ("left-pad-rs", &["moat.denied", "abandoned, once hijacked"]),
    ];
    for (name, needles) in cases {
        let project = env.project(&[(name, "*")]);
        let output = project.fetch();
        output.assert_failure().assert_contains("moat: blocked");
        for needle in needles {
            output.assert_contains(needle);
        }
    }
    // `-` and `_` are one crate to crates.io: `serde-json` is not a typosquat of `serde_json`.
    // cargo itself insists on the published spelling, and says so.
    let output = env.project(&[("serde-json", "1")]).fetch();
    output
        .assert_failure()
        .assert_contains("perhaps you meant:      serde_json");
    assert!(!output.text().contains("moat:"), "{output}");
    let project = env.project(&[("serde_json", "1")]);
    project.fetch().assert_success();
    assert_eq!(
        project.locked_version("serde_json").as_deref(),
        Some("1.0.108")
    );
}

#[test]
fn too_new_version_is_skipped_in_ranges_and_refused_when_locked() {
    let env = CargoEnv::start();
    let project = env.project(&[("fresh-crate", "1")]);
    project.fetch().assert_success();
    assert_eq!(
        project.locked_version("fresh-crate").as_deref(),
        Some("1.0.0")
    );
    let locked = env.locked_project("fresh-crate", "1.1.0");
    locked
        .fetch()
        .assert_failure()
        .assert_contains("moat.too-new");
}

fn policy_with_tinycrate_waiver(until: &str) -> String {
    format!(
        "{}\n[[waiver]]\nrule = \"moat.vulnerable\"\npackage = \"crates.io:tinycrate@1.2.0\"\n\
         until = \"{until}\"\nreason = \"e2e: accepted until a fix ships\"\n",
        policy()
    )
}

#[test]
fn waiver_admits_its_version_until_its_date() {
    let env = CargoEnv::start_with(&policy_with_tinycrate_waiver(&date_from_today(1)));
    let project = env.project(&[("tinycrate", "=1.2.0")]);
    project.fetch().assert_success();
    assert_eq!(
        project.locked_version("tinycrate").as_deref(),
        Some("1.2.0")
    );

    let expired = CargoEnv::start_with(&policy_with_tinycrate_waiver(&date_from_today(-1)));
    let project = expired.locked_project("tinycrate", "1.2.0");
    project
        .fetch()
        .assert_failure()
        .assert_contains(TINYCRATE_ADVISORY);
}

/// Security invariant: a blocked `.crate` is unreachable by every spelling of its URL, and the
/// index marks it yanked.
#[test]
fn blocked_crate_is_unreachable_by_every_url_spelling() {
    let env = CargoEnv::start();
    let spellings = [
        "/crates/dl/tinycrate/1.2.0/download",
        "/crates/dl/TinyCrate/1.2.0/download",
        "/crates/dl/TINYCRATE/1.2.0/download",
        "//crates//dl//tinycrate//1.2.0//download",
        "/crates/dl/tinycrate/1%2E2%2E0/download",
        "/crates/dl/%74inycrate/1.2.0/download",
        "/crates%2Fdl%2Ftinycrate%2F1.2.0%2Fdownload",
    ];
    for path in spellings {
        let reason = "moat: blocked tinycrate@1.2.0 (moat.vulnerable)";
        for response in raw_http::assert_refused_every_way(env.gate.url(), path, reason) {
            assert!(response.text().contains(TINYCRATE_ADVISORY), "{path}");
        }
    }
    // Other spellings of the version are no version at all, never the blocked one's bytes.
    for path in [
        "/crates/dl/tinycrate/1.2.0+build/download",
        "/crates/dl/tinycrate/01.2.0/download",
        "/crates/dl/tinycrate/v1.2.0/download",
        "/crates/dl/tiny_crate/1.2.0/download",
    ] {
        let response = raw_http::get(env.gate.url(), path);
        assert!(
            matches!(response.status, 400 | 404),
            "{path}: {}",
            response.status_line
        );
    }
    // The index keeps the version, yanked; others untouched.
    let index = raw_http::get(env.gate.url(), "/crates/index/ti/ny/tinycrate");
    assert_eq!(index.status, 200, "{}", index.status_line);
    for line in index.text().lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let yanked = entry["vers"] == "1.2.0";
        assert_eq!(entry["yanked"], yanked, "{line}");
    }
    // Nothing blocked was fetched from the upstream.
    assert!(
        env.upstream
            .requests()
            .iter()
            .all(|r| !r.path.contains("1.2.0")),
        "{:?}",
        env.upstream.requests()
    );
}

#[test]
fn crate_blocked_as_a_whole_is_refused_on_its_index_file() {
    let env = CargoEnv::start();
    let response = raw_http::get(env.gate.url(), "/crates/index/ev/il/evil-crate");
    assert_eq!(response.status, 403, "{}", response.status_line);
    assert!(
        response
            .text()
            .starts_with("moat: blocked evil-crate (moat.malicious)")
    );
    // Decided from the name: the upstream was never asked.
    assert!(
        env.upstream
            .requests()
            .iter()
            .all(|r| !r.path.contains("evil")),
        "{:?}",
        env.upstream.requests()
    );
}

#[test]
fn upstream_faults_fail_closed_with_a_reason() {
    let env = CargoEnv::start();
    env.upstream
        .set_corrupt_crate("serde_json", "1.0.108", true);
    let response = raw_http::get(env.gate.url(), "/crates/dl/serde_json/1.0.108/download");
    assert_eq!(response.status, 502, "{}", response.status_line);
    assert!(response.reason.contains("failed its integrity check"));
    env.upstream
        .set_corrupt_crate("serde_json", "1.0.108", false);
    let response = raw_http::get(env.gate.url(), "/crates/dl/serde_json/1.0.108/download");
    assert_eq!(response.status, 200, "{}", response.status_line);
    assert_eq!(
        response.body,
        env.upstream.crate_bytes("serde_json", "1.0.108")
    );

    env.upstream.set_malformed("fresh-crate", true);
    let response = raw_http::get(env.gate.url(), "/crates/index/fr/es/fresh-crate");
    assert_eq!(response.status, 502, "{}", response.status_line);

    env.upstream.set_down(true);
    let project = env.project(&[("tinycrate", "1")]);
    project
        .fetch()
        .assert_failure()
        .assert_contains("moat: upstream crates.io");
}

#[test]
fn decisions_are_in_the_audit_log_and_why_explains_them() {
    let env = CargoEnv::start();
    env.locked_project("tinycrate", "1.2.0")
        .fetch()
        .assert_failure();
    let listed = env
        .gate
        .run(&["audit", "list", "--json"])
        .assert_success()
        .json();
    let events = listed.as_array().expect("array of events");
    assert!(
        events
            .iter()
            .any(|event| event["event"]["ecosystem"] == "crates.io"
                && event["event"]["package"] == "tinycrate"
                && event["event"]["version"] == "1.2.0"
                && event["event"]["action"] == "block"
                && event["event"]["advisories"][0] == TINYCRATE_ADVISORY),
        "{listed}"
    );
    let verdict = env
        .gate
        .run_with_sources(&["why", "crates", "tinycrate@1.2.0", "--json"])
        .assert_success()
        .json();
    assert_eq!(verdict["action"], "block");
    assert_eq!(verdict["approved"][0], "1.1.0");
}

/// cargo offers an h2c upgrade on plain HTTP; the gate speaks HTTP/1.1 only and answers the
/// request itself instead of switching protocols.
#[test]
fn h2c_upgrade_is_declined() {
    let env = CargoEnv::start();
    let response = raw_http::request(
        env.gate.url(),
        "GET",
        "/crates/index/config.json",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    );
    assert_eq!(response.status, 200, "{}", response.status_line);
    assert!(response.status_line.starts_with("HTTP/1.1 200"));
    let config = response.json();
    assert_eq!(config["dl"], format!("{}/crates/dl", env.gate.url()));
}
