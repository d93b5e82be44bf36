//! The advisory database: OSV records reduced to what policy needs, indexed by package.

use std::path::Path;

use crate::{Ecosystem, Error};

/// Severity of an advisory, from `database_specific.severity` or computed from a CVSS vector.
/// `None` where a record has neither ("unknown severity").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// CVSS 0.1–3.9, or GHSA LOW.
    Low,
    /// CVSS 4.0–6.9, or GHSA MODERATE / MEDIUM.
    Moderate,
    /// CVSS 7.0–8.9, or GHSA HIGH.
    High,
    /// CVSS 9.0–10, or GHSA CRITICAL.
    Critical,
}

impl Severity {
    /// Lowercase name: `low`, `moderate`, `high`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Moderate => "moderate",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One advisory as moat keeps it (aliases merged: one issue is one `Advisory`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Advisory {
    /// The OSV id (`GHSA-…`, `MAL-…`, `RUSTSEC-…`, `PYSEC-…`, `NSWG-ECO-…`).
    pub id: String,
    /// Other ids of the same issue (CVE, GHSA, …), merged records' ids included.
    pub aliases: Vec<String>,
    /// One-line summary (may be empty).
    pub summary: String,
    /// Severity, `None` when unknown.
    pub severity: Option<Severity>,
    /// Malicious package (MAL- id or alias, RustSec `malicious` category, CWE-506).
    pub malicious: bool,
    /// When the record was last modified.
    pub modified: Option<jiff::Timestamp>,
}

/// An advisory that affects one package version, with the fix versions its matching ranges name.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    /// The advisory.
    pub advisory: &'a Advisory,
    /// The `fixed` versions of the advisory's ranges for this package, in version order.
    pub fixed: Vec<String>,
}

/// Counts for one ecosystem, for `moat db status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EcosystemStatus {
    /// The ecosystem.
    pub ecosystem: Ecosystem,
    /// Advisory records loaded (after skipping withdrawn and malformed ones).
    pub records: usize,
    /// How many of them are malicious-package records.
    pub malicious: usize,
    /// The newest `modified` among them.
    pub newest_modified: Option<jiff::Timestamp>,
}

/// What an import read and what it skipped.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImportReport {
    /// Records loaded per ecosystem.
    pub loaded: Vec<(Ecosystem, usize)>,
    /// Records skipped because they are withdrawn.
    pub withdrawn: usize,
    /// Records skipped because they could not be parsed (the first few reasons are kept).
    pub malformed: usize,
    /// Ranges skipped because they are `GIT` ranges.
    pub git_ranges: usize,
    /// The first few malformed-record messages (`file: reason`).
    pub problems: Vec<String>,
}

/// Advisories for one or more ecosystems, indexed by normalised package name.
#[derive(Debug, Clone, Default)]
pub struct AdvisoryDb {
    // owner fills in
}

impl AdvisoryDb {
    /// An empty database (nothing is affected).
    pub fn empty() -> Self {
        todo!()
    }

    /// Import every dump found in `dir`: `<dir>/<eco>.zip` or `<dir>/<eco>/all.zip` for each
    /// ecosystem. Fails with [`Error::NoDumps`] when there is none.
    pub fn import_dir(dir: &Path) -> Result<(Self, ImportReport), Error> {
        let _ = dir;
        todo!()
    }

    /// Import one OSV `all.zip` dump; the ecosystem is read from each record.
    pub fn import_zip(path: &Path) -> Result<(Self, ImportReport), Error> {
        let _ = path;
        todo!()
    }

    /// Build from OSV JSON texts (tests and fuzzing). Malformed records are skipped and counted.
    pub fn from_osv_json(records: &[&str]) -> (Self, ImportReport) {
        let _ = records;
        todo!()
    }

    /// Replace this database's data for every ecosystem `other` has.
    pub fn merge(&mut self, other: AdvisoryDb) {
        let _ = other;
        todo!()
    }

    /// Write the compact index into `dir` (one file per ecosystem, written atomically).
    pub fn save_index(&self, dir: &Path) -> Result<(), Error> {
        let _ = dir;
        todo!()
    }

    /// Load the compact index written by [`AdvisoryDb::save_index`]. A missing directory or
    /// missing files give an empty database, not an error.
    pub fn load_index(dir: &Path) -> Result<Self, Error> {
        let _ = dir;
        todo!()
    }

    /// Advisories affecting `name@version` in `ecosystem` (name compared normalised).
    pub fn matches(&self, ecosystem: Ecosystem, name: &str, version: &str) -> Vec<Match<'_>> {
        let _ = (ecosystem, name, version);
        todo!()
    }

    /// A malicious-package advisory that covers *every* version of `name` (range introduced
    /// at `0` with no upper bound), if any: such a package is blocked by name alone.
    pub fn malicious_package(&self, ecosystem: Ecosystem, name: &str) -> Option<&Advisory> {
        let _ = (ecosystem, name);
        todo!()
    }

    /// Per-ecosystem counts, for every ecosystem that has data.
    pub fn status(&self) -> Vec<EcosystemStatus> {
        todo!()
    }

    /// A short stable hash of the loaded data; changes whenever the data does (used in ETags).
    pub fn revision(&self) -> &str {
        todo!()
    }
}
