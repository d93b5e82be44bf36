//! The full per-ecosystem dumps (record counts from `data/SOURCES.md`).

use moat_advisories::{AdvisoryDb, Ecosystem};

use crate::shared_data;

fn import(file: &str) -> (AdvisoryDb, moat_advisories::ImportReport) {
    let path = shared_data().join("advisories").join(file);
    AdvisoryDb::import_zip(&path).expect("full dump imports")
}

#[test]
fn full_npm_dump() {
    let (db, report) = import("npm.zip");
    // 22,241 MAL + 467 NSWG-ECO + 5 GHSA; withdrawn records were removed from this bundle.
    assert_eq!(report.loaded, vec![(Ecosystem::Npm, 22_713)]);
    assert_eq!(report.withdrawn, 0);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    let status = &db.status()[0];
    assert_eq!(status.records, 22_713);
    assert!(status.malicious >= 22_241, "{}", status.malicious);
    assert!(status.newest_modified.is_some());
    assert!(db.advisory_count(Ecosystem::Npm) <= 22_713);
    let minimist = db.matches(Ecosystem::Npm, "minimist", "1.2.5");
    assert!(
        minimist
            .iter()
            .any(|m| m.advisory.id == "GHSA-xvch-5gv4-984h")
    );
    assert!(db.malicious_package(Ecosystem::Npm, "cxp-jquery").is_some());
    assert!(db.malicious_package(Ecosystem::Npm, "lodash").is_none());
}

#[test]
fn full_pypi_and_crates_dumps() {
    let (pypi, report) = import("PyPI.zip");
    assert_eq!(report.loaded, vec![(Ecosystem::PyPI, 11_858)]);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    assert!(pypi.status()[0].malicious >= 9_207);

    let (crates, report) = import("crates.io.zip");
    assert_eq!(report.loaded, vec![(Ecosystem::CratesIo, 1_195)]);
    assert_eq!(report.malformed, 0, "{:?}", report.problems);
    assert!(crates.status()[0].malicious >= 2);
}
