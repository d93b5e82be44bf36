//! npm 11 through the gate: steering, refusals with reasons, the correction loop, lockfiles,
//! waivers and scoped names.

use moat_test_support::clients::{Client, Workspace};
use moat_test_support::raw_http;
use serde_json::json;

use crate::{Env, MINIMIST_ADVISORY, POLICY, TINY_PAD_ADVISORY, approved_version};

const NPM: Client = Client::Npm;

#[test]
fn range_resolves_to_the_newest_approved_version() {
    let env = Env::start();
    let workspace = Workspace::new();
    let output = NPM.add(&workspace, &env.registry(), &["tiny-pad@^1.0.0"]);
    output.assert_success();
    assert!(!output.text().contains("npm error"), "{output}");
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.1.0")
    );
}

#[test]
fn range_in_a_dependency_is_steered_too() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["uses-tiny-pad"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("uses-tiny-pad").as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.1.0")
    );
}

#[test]
fn bare_install_follows_latest_moved_off_a_blocked_version() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["tiny-pad"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.1.0")
    );
}

/// The correction loop, scripted: an exact pin of a vulnerable version fails with the advisory
/// and an approved version; retrying with that version installs.
#[test]
fn pinned_vulnerable_version_fails_with_reason_and_approved_version_installs() {
    let env = Env::start();
    let workspace = Workspace::new();
    let refused = NPM.add(&workspace, &env.registry(), &["minimist@1.2.5"]);
    refused
        .assert_failure()
        .assert_contains("moat: blocked minimist@1.2.5")
        .assert_contains("moat.vulnerable")
        .assert_contains(MINIMIST_ADVISORY)
        .assert_contains("approved: minimist@");
    assert_eq!(workspace.installed_version("minimist"), None);

    let approved = approved_version(&refused.text(), "minimist")
        .unwrap_or_else(|| panic!("no approved version in: {refused}"));
    assert!(
        ["1.2.6", "1.2.8"].contains(&approved.as_str()),
        "approved {approved} is not a fixed version"
    );
    NPM.add(
        &workspace,
        &env.registry(),
        &[&format!("minimist@{approved}")],
    )
    .assert_success();
    assert_eq!(workspace.installed_version("minimist"), Some(approved));
}

/// `npm ci` skips resolution: the lockfile's tarball URL must be refused by itself.
#[test]
fn npm_ci_with_a_lockfile_pinning_a_blocked_version_fails_with_reason() {
    let env = Env::start();
    let workspace = Workspace::new();
    let resolved = format!("{}minimist/-/minimist-1.2.5.tgz", env.registry());
    let integrity = env.upstream.integrity("minimist", "1.2.5");
    workspace.write(
        "package.json",
        &json!({
            "name": "moat-e2e-project",
            "version": "1.0.0",
            "private": true,
            "dependencies": { "minimist": "1.2.5" },
        })
        .to_string(),
    );
    workspace.write(
        "package-lock.json",
        &json!({
            "name": "moat-e2e-project",
            "version": "1.0.0",
            "lockfileVersion": 3,
            "requires": true,
            "packages": {
                "": {
                    "name": "moat-e2e-project",
                    "version": "1.0.0",
                    "dependencies": { "minimist": "1.2.5" },
                },
                "node_modules/minimist": {
                    "version": "1.2.5",
                    "resolved": resolved,
                    "integrity": integrity,
                    "license": "MIT",
                },
            },
        })
        .to_string(),
    );
    let output = NPM.run(&workspace, &env.registry(), &["ci"]);
    output
        .assert_failure()
        .assert_contains("403")
        .assert_contains("moat: blocked minimist@1.2.5")
        .assert_contains(MINIMIST_ADVISORY);
    assert_eq!(workspace.installed_version("minimist"), None);
}

#[test]
fn npm_ci_with_an_approved_lockfile_installs() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["minimist@1.2.8"])
        .assert_success();
    workspace.reset_install();
    NPM.run(&workspace, &env.registry(), &["ci"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("minimist").as_deref(),
        Some("1.2.8")
    );
}

#[test]
fn malicious_package_is_refused() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["cxp-jquery"])
        .assert_failure()
        .assert_contains("403")
        .assert_contains("moat: blocked cxp-jquery")
        .assert_contains("moat.malicious")
        .assert_contains("MAL-2021-1");
    assert_eq!(workspace.installed_version("cxp-jquery"), None);
}

#[test]
fn typosquat_is_refused_with_the_name_it_imitates() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["lodahs"])
        .assert_failure()
        .assert_contains("moat: blocked lodahs")
        .assert_contains("moat.typosquat")
        .assert_contains("did you mean lodash");
    assert_eq!(workspace.installed_version("lodahs"), None);
    // The real one is fine.
    NPM.add(&workspace, &env.registry(), &["lodash"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("lodash").as_deref(),
        Some("4.17.21")
    );
}

#[test]
fn denied_package_is_refused_with_the_policy_reason() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["event-stream@3.3.4"])
        .assert_failure()
        .assert_contains("moat: blocked event-stream")
        .assert_contains("moat.denied");
    assert_eq!(workspace.installed_version("event-stream"), None);
}

#[test]
fn too_new_version_is_refused_when_pinned_and_skipped_in_a_range() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["fresh-pkg@1.1.0"])
        .assert_failure()
        .assert_contains("moat: blocked fresh-pkg@1.1.0")
        .assert_contains("moat.too-new");
    assert_eq!(workspace.installed_version("fresh-pkg"), None);
    NPM.add(&workspace, &env.registry(), &["fresh-pkg@^1.0.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("fresh-pkg").as_deref(),
        Some("1.0.0")
    );
}

fn policy_with_tiny_pad_waiver(until: &str) -> String {
    format!(
        "{POLICY}\n[[waiver]]\nrule = \"moat.vulnerable\"\npackage = \"npm:tiny-pad@1.2.0\"\n\
         until = \"{until}\"\nreason = \"e2e: accepted until a fix ships\"\n"
    )
}

#[test]
fn waiver_admits_its_version_until_its_date() {
    let env = Env::start_with(
        &policy_with_tiny_pad_waiver(&crate::date_from_today(1)),
        &[],
    );
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["tiny-pad@1.2.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.2.0")
    );
}

#[test]
fn expired_waiver_admits_nothing() {
    let env = Env::start_with(
        &policy_with_tiny_pad_waiver(&crate::date_from_today(-1)),
        &[],
    );
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["tiny-pad@1.2.0"])
        .assert_failure()
        .assert_contains("moat: blocked tiny-pad@1.2.0")
        .assert_contains("moat.vulnerable")
        .assert_contains(TINY_PAD_ADVISORY);
    assert_eq!(workspace.installed_version("tiny-pad"), None);
}

#[test]
fn scoped_package_installs_and_both_spellings_serve_the_packument() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["@fixture/scoped@^1.0.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("@fixture/scoped").as_deref(),
        Some("1.1.0")
    );
    for path in [
        "/npm/@fixture/scoped",
        "/npm/@fixture%2fscoped",
        "/npm/@fixture%2Fscoped",
    ] {
        let response = raw_http::request(
            env.gate.url(),
            "GET",
            path,
            &[("Accept", "application/json")],
        );
        assert_eq!(response.status, 200, "{path}: {}", response.status_line);
        let doc = response.json();
        assert_eq!(doc["name"], "@fixture/scoped", "{path}");
        let tarball = doc["versions"]["1.1.0"]["dist"]["tarball"]
            .as_str()
            .unwrap();
        assert!(
            tarball.starts_with(env.gate.url()),
            "{path}: tarball URL not rewritten to the gate: {tarball}"
        );
    }
}

#[test]
fn scoped_vulnerable_version_is_refused_with_reason() {
    let env = Env::start();
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["@fixture/vuln@1.0.0"])
        .assert_failure()
        .assert_contains("moat: blocked @fixture/vuln@1.0.0")
        .assert_contains(crate::SCOPED_ADVISORY);
    NPM.add(&workspace, &env.registry(), &["@fixture/vuln@^1.0.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("@fixture/vuln").as_deref(),
        Some("1.0.1")
    );
}

#[test]
fn tarball_refusal_shows_the_reason() {
    crate::cases::tarball_refusal_shows_the_reason(NPM, "npm error 403");
}

/// What the steering rests on, read straight from the gate: blocked versions stay listed and
/// carry the block message as `deprecated`, `latest` moves off them, tarball URLs point at the
/// gate — in the full and the abbreviated packument.
#[test]
fn metadata_marks_blocked_versions_and_moves_latest() {
    let env = Env::start();
    for accept in ["application/json", "application/vnd.npm.install-v1+json"] {
        let response = raw_http::request(
            env.gate.url(),
            "GET",
            "/npm/tiny-pad",
            &[("Accept", accept)],
        );
        assert_eq!(response.status, 200, "{accept}: {}", response.status_line);
        let doc = response.json();
        assert_eq!(doc["dist-tags"]["latest"], "1.1.0", "{accept}: {doc:#}");
        let blocked = doc["versions"]["1.2.0"]["deprecated"]
            .as_str()
            .unwrap_or_default();
        assert!(
            blocked.starts_with("moat: blocked tiny-pad@1.2.0")
                && blocked.contains(TINY_PAD_ADVISORY),
            "{accept}: 1.2.0 not marked: {doc:#}"
        );
        assert!(
            doc["versions"]["1.1.0"].get("deprecated").is_none(),
            "{accept}: {doc:#}"
        );
        let tarball = doc["versions"]["1.2.0"]["dist"]["tarball"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            tarball,
            format!("{}tiny-pad/-/tiny-pad-1.2.0.tgz", env.registry())
        );
        // Integrity is the upstream's: artifact bytes are never altered.
        assert_eq!(
            doc["versions"]["1.2.0"]["dist"]["integrity"],
            env.upstream.integrity("tiny-pad", "1.2.0")
        );
    }
}

#[test]
fn public_url_is_used_in_tarball_urls_and_why_links() {
    let env = Env::start_with(POLICY, &["--public-url", "http://gate.invalid:7070"]);
    let doc = raw_http::request(
        env.gate.url(),
        "GET",
        "/npm/minimist",
        &[("Accept", "application/json")],
    )
    .json();
    let tarball = doc["versions"]["1.2.8"]["dist"]["tarball"]
        .as_str()
        .unwrap_or_default();
    assert!(
        tarball.starts_with("http://gate.invalid:7070/npm/"),
        "{tarball}"
    );
    let blocked = raw_http::get(env.gate.url(), "/npm/minimist/-/minimist-1.2.5.tgz");
    assert!(
        blocked
            .status_line
            .contains("why: http://gate.invalid:7070/-/why/npm/minimist/1.2.5"),
        "{}",
        blocked.status_line
    );
}

/// With `--metadata-ttl 0` a version published upstream shows at once.
#[test]
fn new_upstream_versions_show_after_the_metadata_ttl() {
    let env = Env::start_with(POLICY, &["--metadata-ttl", "0"]);
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["lodash@^4.0.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("lodash").as_deref(),
        Some("4.17.21")
    );
    env.upstream.publish(
        moat_test_support::npm::Package::new("lodash").versions(&["4.17.20", "4.17.21", "4.17.22"]),
    );
    let doc = raw_http::request(
        env.gate.url(),
        "GET",
        "/npm/lodash",
        &[("Accept", "application/json")],
    )
    .json();
    assert!(doc["versions"].get("4.17.22").is_some(), "{doc:#}");
}
