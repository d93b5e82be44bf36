//! The other subcommands: `moat why`, `moat audit list`, `moat policy`, `moat db`.

use std::path::Path;

use moat_test_support::clients::{Client, Workspace};
use moat_test_support::gate::run_moat;
use serde_json::Value;

use crate::{Env, MINIMIST_ADVISORY, MOAT, date_from_today};

fn moat(args: &[&str]) -> moat_test_support::gate::MoatOutput {
    run_moat(Path::new(MOAT), args)
}

/// Every string in a JSON document, for assertions that do not depend on its field names.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, v)| std::iter::once(key.clone()).chain(strings(v)))
            .collect(),
        Value::Null | Value::Bool(_) | Value::Number(_) => Vec::new(),
    }
}

fn mentions(value: &Value, needle: &str) -> bool {
    strings(value).iter().any(|s| s.contains(needle))
}

#[test]
fn why_explains_a_blocked_version_in_text_and_json() {
    let env = Env::start();
    let text = env.gate.run_with_sources(&["why", "npm", "minimist@1.2.5"]);
    text.assert_success();
    assert!(text.stdout.contains(MINIMIST_ADVISORY), "{text}");
    assert!(text.stdout.contains("moat.vulnerable"), "{text}");

    let json = env
        .gate
        .run_with_sources(&["why", "npm", "minimist@1.2.5", "--json"]);
    json.assert_success();
    let verdict = json.json();
    assert!(mentions(&verdict, MINIMIST_ADVISORY), "{verdict:#}");
    assert!(mentions(&verdict, "moat.vulnerable"), "{verdict:#}");
    assert!(mentions(&verdict, "block"), "{verdict:#}");
}

#[test]
fn why_allows_an_approved_version() {
    let env = Env::start();
    let json = env
        .gate
        .run_with_sources(&["why", "npm", "minimist@1.2.8", "--json"]);
    json.assert_success();
    let verdict = json.json();
    assert!(!mentions(&verdict, MINIMIST_ADVISORY), "{verdict:#}");
}

#[test]
fn audit_list_records_the_gate_decisions_including_blocks() {
    let env = Env::start();
    let workspace = Workspace::new();
    Client::Npm
        .add(&workspace, &env.registry(), &["tiny-pad@^1.0.0"])
        .assert_success();
    Client::Npm
        .add(&workspace, &env.registry(), &["minimist@1.2.5"])
        .assert_failure();

    let listed = env.gate.run(&["audit", "list", "--json"]);
    listed.assert_success();
    let events = listed.json();
    let events = events
        .as_array()
        .unwrap_or_else(|| panic!("audit list --json is not an array: {listed}"));
    let blocked = events.iter().any(|event| {
        let text = strings(event).join(" ");
        text.contains("minimist") && text.contains("1.2.5") && text.contains("block")
    });
    assert!(blocked, "no block of minimist@1.2.5 recorded: {listed}");
    let allowed = events.iter().any(|event| {
        let text = strings(event).join(" ");
        text.contains("tiny-pad") && text.contains("1.1.0") && text.contains("allow")
    });
    assert!(allowed, "no allow of tiny-pad@1.1.0 recorded: {listed}");

    let limited = env.gate.run(&["audit", "list", "--json", "--limit", "1"]);
    limited.assert_success();
    assert_eq!(
        limited.json().as_array().map(Vec::len),
        Some(1),
        "{limited}"
    );

    let text = env.gate.run(&["audit", "list"]);
    text.assert_success();
    assert!(text.stdout.contains("minimist"), "{text}");
}

#[test]
fn policy_check_reports_expired_and_unused_waivers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let samples = moat_test_support::sample_advisories_dir();
    moat(&[
        "db",
        "import",
        &samples.to_string_lossy(),
        "--data-dir",
        &data.to_string_lossy(),
    ])
    .assert_success();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[advisories]\nblock-vulnerable = \"high\"\n\n\
             [[waiver]]\nrule = \"moat.vulnerable\"\npackage = \"npm:minimist@1.2.5\"\n\
             until = \"{expired}\"\nreason = \"expired waiver\"\n\n\
             [[waiver]]\nrule = \"moat.vulnerable\"\npackage = \"npm:left-pad@1.3.0\"\n\
             until = \"{future}\"\nreason = \"matches no advisory\"\n",
            expired = date_from_today(-10),
            future = date_from_today(365),
        ),
    )
    .unwrap();
    let policy = policy.to_string_lossy().into_owned();
    let data = data.to_string_lossy().into_owned();

    let text = moat(&["policy", "check", &policy, "--data-dir", &data]);
    let output = format!("{}{}", text.stdout, text.stderr);
    assert!(
        output.contains("minimist"),
        "expired waiver not reported: {text}"
    );
    assert!(
        output.contains("expired"),
        "expired waiver not reported: {text}"
    );
    assert!(
        output.contains("left-pad"),
        "unused waiver not reported: {text}"
    );

    let json = moat(&["policy", "check", &policy, "--json", "--data-dir", &data]);
    let report = json.json();
    assert!(mentions(&report, "minimist@1.2.5"), "{report:#}");
    assert!(mentions(&report, "left-pad@1.3.0"), "{report:#}");
}

#[test]
fn policy_check_rejects_an_invalid_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[advisories]\nblock-vulnerable = \"sometimes\"\n").unwrap();
    let output = moat(&["policy", "check", &policy.to_string_lossy()]);
    assert!(!output.status.success(), "{output}");
    assert!(output.stderr.contains("block-vulnerable"), "{output}");
}

#[test]
fn default_policy_is_a_valid_policy() {
    let shown = moat(&["policy", "show-default"]);
    shown.assert_success();
    assert!(shown.stdout.contains("block-vulnerable"), "{shown}");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("default.toml");
    std::fs::write(&policy, &shown.stdout).unwrap();
    moat(&["policy", "check", &policy.to_string_lossy()]).assert_success();
}

#[test]
fn db_import_then_status_reports_npm_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let samples = moat_test_support::sample_advisories_dir();
    moat(&[
        "db",
        "import",
        &samples.to_string_lossy(),
        "--data-dir",
        &data,
    ])
    .assert_success();
    let status = moat(&["db", "status", "--json", "--data-dir", &data]);
    status.assert_success();
    let doc = status.json();
    let ecosystems = doc["ecosystems"]
        .as_array()
        .unwrap_or_else(|| panic!("no ecosystems array: {doc:#}"));
    let npm = ecosystems
        .iter()
        .find(|e| e["ecosystem"] == "npm")
        .unwrap_or_else(|| panic!("no npm entry: {doc:#}"));
    // 11 sample records, one of them withdrawn.
    assert_eq!(npm["records"], 10, "{doc:#}");
    assert!(npm["malicious"].as_u64().is_some_and(|n| n >= 1), "{doc:#}");
}

#[test]
fn db_status_without_data_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let output = moat(&["db", "status", "--data-dir", &dir.path().to_string_lossy()]);
    assert!(!output.status.success(), "{output}");
    assert!(output.stderr.contains("moat db"), "no hint: {output}");
}

#[test]
fn why_names_the_package_a_typosquat_imitates() {
    let env = Env::start();
    let text = env.gate.run_with_sources(&["why", "npm", "lodahs@1.0.0"]);
    text.assert_success();
    assert!(text.stdout.contains("moat.typosquat"), "{text}");
    assert!(text.stdout.contains("lodash"), "{text}");
}

fn npm_records(data: &str) -> Value {
    let status = moat(&["db", "status", "--json", "--data-dir", data]);
    status.assert_success();
    let doc = status.json();
    doc["ecosystems"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["ecosystem"] == "npm"))
        .map_or(Value::Null, |npm| npm["records"].clone())
}

/// `moat db sync --base URL` downloads `URL/npm/all.zip`; a failed sync leaves the data
/// imported before as it was.
#[test]
fn db_sync_downloads_dumps_and_a_failed_sync_changes_nothing() {
    let mirror = moat_test_support::npm::FixtureRegistry::start([]);
    let zip = std::fs::read(moat_test_support::sample_advisories_dir().join("npm.zip")).unwrap();
    mirror.serve_file("/osv/npm/all.zip", zip);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let base = format!("{}/osv", mirror.url());
    let synced = moat(&[
        "db",
        "sync",
        "--base",
        &base,
        "--ecosystem",
        "npm",
        "--data-dir",
        &data,
    ]);
    synced.assert_success();
    assert_eq!(npm_records(&data), 10, "{synced}");

    mirror.serve_file("/broken/npm/all.zip", b"not a zip".to_vec());
    let broken = format!("{}/broken", mirror.url());
    let failed = moat(&[
        "db",
        "sync",
        "--base",
        &broken,
        "--ecosystem",
        "npm",
        "--data-dir",
        &data,
    ]);
    assert!(
        !failed.status.success(),
        "a corrupt dump was accepted: {failed}"
    );
    let missing = format!("{}/missing", mirror.url());
    let failed = moat(&[
        "db",
        "sync",
        "--base",
        &missing,
        "--ecosystem",
        "npm",
        "--data-dir",
        &data,
    ]);
    assert!(!failed.status.success(), "a 404 was accepted: {failed}");
    assert!(failed.stderr.contains("unchanged"), "{failed}");
    assert_eq!(npm_records(&data), 10);
}

/// Settings read from `moat.toml` (paths relative to the file) drive a subcommand exactly as
/// flags would: here the policy named in the file is the one that blocks.
#[test]
fn settings_come_from_moat_toml_relative_to_the_file() {
    let upstream = moat_test_support::npm::FixtureRegistry::start(crate::world());
    let advisories = crate::advisories();
    let popular = crate::popular();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), crate::POLICY).unwrap();
    let config = format!(
        "data-dir = \"state\"\nadvisories = {:?}\npopular = {:?}\npolicy = \"policy.toml\"\n\n[upstream]\nnpm = {:?}\n",
        advisories.path().display().to_string(),
        popular.path().display().to_string(),
        upstream.url(),
    );
    let config_path = dir.path().join("moat.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.display().to_string();

    // tiny-pad@1.2.0 has a HIGH advisory with no fixed release: the built-in policy
    // (require-fix = true) only warns, the file's policy (require-fix = false) blocks.
    let out = moat(&[
        "--config",
        &config_arg,
        "why",
        "npm",
        "tiny-pad@1.2.0",
        "--json",
    ]);
    out.assert_success();
    assert_eq!(out.json()["action"], "block", "{out}");
    assert!(
        dir.path().join("state").join("audit.db").is_file(),
        "data-dir not taken from the file: {out}"
    );

    // A flag wins over the file.
    let default_policy = dir.path().join("default.toml");
    std::fs::write(&default_policy, moat_policy_default()).unwrap();
    let out = moat(&[
        "--config",
        &config_arg,
        "why",
        "npm",
        "tiny-pad@1.2.0",
        "--json",
        "--policy",
        &default_policy.display().to_string(),
    ]);
    out.assert_success();
    assert_eq!(out.json()["action"], "warn", "{out}");
}

fn moat_policy_default() -> String {
    let out = moat(&["policy", "show-default"]);
    out.assert_success();
    out.stdout.clone()
}

#[test]
fn unknown_keys_in_moat_toml_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("moat.toml");
    std::fs::write(
        &config_path,
        "listen = \"127.0.0.1:7070\"\nlisten-adress = \"oops\"\n",
    )
    .unwrap();
    let out = moat(&[
        "--config",
        &config_path.display().to_string(),
        "policy",
        "show-default",
    ]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("listen-adress"), "{out}");
}
