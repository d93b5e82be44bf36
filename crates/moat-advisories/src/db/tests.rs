//! Unit tests with small hand-written OSV records.

use super::*;

mod ecosystems;

fn record(id: &str, extra: &str, affected: &str) -> String {
    format!(
        r#"{{"schema_version":"1.6.0","id":"{id}","modified":"2024-01-02T03:04:05Z",
            "summary":"summary of {id}","details":"long text","references":[{{"type":"WEB","url":"x"}}],
            {extra} "affected":[{affected}]}}"#
    )
}

fn npm_range(name: &str, kind: &str, events: &str) -> String {
    format!(
        r#"{{"package":{{"ecosystem":"npm","name":"{name}"}},"ranges":[{{"type":"{kind}","events":[{events}]}}]}}"#
    )
}

fn db_of(records: &[String]) -> (AdvisoryDb, ImportReport) {
    let texts: Vec<&str> = records.iter().map(String::as_str).collect();
    AdvisoryDb::from_osv_json(&texts)
}

fn ids(matches: &[Match<'_>]) -> Vec<String> {
    matches.iter().map(|m| m.advisory.id.clone()).collect()
}

fn affected(db: &AdvisoryDb, name: &str, version: &str) -> bool {
    !db.matches(Ecosystem::Npm, name, version).is_empty()
}

#[test]
fn malformed_records_are_skipped_and_counted() {
    let good = record(
        "GHSA-aaaa-aaaa-aaaa",
        "",
        &npm_range("a", "SEMVER", r#"{"introduced":"0"}"#),
    );
    let inputs = [
        "not json".to_owned(),
        r#"{"summary":"no id"}"#.to_owned(),
        r#"{"id":"X-1","affected":"not a list"}"#.to_owned(),
        r#"{"id":""}"#.to_owned(),
        good,
    ];
    let (db, report) = db_of(&inputs);
    assert_eq!(report.malformed, 4);
    assert_eq!(report.problems.len(), 4);
    assert!(
        report.problems[0].starts_with("record 0: "),
        "{:?}",
        report.problems
    );
    assert_eq!(report.loaded, vec![(Ecosystem::Npm, 1)]);
    assert!(affected(&db, "a", "1.0.0"));
}

#[test]
fn withdrawn_records_are_skipped() {
    let withdrawn = record(
        "MAL-2000-1",
        r#""withdrawn":"2024-01-01T00:00:00Z","#,
        &npm_range("gone", "SEMVER", r#"{"introduced":"0"}"#),
    );
    let null_withdrawn = record(
        "MAL-2000-2",
        r#""withdrawn":null,"#,
        &npm_range("kept", "SEMVER", r#"{"introduced":"0"}"#),
    );
    let (db, report) = db_of(&[withdrawn, null_withdrawn]);
    assert_eq!(report.withdrawn, 1);
    assert!(db.malicious_package(Ecosystem::Npm, "gone").is_none());
    assert!(db.malicious_package(Ecosystem::Npm, "kept").is_some());
}

#[test]
fn git_ranges_are_skipped_and_counted() {
    let affected_json = r#"{"package":{"ecosystem":"npm","name":"g"},"ranges":[
        {"type":"GIT","repo":"https://x","events":[{"introduced":"0"},{"fixed":"abc123"}]},
        {"type":"SEMVER","events":[{"introduced":"1.0.0"},{"fixed":"1.1.0"}]}]}"#;
    let (db, report) = db_of(&[record("GHSA-gggg-gggg-gggg", "", affected_json)]);
    assert_eq!(report.git_ranges, 1);
    assert!(affected(&db, "g", "1.0.5"));
    assert!(
        !affected(&db, "g", "0.9.0"),
        "the GIT range must not count as from-zero"
    );
}

#[test]
fn range_semantics() {
    let multi = r#"{"introduced":"2.0.0"},{"fixed":"2.1.0"},{"introduced":"1.0.0"},{"fixed":"1.2.6"},{"introduced":"3.0.0"},{"last_affected":"3.0.5"}"#;
    let (db, _) = db_of(&[record(
        "GHSA-rrrr-rrrr-rrrr",
        "",
        &npm_range("r", "ECOSYSTEM", multi),
    )]);
    let cases = [
        ("0.9.9", false),
        ("1.0.0", true),
        ("1.2.6-beta", true),
        ("1.2.5+build", true),
        ("1.2.6", false),
        ("1.9.9", false),
        ("2.0.0-rc.1", false),
        ("2.0.0", true),
        ("2.1.0", false),
        ("3.0.5", true),
        ("3.0.5+meta", true),
        ("3.0.6-0", false),
        ("3.0.6", false),
    ];
    for (version, expected) in cases {
        assert_eq!(affected(&db, "r", version), expected, "{version}");
    }
    let matches = db.matches(Ecosystem::Npm, "r", "1.0.0");
    assert_eq!(matches[0].fixed, vec!["1.2.6", "2.1.0"]);
}

#[test]
fn union_of_ranges_versions_and_entries() {
    let entries = format!(
        "{},{},{}",
        npm_range("u", "SEMVER", r#"{"introduced":"0"},{"fixed":"0.2.4"}"#),
        npm_range("u", "SEMVER", r#"{"introduced":"1.0.0"},{"fixed":"1.2.6"}"#),
        r#"{"package":{"ecosystem":"npm","name":"u"},"versions":["5.0.0","not-a-version"]}"#,
    );
    let (db, _) = db_of(&[record("GHSA-uuuu-uuuu-uuuu", "", &entries)]);
    for (version, expected) in [
        ("0.2.3", true),
        ("0.2.4", false),
        ("1.1.0", true),
        ("5.0.0", true),
        ("5.0.0+build", true),
        ("4.0.0", false),
        ("not-a-version", true),
        ("other-junk", false),
    ] {
        assert_eq!(affected(&db, "u", version), expected, "{version}");
    }
    let matches = db.matches(Ecosystem::Npm, "u", "0.1.0");
    assert_eq!(matches.len(), 1, "one advisory reported once");
    assert_eq!(matches[0].fixed, vec!["0.2.4", "1.2.6"]);
}

#[test]
fn unparseable_versions_fail_closed_only_for_whole_package_ranges() {
    let records = [
        record(
            "MAL-2020-1",
            "",
            &npm_range("evil", "SEMVER", r#"{"introduced":"0"}"#),
        ),
        record(
            "GHSA-bbbb-bbbb-bbbb",
            "",
            &npm_range(
                "bounded",
                "SEMVER",
                r#"{"introduced":"0"},{"fixed":"1.0.0"}"#,
            ),
        ),
    ];
    let (db, _) = db_of(&records);
    assert!(affected(&db, "evil", "latest"));
    assert!(affected(&db, "evil", "1.2"));
    assert!(!affected(&db, "bounded", "latest"));
    assert!(affected(&db, "bounded", "0.5.0"));
}

#[test]
fn unsorted_events_are_sorted_before_evaluation() {
    let events = r#"{"fixed":"1.5.0"},{"introduced":"1.0.0"}"#;
    let (db, _) = db_of(&[record(
        "GHSA-ssss-ssss-ssss",
        "",
        &npm_range("s", "SEMVER", events),
    )]);
    assert!(affected(&db, "s", "1.2.0"));
    assert!(!affected(&db, "s", "1.5.0"));
    assert!(!affected(&db, "s", "0.5.0"));
}

#[test]
fn names_are_normalised_and_unknown_ecosystems_ignored() {
    let entries = format!(
        "{},{}",
        npm_range("Mixed-Case", "SEMVER", r#"{"introduced":"0"}"#),
        r#"{"package":{"ecosystem":"Go","name":"mixed-case"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}]}"#
    );
    let (db, report) = db_of(&[record("MAL-2021-9", "", &entries)]);
    assert!(db.malicious_package(Ecosystem::Npm, "mixed-case").is_some());
    assert!(db.malicious_package(Ecosystem::Npm, "MIXED-CASE").is_some());
    assert_eq!(report.loaded, vec![(Ecosystem::Npm, 1)]);
    let crates = r#"{"package":{"ecosystem":"crates.io","name":"Foo_Bar"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0.0.0-0"}]}]}"#;
    let (db, _) = db_of(&[record(
        "RUSTSEC-2099-0001",
        r#""database_specific":{"categories":["malicious"]},"#,
        crates,
    )]);
    let advisory = db
        .malicious_package(Ecosystem::CratesIo, "foo-bar")
        .map(|a| a.id.as_str());
    assert_eq!(advisory, Some("RUSTSEC-2099-0001"));
    assert!(db.malicious_package(Ecosystem::Npm, "foo-bar").is_none());
}

#[test]
fn aliases_merge_into_one_advisory() {
    let range = npm_range("m", "SEMVER", r#"{"introduced":"0"}"#);
    let records = [
        record(
            "MAL-2023-1",
            r#""aliases":["GHSA-mmmm-mmmm-mmmm"],"#,
            &range,
        ),
        record(
            "GHSA-mmmm-mmmm-mmmm",
            r#""aliases":["CVE-2023-0001"],"database_specific":{"severity":"HIGH"},"#,
            &npm_range("m", "SEMVER", r#"{"introduced":"1.0.0"},{"fixed":"1.0.1"}"#),
        ),
        // Shares only the CVE with the GHSA record: still the same issue.
        record("PYSEC-2023-9", r#""aliases":["CVE-2023-0001"],"#, &range)
            .replace("2024-01-02T03:04:05Z", "2025-01-01T00:00:00Z"),
        record("NSWG-ECO-7", "", &range),
    ];
    let (db, report) = db_of(&records);
    assert_eq!(report.loaded, vec![(Ecosystem::Npm, 4)]);
    assert_eq!(db.advisory_count(Ecosystem::Npm), 2);
    let matches = db.matches(Ecosystem::Npm, "m", "1.0.0");
    assert_eq!(ids(&matches), vec!["GHSA-mmmm-mmmm-mmmm", "NSWG-ECO-7"]);
    let merged = matches[0].advisory;
    assert_eq!(
        merged.aliases,
        vec!["CVE-2023-0001", "MAL-2023-1", "PYSEC-2023-9"]
    );
    assert!(
        merged.malicious,
        "a malicious member makes the issue malicious"
    );
    assert_eq!(merged.severity, Some(Severity::High));
    assert_eq!(merged.summary, "summary of GHSA-mmmm-mmmm-mmmm");
    assert_eq!(merged.modified, "2025-01-01T00:00:00Z".parse().ok());
    assert_eq!(matches[0].fixed, vec!["1.0.1"]);
    assert_eq!(
        db.malicious_package(Ecosystem::Npm, "m")
            .map(|a| a.id.as_str()),
        Some("GHSA-mmmm-mmmm-mmmm")
    );
    assert_eq!(
        db.status()[0].malicious,
        1,
        "records, not merged issues, are counted"
    );
}

#[test]
fn malicious_classification() {
    let range = npm_range("p", "SEMVER", r#"{"introduced":"0"}"#);
    let cases = [
        ("MAL-2024-1", "", true),
        ("GHSA-aaaa-0000-0001", r#""aliases":["MAL-2024-2"],"#, true),
        (
            "GHSA-aaaa-0000-0002",
            r#""database_specific":{"cwe_ids":["CWE-79","CWE-506"]},"#,
            true,
        ),
        (
            "GHSA-aaaa-0000-0003",
            r#""database_specific":{"cwe_ids":["CWE-79"]},"#,
            false,
        ),
        (
            "RUSTSEC-2024-0001",
            r#""database_specific":{"categories":["Malicious"]},"#,
            true,
        ),
        (
            "RUSTSEC-2024-0002",
            r#""database_specific":{"categories":["memory-corruption"]},"#,
            false,
        ),
        (
            "GHSA-aaaa-0000-0004",
            r#""database_specific":{"cwe_ids":"CWE-506","categories":7},"#,
            false,
        ),
    ];
    for (id, extra, expected) in cases {
        let (db, report) = db_of(&[record(id, extra, &range)]);
        assert_eq!(report.malformed, 0, "{id}: {:?}", report.problems);
        assert_eq!(
            db.malicious_package(Ecosystem::Npm, "p").is_some(),
            expected,
            "{id}"
        );
    }
    let affected_level = r#"{"package":{"ecosystem":"npm","name":"p"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}],
        "database_specific":{"cwes":[{"cweId":"CWE-506","name":"Embedded Malicious Code"}]}}"#;
    let (db, _) = db_of(&[record("GHSA-aaaa-0000-0005", "", affected_level)]);
    assert!(db.malicious_package(Ecosystem::Npm, "p").is_some());
}

#[test]
fn version_level_malware_is_not_whole_package() {
    let listed = r#"{"package":{"ecosystem":"npm","name":"v"},"versions":["9.9.9"]}"#;
    let bounded = npm_range(
        "w",
        "SEMVER",
        r#"{"introduced":"0"},{"last_affected":"1.0.0"}"#,
    );
    let (db, _) = db_of(&[
        record("MAL-2022-1", "", listed),
        record("MAL-2022-2", "", &bounded),
    ]);
    assert!(db.malicious_package(Ecosystem::Npm, "v").is_none());
    assert!(affected(&db, "v", "9.9.9"));
    assert!(!affected(&db, "v", "1.0.0"));
    assert!(db.malicious_package(Ecosystem::Npm, "w").is_none());
    assert!(affected(&db, "w", "1.0.0"));
}

#[test]
fn severity_sources() {
    let range = npm_range("x", "SEMVER", r#"{"introduced":"0"}"#);
    let cvss = |vector: &str| format!(r#""severity":[{{"type":"CVSS_V3","score":"{vector}"}}],"#);
    let cases = [
        (r#""database_specific":{"severity":"moderate"},"#.to_owned(), Some(Severity::Moderate)),
        (r#""database_specific":{"severity":"MEDIUM"},"#.to_owned(), Some(Severity::Moderate)),
        (
            format!(
                r#"{} "database_specific":{{"severity":"LOW"}},"#,
                cvss("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
            ),
            Some(Severity::Low),
        ),
        (cvss("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), Some(Severity::Critical)),
        (cvss("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:N"), Some(Severity::Moderate)),
        (cvss("garbage"), None),
        (
            r#""severity":[{"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],"#.to_owned(),
            None,
        ),
        (r#""severity":[{"type":"CVSS_V2","score":"AV:N/AC:L/Au:N/C:P/I:P/A:P"}],"#.to_owned(), Some(Severity::High)),
        (String::new(), None),
    ];
    for (extra, expected) in cases {
        let (db, report) = db_of(&[record("GHSA-cccc-cccc-cccc", &extra, &range)]);
        assert_eq!(report.malformed, 0, "{extra}: {:?}", report.problems);
        let matches = db.matches(Ecosystem::Npm, "x", "1.0.0");
        assert_eq!(matches[0].advisory.severity, expected, "{extra}");
    }
}

#[test]
fn revision_tracks_data() {
    let one = record(
        "MAL-2020-5",
        "",
        &npm_range("a", "SEMVER", r#"{"introduced":"0"}"#),
    );
    let two = record(
        "MAL-2020-6",
        "",
        &npm_range("b", "SEMVER", r#"{"introduced":"0"}"#),
    );
    let (first, _) = db_of(&[one.clone(), two.clone()]);
    let (same, _) = db_of(&[two.clone(), one.clone()]);
    let (other, _) = db_of(std::slice::from_ref(&one));
    assert_eq!(
        first.revision(),
        same.revision(),
        "record order does not matter"
    );
    assert_ne!(first.revision(), other.revision());
    assert_eq!(first.revision().len(), 16);
    assert!(first.revision().chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(AdvisoryDb::empty().revision(), first.revision());
    assert_eq!(
        AdvisoryDb::empty().revision(),
        AdvisoryDb::default().revision()
    );
}

#[test]
fn merge_replaces_per_ecosystem() {
    let npm = record(
        "MAL-2020-7",
        "",
        &npm_range("a", "SEMVER", r#"{"introduced":"0"}"#),
    );
    let npm_new = record(
        "MAL-2020-8",
        "",
        &npm_range("b", "SEMVER", r#"{"introduced":"0"}"#),
    );
    let crates = record(
        "MAL-2020-9",
        "",
        r#"{"package":{"ecosystem":"crates.io","name":"c"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}]}"#,
    );
    let (mut db, _) = db_of(&[npm, crates]);
    let before = db.revision().to_owned();
    let (newer, _) = db_of(&[npm_new]);
    db.merge(newer);
    assert_ne!(db.revision(), before);
    assert!(
        db.malicious_package(Ecosystem::Npm, "a").is_none(),
        "npm data replaced"
    );
    assert!(db.malicious_package(Ecosystem::Npm, "b").is_some());
    assert!(
        db.malicious_package(Ecosystem::CratesIo, "c").is_some(),
        "crates.io kept"
    );
    assert_eq!(db.status().len(), 2);
}

#[test]
fn index_round_trip() {
    let records = [
        record(
            "MAL-2020-10",
            "",
            &npm_range("a", "SEMVER", r#"{"introduced":"0"}"#),
        ),
        record(
            "GHSA-iiii-iiii-iiii",
            r#""aliases":["CVE-1"],"database_specific":{"severity":"HIGH"},"#,
            &npm_range("b", "SEMVER", r#"{"introduced":"1.0.0"},{"fixed":"1.0.1"}"#),
        ),
    ];
    let (db, _) = db_of(&records);
    let dir = tempfile::tempdir().expect("temp dir");
    db.save_index(dir.path()).expect("save");
    assert!(dir.path().join("npm.index.json").is_file());
    let loaded = AdvisoryDb::load_index(dir.path()).expect("load");
    assert_eq!(loaded.revision(), db.revision());
    assert_eq!(loaded.status(), db.status());
    assert_eq!(
        loaded.matches(Ecosystem::Npm, "b", "1.0.0"),
        db.matches(Ecosystem::Npm, "b", "1.0.0")
    );
    assert_eq!(loaded.matches(Ecosystem::Npm, "b", "1.0.0").len(), 1);
    assert!(loaded.malicious_package(Ecosystem::Npm, "a").is_some());
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(names, vec!["npm.index.json"]);
}

#[test]
fn index_errors() {
    let missing = AdvisoryDb::load_index(Path::new("/nonexistent/moat/index")).expect("empty");
    assert!(missing.status().is_empty());
    assert_eq!(missing.revision(), AdvisoryDb::empty().revision());

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("npm.index.json");
    std::fs::write(&file, br#"{"format":999}"#).expect("write");
    let error = AdvisoryDb::load_index(dir.path()).expect_err("format mismatch");
    assert!(matches!(error, Error::Index { .. }), "{error}");
    assert!(error.to_string().contains("format version 999"), "{error}");
    std::fs::write(&file, b"{truncated").expect("write");
    assert!(matches!(
        AdvisoryDb::load_index(dir.path()),
        Err(Error::Index { .. })
    ));
}

#[test]
fn import_dir_without_dumps_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(matches!(
        AdvisoryDb::import_dir(dir.path()),
        Err(Error::NoDumps { .. })
    ));
    std::fs::write(dir.path().join("npm.zip"), b"not a zip").expect("write");
    assert!(matches!(
        AdvisoryDb::import_dir(dir.path()),
        Err(Error::Zip { .. })
    ));
}
