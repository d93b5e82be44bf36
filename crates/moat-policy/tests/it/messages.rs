//! The block messages an agent reads (snapshots), and the verdict JSON the `why` page serves.

use moat_advisories::{AdvisoryDb, Ecosystem};
use moat_policy::{Policy, Verdict, VersionInfo};

use crate::support::{at, ctx, db, minimist_db, policy, popular, versions};

const WHY: &str = "http://127.0.0.1:7070/-/why";

fn why(ecosystem: &str, name: &str, version: Option<&str>) -> String {
    match version {
        Some(version) => format!("{WHY}/{ecosystem}/{name}/{version}"),
        None => format!("{WHY}/{ecosystem}/{name}"),
    }
}

/// Check the invariants every block message keeps, and return it.
fn message(verdict: &Verdict, why_url: &str) -> String {
    let message = verdict.block_message(why_url);
    assert!(message.len() <= 300, "{} bytes: {message}", message.len());
    assert!(
        message.bytes().all(|byte| (b' '..=b'~').contains(&byte)),
        "{message}"
    );
    assert!(message.starts_with("moat: blocked "), "{message}");
    assert!(message.ends_with(&format!("; why: {why_url}")), "{message}");
    message
}

#[test]
fn vulnerable_version() {
    let db = minimist_db();
    let ctx = ctx(&db, None);
    let evaluation = Policy::builtin().evaluate_package(
        &ctx,
        Ecosystem::Npm,
        "minimist",
        &versions(&["1.2.5", "1.2.6", "1.2.8"]),
    );
    let verdict = &evaluation.versions["1.2.5"];
    insta::assert_snapshot!(message(verdict, &why("npm", "minimist", Some("1.2.5"))));
    insta::assert_json_snapshot!(verdict);
}

#[test]
fn malicious_package() {
    let db = db();
    let ctx = ctx(&db, None);
    let verdict = Policy::builtin().evaluate_name(&ctx, Ecosystem::Npm, "cxp-jquery");
    insta::assert_snapshot!(message(&verdict, &why("npm", "cxp-jquery", None)));
}

#[test]
fn typosquat() {
    let db = AdvisoryDb::empty();
    let popular = popular();
    let ctx = ctx(&db, Some(&popular));
    let verdict = Policy::builtin().evaluate_name(&ctx, Ecosystem::Npm, "lodahs");
    insta::assert_snapshot!(message(&verdict, &why("npm", "lodahs", None)));
}

#[test]
fn denied() {
    let db = AdvisoryDb::empty();
    let ctx = ctx(&db, None);
    let policy =
        policy("[[deny]]\npackage = \"npm:event-stream\"\nreason = \"abandoned, once hijacked\"\n");
    let verdict = policy.evaluate_name(&ctx, Ecosystem::Npm, "event-stream");
    insta::assert_snapshot!(message(&verdict, &why("npm", "event-stream", None)));
}

#[test]
fn too_new() {
    let db = AdvisoryDb::empty();
    let ctx = ctx(&db, None);
    let list = vec![
        VersionInfo {
            version: "1.9.0".into(),
            published: Some(at("2026-01-01T00:00:00Z")),
        },
        VersionInfo {
            version: "2.0.0".into(),
            published: Some(at("2026-05-09T06:00:00Z")),
        },
    ];
    let evaluation = Policy::builtin().evaluate_package(&ctx, Ecosystem::Npm, "foo", &list);
    insta::assert_snapshot!(message(
        &evaluation.versions["2.0.0"],
        &why("npm", "foo", Some("2.0.0"))
    ));
}

#[test]
fn unknown_age() {
    let db = AdvisoryDb::empty();
    let ctx = ctx(&db, None);
    let list = vec![
        VersionInfo {
            version: "1.0.0".into(),
            published: Some(at("2026-01-01T00:00:00Z")),
        },
        VersionInfo {
            version: "1.1.0".into(),
            published: None,
        },
    ];
    let policy = policy("[age]\nunknown = \"block\"\n");
    let evaluation = policy.evaluate_package(&ctx, Ecosystem::CratesIo, "foo", &list);
    let verdict = &evaluation.versions["1.1.0"];
    let message = message(verdict, &why("crates.io", "foo", Some("1.1.0")));
    assert!(message.contains("(moat.too-new): age unknown"), "{message}");
    insta::assert_snapshot!(message);
    insta::assert_json_snapshot!(verdict);

    // Warned (the default): served, and the verdict JSON says why.
    let evaluation = Policy::builtin().evaluate_package(&ctx, Ecosystem::CratesIo, "foo", &list);
    insta::assert_json_snapshot!(evaluation.versions["1.1.0"]);
}

#[test]
fn several_rules() {
    let db = db();
    let ctx = ctx(&db, None);
    let policy = policy(
        "[[deny]]\npackage = \"npm:minimist@1.2.5\"\nreason = \"pinned copy was tampered with\"\n",
    );
    let list = vec![
        VersionInfo {
            version: "1.2.5".into(),
            published: Some(at("2026-05-09T06:00:00Z")),
        },
        VersionInfo {
            version: "1.2.7".into(),
            published: Some(at("2026-01-01T00:00:00Z")),
        },
    ];
    let evaluation = policy.evaluate_package(&ctx, Ecosystem::Npm, "minimist", &list);
    insta::assert_snapshot!(message(
        &evaluation.versions["1.2.5"],
        &why("npm", "minimist", Some("1.2.5"))
    ));
}

#[test]
fn evaluation_error() {
    let db = minimist_db();
    let ctx = ctx(&db, None);
    let evaluation = Policy::builtin().evaluate_package(
        &ctx,
        Ecosystem::Npm,
        "minimist",
        &versions(&["1.2.8", "v1-final"]),
    );
    insta::assert_snapshot!(message(
        &evaluation.versions["v1-final"],
        &why("npm", "minimist", Some("v1-final"))
    ));
}

#[test]
fn long_details_are_shortened_and_foreign_bytes_replaced() {
    let summary = format!("Caf\u{e9} \u{2014} {}", "very long summary ".repeat(20));
    let records: Vec<String> = (0..6)
        .map(|index| {
            crate::support::record(
                &format!("GHSA-long-{index:04}-0000"),
                "npm",
                "wordy",
                "0",
                Some("2.0.0"),
                Some("HIGH"),
                &summary,
            )
        })
        .collect();
    let db = AdvisoryDb::from_osv_json(&records.iter().map(String::as_str).collect::<Vec<_>>()).0;
    let ctx = ctx(&db, None);
    let list = versions(&["1.0.0", "2.0.0", "2.1.0", "3.0.0", "3.1.0"]);
    let evaluation = Policy::builtin().evaluate_package(&ctx, Ecosystem::Npm, "wordy", &list);
    let verdict = &evaluation.versions["1.0.0"];
    assert_eq!(verdict.approved, ["2.0.0", "3.1.0"]);
    let message = message(verdict, &why("npm", "wordy", Some("1.0.0")));
    assert!(message.len() > 280, "shortened too much: {message}");
    assert!(message.contains("; approved: wordy@2.0.0"), "{message}");
    insta::assert_snapshot!(message);
}
