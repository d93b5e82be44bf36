//! The advisory database: OSV records reduced to what policy needs, indexed by package.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::version::Version;
use crate::{Ecosystem, Error};

mod build;
mod cvss;
mod import;
mod index;
mod model;
mod osv;

use model::EcoData;
use osv::Parsed;

/// How many malformed-record messages an [`ImportReport`] keeps.
const MAX_PROBLEMS: usize = 20;

/// Severity of an advisory, from `database_specific.severity` or computed from a CVSS vector.
/// `None` where a record has neither ("unknown severity").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
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
#[derive(Debug, Clone)]
pub struct AdvisoryDb {
    ecosystems: BTreeMap<Ecosystem, EcoData>,
    revision: String,
}

impl Default for AdvisoryDb {
    fn default() -> Self {
        AdvisoryDb::empty()
    }
}

impl AdvisoryDb {
    /// An empty database (nothing is affected).
    pub fn empty() -> Self {
        AdvisoryDb::from_ecosystems(BTreeMap::new())
    }

    fn from_ecosystems(ecosystems: BTreeMap<Ecosystem, EcoData>) -> Self {
        let mut db = AdvisoryDb {
            ecosystems,
            revision: String::new(),
        };
        db.update_revision();
        db
    }

    /// Recompute the revision from the per-ecosystem digests.
    fn update_revision(&mut self) {
        let mut hasher = Sha256::new();
        hasher.update(b"moat-advisories\n");
        for (ecosystem, data) in &self.ecosystems {
            hasher.update(ecosystem.as_str().as_bytes());
            hasher.update(b"\0");
            hasher.update(data.digest.as_bytes());
            hasher.update(b"\n");
        }
        let mut revision = hex::encode(hasher.finalize());
        revision.truncate(16);
        self.revision = revision;
    }

    /// Build from parse outcomes (each with a name for problem messages).
    fn from_outcomes(outcomes: Vec<(String, Parsed)>) -> (Self, ImportReport) {
        let mut report = ImportReport::default();
        let mut records = Vec::with_capacity(outcomes.len());
        for (name, parsed) in outcomes {
            match parsed {
                Parsed::Record(record, git_ranges) => {
                    report.git_ranges += git_ranges;
                    records.push(record);
                }
                Parsed::Withdrawn => report.withdrawn += 1,
                Parsed::Malformed(reason) => {
                    report.malformed += 1;
                    if report.problems.len() < MAX_PROBLEMS {
                        report.problems.push(format!("{name}: {reason}"));
                    }
                }
            }
        }
        let mut ecosystems = build::build(&records);
        for (ecosystem, data) in &mut ecosystems {
            data.digest = index::digest(&index::encode(*ecosystem, data));
            report.loaded.push((*ecosystem, data.records));
        }
        (AdvisoryDb::from_ecosystems(ecosystems), report)
    }

    /// Import every dump found in `dir`: `<dir>/<eco>.zip` or `<dir>/<eco>/all.zip` for each
    /// ecosystem. Fails with [`Error::NoDumps`] when there is none.
    pub fn import_dir(dir: &Path) -> Result<(Self, ImportReport), Error> {
        let mut db = AdvisoryDb::empty();
        let mut report = ImportReport::default();
        let mut found = false;
        for ecosystem in Ecosystem::ALL {
            let flat = dir.join(format!("{}.zip", ecosystem.as_str()));
            let nested = dir.join(ecosystem.as_str()).join("all.zip");
            let Some(path) = [flat, nested].into_iter().find(|path| path.is_file()) else {
                continue;
            };
            found = true;
            let (part, part_report) = AdvisoryDb::import_zip(&path)?;
            db.merge(part);
            report.absorb(part_report);
        }
        if !found {
            return Err(Error::NoDumps {
                path: dir.to_owned(),
            });
        }
        Ok((db, report))
    }

    /// Import one OSV `all.zip` dump; the ecosystem is read from each record.
    pub fn import_zip(path: &Path) -> Result<(Self, ImportReport), Error> {
        Ok(AdvisoryDb::from_outcomes(import::read_zip(path)?))
    }

    /// Build from OSV JSON texts (tests and fuzzing). Malformed records are skipped and counted.
    pub fn from_osv_json(records: &[&str]) -> (Self, ImportReport) {
        let outcomes = records
            .iter()
            .enumerate()
            .map(|(index, text)| (format!("record {index}"), osv::parse(text)))
            .collect();
        AdvisoryDb::from_outcomes(outcomes)
    }

    /// Replace this database's data for every ecosystem `other` has.
    pub fn merge(&mut self, other: AdvisoryDb) {
        self.ecosystems.extend(other.ecosystems);
        self.update_revision();
    }

    /// Write the compact index into `dir` (one file per ecosystem, written atomically).
    pub fn save_index(&self, dir: &Path) -> Result<(), Error> {
        for (ecosystem, data) in &self.ecosystems {
            let bytes = index::encode(*ecosystem, data);
            index::write_atomically(&index::path(dir, *ecosystem), &bytes)?;
        }
        Ok(())
    }

    /// Load the compact index written by [`AdvisoryDb::save_index`]. A missing directory or
    /// missing files give an empty database, not an error.
    pub fn load_index(dir: &Path) -> Result<Self, Error> {
        let mut ecosystems = BTreeMap::new();
        for ecosystem in Ecosystem::ALL {
            let path = index::path(dir, ecosystem);
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::Io { path, source }),
            };
            ecosystems.insert(ecosystem, index::decode(&path, ecosystem, &bytes)?);
        }
        Ok(AdvisoryDb::from_ecosystems(ecosystems))
    }

    /// Advisories affecting `name@version` in `ecosystem` (name compared normalised).
    pub fn matches(&self, ecosystem: Ecosystem, name: &str, version: &str) -> Vec<Match<'_>> {
        let Some(data) = self.ecosystems.get(&ecosystem) else {
            return Vec::new();
        };
        let Some(entries) = data.packages.get(&ecosystem.normalize_name(name)) else {
            return Vec::new();
        };
        let parsed = Version::parse(ecosystem, version).ok();
        entries
            .iter()
            .filter(|entry| entry.affects(ecosystem, version, parsed.as_ref()))
            .filter_map(|entry| {
                Some(Match {
                    advisory: data.advisories.get(entry.advisory as usize)?,
                    fixed: entry.fixed_versions(ecosystem),
                })
            })
            .collect()
    }

    /// Whether any advisory names `name` in `ecosystem` at all, whatever its versions.
    pub fn has_advisories(&self, ecosystem: Ecosystem, name: &str) -> bool {
        self.ecosystems
            .get(&ecosystem)
            .and_then(|data| data.packages.get(&ecosystem.normalize_name(name)))
            .is_some_and(|entries| !entries.is_empty())
    }

    /// A malicious-package advisory that covers *every* version of `name` (range introduced
    /// at `0` with no upper bound), if any: such a package is blocked by name alone.
    pub fn malicious_package(&self, ecosystem: Ecosystem, name: &str) -> Option<&Advisory> {
        let data = self.ecosystems.get(&ecosystem)?;
        let entries = data.packages.get(&ecosystem.normalize_name(name))?;
        entries
            .iter()
            .filter(|entry| entry.covers_every_version())
            .filter_map(|entry| data.advisories.get(entry.advisory as usize))
            .find(|advisory| advisory.malicious)
    }

    /// Per-ecosystem counts, for every ecosystem that has data.
    pub fn status(&self) -> Vec<EcosystemStatus> {
        self.ecosystems
            .iter()
            .map(|(ecosystem, data)| EcosystemStatus {
                ecosystem: *ecosystem,
                records: data.records,
                malicious: data.malicious,
                newest_modified: data.newest_modified,
            })
            .collect()
    }

    /// A short stable hash of the loaded data; changes whenever the data does (used in ETags).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// How many merged advisories `ecosystem` holds (aliases merged, so at most its record
    /// count).
    pub fn advisory_count(&self, ecosystem: Ecosystem) -> usize {
        self.ecosystems
            .get(&ecosystem)
            .map_or(0, |data| data.advisories.len())
    }

    /// The merged advisory with `id` as its primary id or one of its aliases, if any.
    pub fn advisory(&self, ecosystem: Ecosystem, id: &str) -> Option<&Advisory> {
        let data = self.ecosystems.get(&ecosystem)?;
        data.advisories
            .iter()
            .find(|advisory| advisory.id == id || advisory.aliases.iter().any(|alias| alias == id))
    }
}

impl ImportReport {
    /// Add another import's counts to this one.
    fn absorb(&mut self, other: ImportReport) {
        for (ecosystem, count) in other.loaded {
            match self.loaded.iter_mut().find(|(seen, _)| *seen == ecosystem) {
                Some((_, total)) => *total = count,
                None => self.loaded.push((ecosystem, count)),
            }
        }
        self.withdrawn += other.withdrawn;
        self.malformed += other.malformed;
        self.git_ranges += other.git_ranges;
        let room = MAX_PROBLEMS.saturating_sub(self.problems.len());
        self.problems.extend(other.problems.into_iter().take(room));
    }
}

#[cfg(test)]
mod tests;
