//! Shared fixtures: real OSV records (copied from the OSV dumps) plus a few small made-up ones.

use moat_advisories::{AdvisoryDb, Ecosystem, PopularNames};
use moat_policy::{Context, Policy, VersionInfo};

/// GHSA-xvch-5gv4-984h: minimist, critical, fixed in 0.2.4 and 1.2.6.
pub const MINIMIST: &str = include_str!("fixtures/GHSA-xvch-5gv4-984h.json");
/// MAL-2021-1: cxp-jquery, every version malicious.
pub const CXP_JQUERY: &str = include_str!("fixtures/MAL-2021-1.json");
/// MAL-2023-462: fsevents 1.0.0 up to (not including) 1.2.11 malicious.
pub const FSEVENTS: &str = include_str!("fixtures/MAL-2023-462.json");
/// NSWG-ECO-1: bassmaster, moderate, last affected 1.5.1 (no fixed version).
pub const BASSMASTER: &str = include_str!("fixtures/NSWG-ECO-1.json");

/// An OSV record for one package with one range and an optional `database_specific.severity`.
pub fn record(
    id: &str,
    ecosystem: &str,
    name: &str,
    introduced: &str,
    fixed: Option<&str>,
    severity: Option<&str>,
    summary: &str,
) -> String {
    let mut events = vec![serde_json::json!({ "introduced": introduced })];
    if let Some(fixed) = fixed {
        events.push(serde_json::json!({ "fixed": fixed }));
    }
    let mut record = serde_json::json!({
        "schema_version": "1.6.0",
        "id": id,
        "modified": "2025-01-01T00:00:00Z",
        "summary": summary,
        "affected": [{
            "package": { "ecosystem": ecosystem, "name": name },
            "ranges": [{ "type": "ECOSYSTEM", "events": events }]
        }]
    });
    if let Some(severity) = severity {
        record["database_specific"] = serde_json::json!({ "severity": severity });
    }
    record.to_string()
}

/// The made-up records used alongside the real ones.
pub fn made_up() -> Vec<String> {
    vec![
        // Critical and unbounded: no fixed version anywhere.
        record(
            "GHSA-test-nofx-0001",
            "npm",
            "nofix-lib",
            "1.0.0",
            None,
            Some("CRITICAL"),
            "Remote code execution in nofix-lib",
        ),
        // Low severity, fixed.
        record(
            "GHSA-test-lows-0001",
            "npm",
            "lowsev",
            "0",
            Some("1.0.1"),
            Some("LOW"),
            "Regular expression denial of service in lowsev",
        ),
        // No severity at all, like many PYSEC records.
        record(
            "PYSEC-2099-1",
            "PyPI",
            "legacy-lib",
            "0",
            Some("2.0"),
            None,
            "Path traversal in legacy-lib",
        ),
        // A second, high advisory on minimist to exercise several advisories in one finding.
        record(
            "GHSA-test-mini-0002",
            "npm",
            "minimist",
            "1.2.0",
            Some("1.2.7"),
            Some("HIGH"),
            "Denial of service in minimist",
        ),
    ]
}

/// Every fixture record in one database.
pub fn db() -> AdvisoryDb {
    let made_up = made_up();
    let mut records: Vec<&str> = vec![MINIMIST, CXP_JQUERY, FSEVENTS, BASSMASTER];
    records.extend(made_up.iter().map(String::as_str));
    let (db, report) = AdvisoryDb::from_osv_json(&records);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    db
}

/// Only the real minimist record (one advisory).
pub fn minimist_db() -> AdvisoryDb {
    AdvisoryDb::from_osv_json(&[MINIMIST]).0
}

/// A few popular npm names.
pub fn popular() -> PopularNames {
    PopularNames::from_names(
        Ecosystem::Npm,
        ["lodash", "express", "react", "minimist", "chalk"],
    )
}

/// The fixed "now" of every test: 2026-05-10 12:00 UTC.
pub fn now() -> jiff::Timestamp {
    at("2026-05-10T12:00:00Z")
}

/// A timestamp from RFC 3339 text.
pub fn at(text: &str) -> jiff::Timestamp {
    text.parse().expect("test timestamp")
}

/// A context at [`now`].
pub fn ctx<'a>(advisories: &'a AdvisoryDb, popular: Option<&'a PopularNames>) -> Context<'a> {
    Context {
        advisories,
        popular,
        now: now(),
    }
}

/// Versions published long ago.
pub fn versions(list: &[&str]) -> Vec<VersionInfo> {
    list.iter()
        .map(|version| VersionInfo {
            version: (*version).to_owned(),
            published: Some(at("2020-01-01T00:00:00Z")),
        })
        .collect()
}

/// A policy from TOML text.
pub fn policy(text: &str) -> Policy {
    Policy::from_toml(text).expect("test policy")
}
