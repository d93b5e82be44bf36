//! The small hand-picked sample dumps (each with exactly one withdrawn record).

use moat_advisories::{AdvisoryDb, Ecosystem, Match, Severity};

use crate::sample;

fn npm() -> AdvisoryDb {
    let (db, report) = AdvisoryDb::import_zip(&sample("npm")).expect("npm sample imports");
    assert_eq!(report.withdrawn, 1);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    assert_eq!(report.loaded, vec![(Ecosystem::Npm, 10)]);
    db
}

fn ids<'a>(matches: &'a [Match<'_>]) -> Vec<&'a str> {
    matches.iter().map(|m| m.advisory.id.as_str()).collect()
}

#[test]
fn withdrawn_record_is_skipped_and_counted() {
    let db = npm();
    // MAL-2024-1398 (drata 1.0.0, 1.1.0) is withdrawn.
    assert!(db.matches(Ecosystem::Npm, "drata", "1.0.0").is_empty());
    assert_eq!(db.status()[0].records, 10);
}

#[test]
fn minimist_two_ranges_and_prereleases() {
    let db = npm();
    let cases = [
        ("0.0.1", true),
        ("0.2.3", true),
        ("0.2.4", false),
        ("0.9.0", false),
        ("1.0.0", true),
        ("1.2.5", true),
        ("1.2.6-beta", true),
        ("1.2.6", false),
        ("1.2.8", false),
    ];
    for (version, expected) in cases {
        let matches = db.matches(Ecosystem::Npm, "minimist", version);
        let expected_ids: &[&str] = if expected {
            &["GHSA-xvch-5gv4-984h"]
        } else {
            &[]
        };
        assert_eq!(ids(&matches), expected_ids, "minimist@{version}");
    }
    let matches = db.matches(Ecosystem::Npm, "minimist", "1.2.5");
    assert_eq!(matches[0].fixed, vec!["0.2.4", "1.2.6"]);
    let advisory = matches[0].advisory;
    assert_eq!(advisory.severity, Some(Severity::Critical));
    assert_eq!(advisory.aliases, vec!["CVE-2021-44906"]);
    assert_eq!(advisory.summary, "Prototype Pollution in minimist");
    assert!(!advisory.malicious);
    assert_eq!(advisory.modified, "2023-02-27T14:47:14Z".parse().ok());
}

#[test]
fn last_affected_is_inclusive() {
    let db = npm();
    // NSWG-ECO-1: bassmaster introduced 0, last_affected 1.5.1.
    assert_eq!(
        ids(&db.matches(Ecosystem::Npm, "bassmaster", "1.5.1")),
        vec!["NSWG-ECO-1"]
    );
    assert_eq!(
        ids(&db.matches(Ecosystem::Npm, "bassmaster", "0.0.1")),
        vec!["NSWG-ECO-1"]
    );
    assert!(db.matches(Ecosystem::Npm, "bassmaster", "1.5.2").is_empty());
    // NSWG-ECO-104: two ranges 5.2.1..=6.0.0 and 6.0.0..=6.0.2.
    for (version, expected) in [
        ("5.2.0", false),
        ("5.2.1", true),
        ("6.0.2", true),
        ("6.0.3", false),
    ] {
        let affected = !db
            .matches(Ecosystem::Npm, "electron-packager", version)
            .is_empty();
        assert_eq!(affected, expected, "electron-packager@{version}");
    }
}

#[test]
fn introduced_zero_and_whole_package_malware() {
    let db = npm();
    // MAL-2021-1: cxp-jquery, introduced 0 with no fix.
    let advisory = db
        .malicious_package(Ecosystem::Npm, "cxp-jquery")
        .expect("whole package");
    assert_eq!(advisory.id, "MAL-2021-1");
    assert!(advisory.malicious);
    assert_eq!(
        ids(&db.matches(Ecosystem::Npm, "cxp-jquery", "0.0.0")),
        vec!["MAL-2021-1"]
    );
    assert_eq!(
        ids(&db.matches(Ecosystem::Npm, "cxp-jquery", "not-semver")),
        vec!["MAL-2021-1"]
    );
    // GHSA-mh6f-8j2x-4483: flatmap-stream from 0 (CWE-506) and event-stream 3.3.6 only.
    let flatmap = db
        .malicious_package(Ecosystem::Npm, "flatmap-stream")
        .expect("whole package");
    assert_eq!(flatmap.id, "GHSA-mh6f-8j2x-4483");
    assert!(
        db.malicious_package(Ecosystem::Npm, "event-stream")
            .is_none()
    );
    assert_eq!(db.matches(Ecosystem::Npm, "event-stream", "3.3.6").len(), 1);
    assert!(
        db.matches(Ecosystem::Npm, "event-stream", "4.0.0")
            .is_empty()
    );
    // Not malicious, not affected.
    assert!(db.malicious_package(Ecosystem::Npm, "minimist").is_none());
    assert!(db.malicious_package(Ecosystem::Npm, "left-pad").is_none());
}

#[test]
fn aliases_and_malicious_classification() {
    let db = npm();
    // MAL-2023-462 (alias GHSA-xv2f-5jw4-v95m): fsevents 1.0.0..1.2.11, CWE-506 at affected level.
    let matches = db.matches(Ecosystem::Npm, "fsevents", "1.2.10");
    assert_eq!(ids(&matches), vec!["MAL-2023-462"]);
    let advisory = matches[0].advisory;
    assert_eq!(advisory.aliases, vec!["GHSA-xv2f-5jw4-v95m"]);
    assert!(advisory.malicious);
    assert_eq!(matches[0].fixed, vec!["1.2.11"]);
    assert!(db.matches(Ecosystem::Npm, "fsevents", "1.2.11").is_empty());
    assert!(
        db.malicious_package(Ecosystem::Npm, "fsevents").is_none(),
        "version-level only"
    );
    // MAL-2022-81: a scoped package, listed versions only.
    let scoped = db.matches(Ecosystem::Npm, "@arkadium/eagle-user-client", "9.99.999");
    assert_eq!(ids(&scoped), vec!["MAL-2022-81"]);
    assert!(scoped[0].advisory.malicious);
    let encoded = db.matches(Ecosystem::Npm, "@Arkadium%2Feagle-user-client", "9.99.999");
    assert_eq!(
        ids(&encoded),
        vec!["MAL-2022-81"],
        "encoded scope and case fold"
    );
    assert!(
        db.matches(Ecosystem::Npm, "@arkadium/eagle-user-client", "9.99.998")
            .is_empty()
    );
    // GHSA-97m3-w2cp-4xx6 (node-ipc) carries CWE-506 in database_specific.cwe_ids.
    let node_ipc = db.matches(Ecosystem::Npm, "node-ipc", "10.1.2");
    assert_eq!(ids(&node_ipc), vec!["GHSA-97m3-w2cp-4xx6"]);
    assert!(node_ipc[0].advisory.malicious);
    // lodash is an ordinary vulnerability.
    let lodash = db.matches(Ecosystem::Npm, "lodash", "4.17.19");
    assert_eq!(ids(&lodash), vec!["GHSA-p6mc-m468-83gw"]);
    assert!(!lodash[0].advisory.malicious);
    assert_eq!(lodash[0].advisory.severity, Some(Severity::High));
}

#[test]
fn nswg_severity() {
    let db = npm();
    let bassmaster = db.matches(Ecosystem::Npm, "bassmaster", "1.0.0");
    // CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:N = 6.5.
    assert_eq!(bassmaster[0].advisory.severity, Some(Severity::Moderate));
    let packager = db.matches(Ecosystem::Npm, "electron-packager", "6.0.0");
    // CVSS:3.0/AV:P/AC:L/PR:L/UI:R/S:U/C:L/I:L/A:N = 3.4.
    assert_eq!(packager[0].advisory.severity, Some(Severity::Low));
}

#[test]
fn pypi_sample() {
    let (db, report) = AdvisoryDb::import_zip(&sample("PyPI")).expect("PyPI sample imports");
    assert_eq!(report.withdrawn, 1);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    assert_eq!(report.loaded, vec![(Ecosystem::PyPI, 6)]);
    assert_eq!(report.git_ranges, 1, "PYSEC-2012-1 has a GIT range");
    // PYSEC-2023-73 (redis) is withdrawn.
    assert!(db.matches(Ecosystem::PyPI, "redis", "2.0.0").is_empty());
    // PYSEC-2012-1 (beaker): ECOSYSTEM range 0..1.6.5.post1 (PEP 440 ordering).
    assert_eq!(db.matches(Ecosystem::PyPI, "Beaker", "1.6.5").len(), 1);
    assert!(
        db.matches(Ecosystem::PyPI, "beaker", "1.6.5.post1")
            .is_empty()
    );
    assert!(db.matches(Ecosystem::PyPI, "beaker", "1.6.6").is_empty());
    // PYSEC-2022-42969 (py): last_affected 1.11.0.
    assert_eq!(db.matches(Ecosystem::PyPI, "py", "1.11.0").len(), 1);
    assert!(db.matches(Ecosystem::PyPI, "py", "1.11.1").is_empty());
    // MAL-2022-7421: whole package, PEP 503 name normalisation.
    let ascii = db
        .malicious_package(Ecosystem::PyPI, "ASCII2Text")
        .expect("malicious");
    assert_eq!(ascii.id, "MAL-2022-7421");
    // MAL-2023-10: listed versions only.
    assert!(
        db.malicious_package(Ecosystem::PyPI, "security-util-py")
            .is_none()
    );
    assert_eq!(
        db.matches(Ecosystem::PyPI, "security_util.py", "0.0.6")
            .len(),
        1
    );
    // PYSEC-2017-105: CVSS 3.0 vector 7.5.
    let atlas = db.matches(Ecosystem::PyPI, "apache-atlas", "0.0.1");
    assert_eq!(atlas[0].advisory.severity, Some(Severity::High));
}

#[test]
fn crates_sample() {
    let (db, report) = AdvisoryDb::import_zip(&sample("crates.io")).expect("crates sample imports");
    assert_eq!(report.withdrawn, 1);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    assert_eq!(report.loaded, vec![(Ecosystem::CratesIo, 7)]);
    // RUSTSEC-2026-0265: `malicious` category, introduced 0.0.0-0 with no fix.
    let proc_macro1 = db
        .malicious_package(Ecosystem::CratesIo, "proc_macro1")
        .expect("malicious");
    assert_eq!(proc_macro1.id, "RUSTSEC-2026-0265");
    // RUSTSEC-2026-0260: malicious from 0.3.10-0 on: version-level.
    assert!(
        db.malicious_package(Ecosystem::CratesIo, "arrayref")
            .is_none()
    );
    assert_eq!(
        db.matches(Ecosystem::CratesIo, "arrayref", "0.3.10").len(),
        1
    );
    assert!(
        db.matches(Ecosystem::CratesIo, "arrayref", "0.3.9")
            .is_empty()
    );
    // RUSTSEC-2026-0237: not malicious although it covers every version.
    assert!(
        db.malicious_package(Ecosystem::CratesIo, "nostr-relay-builder")
            .is_none()
    );
    // RUSTSEC-2016-0001: openssl < 0.9.0, CVSS 8.1.
    let openssl = db.matches(Ecosystem::CratesIo, "openssl", "0.8.3");
    assert_eq!(openssl[0].advisory.id, "RUSTSEC-2016-0001");
    assert_eq!(openssl[0].advisory.severity, Some(Severity::High));
    assert_eq!(openssl[0].fixed, vec!["0.9.0"]);
    // RUSTSEC-2020-0053 (dirs) is withdrawn.
    assert!(db.matches(Ecosystem::CratesIo, "dirs", "1.0.0").is_empty());
    // MAL-2022-1 (alias GHSA-7pwq-f4pq-78gm): rustdecimal.
    let rustdecimal = db
        .malicious_package(Ecosystem::CratesIo, "rustdecimal")
        .expect("malicious");
    assert_eq!(rustdecimal.aliases, vec!["GHSA-7pwq-f4pq-78gm"]);
}

#[test]
fn import_dir_accepts_both_layouts() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("npm")).expect("mkdir");
    std::fs::copy(sample("npm"), dir.path().join("npm/all.zip")).expect("copy");
    std::fs::copy(sample("PyPI"), dir.path().join("PyPI.zip")).expect("copy");
    let (db, report) = AdvisoryDb::import_dir(dir.path()).expect("imports");
    assert_eq!(
        report.loaded,
        vec![(Ecosystem::Npm, 10), (Ecosystem::PyPI, 6)]
    );
    assert_eq!(report.withdrawn, 2);
    let status: Vec<_> = db
        .status()
        .iter()
        .map(|s| (s.ecosystem, s.records))
        .collect();
    assert_eq!(status, vec![(Ecosystem::Npm, 10), (Ecosystem::PyPI, 6)]);
    assert!(db.malicious_package(Ecosystem::Npm, "cxp-jquery").is_some());
    assert!(
        db.malicious_package(Ecosystem::PyPI, "ascii2text")
            .is_some()
    );

    let index = tempfile::tempdir().expect("temp dir");
    db.save_index(index.path()).expect("save");
    let loaded = AdvisoryDb::load_index(index.path()).expect("load");
    assert_eq!(loaded.revision(), db.revision());
    assert_eq!(loaded.status(), db.status());
}

fn affected(db: &AdvisoryDb, ecosystem: Ecosystem, name: &str, version: &str) -> Vec<String> {
    db.matches(ecosystem, name, version)
        .iter()
        .map(|m| m.advisory.id.clone())
        .collect()
}

fn assert_cases(
    db: &AdvisoryDb,
    ecosystem: Ecosystem,
    name: &str,
    id: &str,
    cases: &[(&str, bool)],
) {
    for &(version, expected) in cases {
        let expected: Vec<String> = if expected {
            vec![id.to_owned()]
        } else {
            Vec::new()
        };
        assert_eq!(
            affected(db, ecosystem, name, version),
            expected,
            "{name}@{version}"
        );
    }
}

#[test]
fn pypi_sample_follows_pep_440() {
    let (db, _) = AdvisoryDb::import_zip(&sample("PyPI")).expect("PyPI sample imports");
    // PYSEC-2012-1 (beaker): ECOSYSTEM range introduced 0, fixed 1.6.5.post1; its `versions`
    // list spells a dev release `1.3.1dev`.
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "beaker",
        "PYSEC-2012-1",
        &[
            ("0.5", true),
            ("1.3.1dev", true),
            ("1.3.1.dev0", true),
            ("1.6.5rc1", true),
            ("1.6.5", true),
            ("1.6.5+local", true),
            ("1.6.5.post1.dev0", true),
            ("1.6.5.post1", false),
            ("1.6.5-1", false),
            ("1.6.5.post2", false),
            ("1.6.6.dev0", false),
            ("1.7", false),
            ("1!0.1", false),
        ],
    );
    let beaker = db.matches(Ecosystem::PyPI, "Beaker", "1.6.4");
    assert_eq!(beaker[0].fixed, vec!["1.6.5.post1"]);
    assert_eq!(beaker[0].advisory.aliases, vec!["CVE-2012-3458"]);
    // PYSEC-2022-42969 (py): introduced 0, last_affected 1.11.0; its versions list holds
    // `0.8.0-alpha2` and `1.4.7.dev3`.
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "py",
        "PYSEC-2022-42969",
        &[
            ("0.8.0-alpha2", true),
            ("0.8.0a2", true),
            ("1.4.7.dev3", true),
            ("1.11.0rc1", true),
            ("1.11.0", true),
            ("1.11", true),
            ("1.11.0.post1", false),
            ("1.11.1.dev0", false),
            ("1.11.1", false),
            ("2.0", false),
        ],
    );
    assert!(
        db.matches(Ecosystem::PyPI, "py", "1.0.0")[0]
            .fixed
            .is_empty()
    );
    // PYSEC-2017-105 (apache-atlas): introduced 0 with no fix, not malicious: every version.
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "Apache_Atlas",
        "PYSEC-2017-105",
        &[("0.0.1", true), ("0.0.15", true), ("1!99.0.post1", true)],
    );
    assert!(
        db.malicious_package(Ecosystem::PyPI, "apache-atlas")
            .is_none()
    );
    // MAL-2023-10 (security-util-py): listed versions 0.0.5 and 0.0.6 only.
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "security-util-py",
        "MAL-2023-10",
        &[
            ("0.0.5", true),
            ("0.0.6", true),
            ("0.0.6.0", true),
            ("0.0.6+local", false),
            ("0.0.4", false),
            ("0.0.7", false),
        ],
    );
    // MAL-2022-7421 (ascii2text): whole package, even versions that are not PEP 440.
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "ascii2text",
        "MAL-2022-7421",
        &[("0.0.1", true), ("not-a-version", true)],
    );
    // PYSEC-2024-55 (cipherbcrypt) says "Malicious package" in prose only: every version is
    // affected, but without a MAL id, malicious category or CWE-506 it is not classified.
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "cipherbcrypt",
        "PYSEC-2024-55",
        &[("1.0", true)],
    );
    assert!(
        db.malicious_package(Ecosystem::PyPI, "cipherbcrypt")
            .is_none()
    );
}

#[test]
fn crates_sample_follows_semver() {
    let (db, _) = AdvisoryDb::import_zip(&sample("crates.io")).expect("crates sample imports");
    // RUSTSEC-2016-0001 (openssl): introduced 0.0.0-0, fixed 0.9.0.
    assert_cases(
        &db,
        Ecosystem::CratesIo,
        "openssl",
        "RUSTSEC-2016-0001",
        &[
            ("0.0.0", true),
            ("0.1.0-alpha", true),
            ("0.8.3", true),
            ("0.9.0-rc.1", true),
            ("0.9.0", false),
            ("0.9.0+build", false),
            ("0.10.55", false),
            ("v0.8.3", false),
        ],
    );
    // RUSTSEC-2026-0244 (gettext-rs): fixed 0.8.0; names fold `_` to `-`.
    assert_cases(
        &db,
        Ecosystem::CratesIo,
        "gettext_rs",
        "RUSTSEC-2026-0244",
        &[
            ("0.7.2", true),
            ("0.8.0-alpha.1", true),
            ("0.8.0", false),
            ("0.8.1", false),
        ],
    );
    // RUSTSEC-2026-0260 (arrayref): from 0.3.10-0 on, prereleases of 0.3.10 included.
    assert_cases(
        &db,
        Ecosystem::CratesIo,
        "arrayref",
        "RUSTSEC-2026-0260",
        &[
            ("0.3.9", false),
            ("0.3.10-alpha.1", true),
            ("0.3.10", true),
            ("0.4.0", true),
        ],
    );
    // MAL-2023-8429 (littest): the listed version 0.3.1 only.
    assert_cases(
        &db,
        Ecosystem::CratesIo,
        "littest",
        "MAL-2023-8429",
        &[
            ("0.3.1", true),
            ("0.3.1+build", true),
            ("0.3.0", false),
            ("0.3.2", false),
        ],
    );
    // MAL-2022-1 (rustdecimal): OSV's `0` as the beginning, so every version, parseable or not.
    assert_cases(
        &db,
        Ecosystem::CratesIo,
        "rustdecimal",
        "MAL-2022-1",
        &[("0.0.0-0", true), ("1.23.1", true), ("latest", true)],
    );
}
