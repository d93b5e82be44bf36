//! OSV range evaluation for PyPI (PEP 440 ordering) and crates.io (SemVer), with small
//! hand-written records.

use super::{db_of, record};
use crate::{AdvisoryDb, Ecosystem};

/// One `affected[]` entry of `ecosystem` with a single range of `kind`.
fn range(ecosystem: &str, name: &str, kind: &str, events: &str) -> String {
    format!(
        r#"{{"package":{{"ecosystem":"{ecosystem}","name":"{name}"}},"ranges":[{{"type":"{kind}","events":[{events}]}}]}}"#
    )
}

fn pypi(name: &str, events: &str) -> String {
    range("PyPI", name, "ECOSYSTEM", events)
}

fn crates(name: &str, events: &str) -> String {
    range("crates.io", name, "SEMVER", events)
}

/// A database of one record per `affected` entry, ids `X-0`, `X-1`, ….
fn db_with(entries: &[String]) -> AdvisoryDb {
    let records: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| record(&format!("X-{index}"), "", entry))
        .collect();
    let (db, report) = db_of(&records);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    db
}

fn assert_cases(db: &AdvisoryDb, ecosystem: Ecosystem, name: &str, cases: &[(&str, bool)]) {
    for &(version, expected) in cases {
        let affected = !db.matches(ecosystem, name, version).is_empty();
        assert_eq!(affected, expected, "{ecosystem} {name}@{version}");
    }
}

#[test]
fn pypi_fixed_excludes_the_fix_and_later_but_not_its_prereleases() {
    let db = db_with(&[pypi("pkg", r#"{"introduced":"0"},{"fixed":"1.0"}"#)]);
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "pkg",
        &[
            ("0.1", true),
            ("0.9.post1", true),
            ("1.0.dev0", true),
            ("1.0a1", true),
            ("1.0b1", true),
            ("1.0rc1", true),
            ("1.0", false),
            ("1.0.0", false),
            // PEP 440 sorts a local version after its public version.
            ("1.0+local", false),
            ("1.0.post1", false),
            ("2.0", false),
            // An epoch outranks every release number.
            ("1!0.1", false),
        ],
    );
}

#[test]
fn pypi_introduced_at_a_prerelease_and_fixed_at_a_post_release() {
    let db = db_with(&[pypi(
        "pkg",
        r#"{"introduced":"1.0a1"},{"fixed":"1.0.post1"}"#,
    )]);
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "pkg",
        &[
            ("0.9", false),
            ("1.0.dev0", false),
            ("1.0a1", true),
            ("1.0b1", true),
            ("1.0rc1", true),
            ("1.0", true),
            ("1.0+local", true),
            ("1.0.post1.dev0", true),
            ("1.0.post1", false),
            ("1.0.post2", false),
            ("1.0.1", false),
        ],
    );
}

#[test]
fn pypi_last_affected_is_inclusive() {
    let db = db_with(&[pypi("pkg", r#"{"introduced":"0"},{"last_affected":"2.0"}"#)]);
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "pkg",
        &[
            ("1.5", true),
            ("2.0rc1", true),
            ("2.0", true),
            ("2.0.0", true),
            ("2.0.post1.dev0", false),
            ("2.0.post1", false),
            ("2.0.1", false),
        ],
    );
    assert_eq!(
        db.matches(Ecosystem::PyPI, "pkg", "2.0")[0].fixed,
        Vec::<String>::new()
    );
}

#[test]
fn pypi_epochs() {
    let db = db_with(&[
        pypi("old-scheme", r#"{"introduced":"0"},{"fixed":"2013.1"}"#),
        pypi("new-scheme", r#"{"introduced":"1!1.0"},{"fixed":"1!1.2"}"#),
    ]);
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "old-scheme",
        &[("2012.12", true), ("2013.1", false), ("1!0.1", false)],
    );
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "new-scheme",
        &[
            ("2.0", false),
            ("2024.1", false),
            ("1!0.9", false),
            ("1!1.0", true),
            ("1!1.1.post3", true),
            ("1!1.2rc1", true),
            ("1!1.2", false),
            ("2!0.1", false),
        ],
    );
}

#[test]
fn pypi_multiple_ranges_unsorted_events_and_fix_order() {
    // Two ranges in one range object, events out of order, plus a second range object.
    let entry = r#"{"package":{"ecosystem":"PyPI","name":"Multi_Range"},"ranges":[
        {"type":"ECOSYSTEM","events":[{"introduced":"2.0"},{"fixed":"2.0.3"},{"introduced":"0"},{"fixed":"1.9.10"}]},
        {"type":"ECOSYSTEM","events":[{"introduced":"3.0a1"},{"last_affected":"3.1"}]}]}"#;
    let db = db_with(&[entry.to_owned()]);
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "multi-range",
        &[
            ("1.9.2", true),
            // Release segments compare numerically: 1.9.10 > 1.9.9.
            ("1.9.9", true),
            ("1.9.10", false),
            ("1.10", false),
            ("2.0.dev1", false),
            ("2.0", true),
            ("2.0.2.post1", true),
            ("2.0.3", false),
            ("2.9", false),
            ("3.0a1", true),
            ("3.1", true),
            ("3.1.1", false),
        ],
    );
    let matches = db.matches(Ecosystem::PyPI, "MULTI.RANGE", "2.0");
    assert_eq!(matches.len(), 1, "one advisory reported once");
    assert_eq!(
        matches[0].fixed,
        vec!["1.9.10", "2.0.3"],
        "fixes in PEP 440 order"
    );
}

#[test]
fn pypi_listed_versions_match_any_spelling() {
    let entry = r#"{"package":{"ecosystem":"PyPI","name":"listed"},"versions":["1.3.1dev","0.8.0-alpha2","2.0"]}"#;
    let db = db_with(&[entry.to_owned()]);
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "listed",
        &[
            ("1.3.1dev", true),
            ("1.3.1.dev0", true),
            ("0.8.0a2", true),
            ("2.0.0", true),
            ("2.0+local", false),
            ("1.3.1", false),
            ("2.0.post1", false),
        ],
    );
}

#[test]
fn pypi_whole_package_ranges_and_unparseable_versions() {
    let db = db_with(&[
        pypi("Evil.Pkg", r#"{"introduced":"0"}"#),
        pypi("bounded", r#"{"introduced":"0"},{"fixed":"1.0"}"#),
    ]);
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "evil_pkg",
        &[
            ("0", true),
            ("0.dev0", true),
            ("1!99.0", true),
            ("not a version", true),
        ],
    );
    assert_cases(
        &db,
        Ecosystem::PyPI,
        "bounded",
        &[("0.dev0", true), ("latest", false), ("1.0.*", false)],
    );
}

#[test]
fn crates_semver_ranges() {
    // RustSec style: the lowest SemVer version `0.0.0-0` as the beginning, two ranges.
    let db = db_with(&[crates(
        "Foo_Bar",
        r#"{"introduced":"0.0.0-0"},{"fixed":"0.8.5"},{"introduced":"0.9.0"},{"fixed":"0.9.3"}"#,
    )]);
    assert_cases(
        &db,
        Ecosystem::CratesIo,
        "foo-bar",
        &[
            ("0.0.0", true),
            ("0.0.1-alpha", true),
            ("0.8.4", true),
            ("0.8.5-rc.1", true),
            ("0.8.5", false),
            ("0.8.5+build.7", false),
            ("0.8.10", false),
            ("0.9.0-beta", false),
            ("0.9.0", true),
            ("0.9.2+patched", true),
            ("0.9.3", false),
            ("1.0.0", false),
            // crates.io versions are strict SemVer: these never parse, so only an unbounded
            // range would match them.
            ("v0.8.0", false),
            ("0.8", false),
        ],
    );
    assert_eq!(
        db.matches(Ecosystem::CratesIo, "FOO_BAR", "0.1.0")[0].fixed,
        vec!["0.8.5", "0.9.3"]
    );
}

#[test]
fn crates_prerelease_introduced_and_last_affected() {
    let db = db_with(&[
        // RUSTSEC-2026-0260 style: malicious from the first prerelease of 0.3.10 on.
        crates("from-pre", r#"{"introduced":"0.3.10-0"}"#),
        crates(
            "bounded",
            r#"{"introduced":"1.0.0-alpha.2"},{"last_affected":"1.0.0-rc.1"}"#,
        ),
    ]);
    assert_cases(
        &db,
        Ecosystem::CratesIo,
        "from-pre",
        &[
            ("0.3.9", false),
            ("0.3.10-0", true),
            ("0.3.10-alpha.1", true),
            ("0.3.10", true),
            ("2.0.0", true),
        ],
    );
    assert_cases(
        &db,
        Ecosystem::CratesIo,
        "bounded",
        &[
            ("1.0.0-alpha.1", false),
            ("1.0.0-alpha.2", true),
            ("1.0.0-alpha.10", true),
            ("1.0.0-beta", true),
            ("1.0.0-rc.1", true),
            ("1.0.0-rc.1+build", true),
            ("1.0.0-rc.2", false),
            ("1.0.0", false),
        ],
    );
}

#[test]
fn crates_whole_package_from_zero_spellings() {
    let db = db_with(&[
        crates("osv-zero", r#"{"introduced":"0"}"#),
        crates("rustsec-zero", r#"{"introduced":"0.0.0-0"}"#),
    ]);
    for name in ["osv-zero", "rustsec_zero"] {
        assert!(db.has_advisories(Ecosystem::CratesIo, name), "{name}");
        assert_cases(
            &db,
            Ecosystem::CratesIo,
            name,
            &[("0.0.0-0", true), ("99.0.0", true), ("not-semver", true)],
        );
    }
}
