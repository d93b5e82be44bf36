//! The in-memory (and on-disk) shape of one ecosystem's advisories, and range evaluation.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Advisory;
use crate::Ecosystem;
use crate::version::Version;

/// One range event; the version text is kept as OSV wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Event {
    /// Affected from this version on (inclusive); `"0"` means from the beginning.
    #[serde(rename = "i")]
    Introduced(String),
    /// Not affected from this version on.
    #[serde(rename = "f")]
    Fixed(String),
    /// Affected up to and including this version.
    #[serde(rename = "l")]
    LastAffected(String),
}

/// How one advisory affects one package: its ranges and listed versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Index into [`EcoData::advisories`].
    #[serde(rename = "a")]
    pub(crate) advisory: u32,
    /// Ranges, each a list of events sorted by version.
    #[serde(rename = "r", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) ranges: Vec<Vec<Event>>,
    /// Exact affected versions, sorted and deduplicated.
    #[serde(rename = "v", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) versions: Vec<String>,
}

/// Everything known about one ecosystem.
#[derive(Debug, Clone, Default)]
pub(crate) struct EcoData {
    /// Records loaded (withdrawn and malformed ones excluded).
    pub(crate) records: usize,
    /// Malicious records among them.
    pub(crate) malicious: usize,
    /// The newest `modified` among them.
    pub(crate) newest_modified: Option<jiff::Timestamp>,
    /// Merged advisories, sorted by id.
    pub(crate) advisories: Vec<Advisory>,
    /// Normalised package name → entries, sorted by advisory index.
    pub(crate) packages: HashMap<String, Vec<Entry>>,
    /// Hex SHA-256 of this ecosystem's serialised index.
    pub(crate) digest: String,
}

/// Whether an `introduced` version means "from the very first version": OSV's `0`, or the
/// lowest SemVer version `0.0.0-0` that RustSec writes.
pub(crate) fn is_beginning(text: &str) -> bool {
    matches!(text.trim(), "0" | "0.0.0-0")
}

/// Whether a range covers every version: introduced at the beginning, with no upper bound.
pub(crate) fn is_unbounded_from_zero(events: &[Event]) -> bool {
    let from_zero = events
        .iter()
        .any(|event| matches!(event, Event::Introduced(v) if is_beginning(v)));
    let bounded = events
        .iter()
        .any(|event| matches!(event, Event::Fixed(_) | Event::LastAffected(_)));
    from_zero && !bounded
}

/// OSV's evaluation of one range for a parsed version: walk the sorted events, turning
/// "affected" on at `introduced` and off at `fixed` / after `last_affected`. Events whose
/// version does not parse are ignored.
fn range_affects(ecosystem: Ecosystem, events: &[Event], version: &Version) -> bool {
    let mut affected = false;
    for event in events {
        match event {
            Event::Introduced(text) if is_beginning(text) => affected = true,
            Event::Introduced(text) => {
                if let Ok(bound) = Version::parse(ecosystem, text) {
                    if *version >= bound {
                        affected = true;
                    }
                }
            }
            Event::Fixed(text) => {
                if let Ok(bound) = Version::parse(ecosystem, text) {
                    if *version >= bound {
                        affected = false;
                    }
                }
            }
            Event::LastAffected(text) => {
                if let Ok(bound) = Version::parse(ecosystem, text) {
                    if *version > bound {
                        affected = false;
                    }
                }
            }
        }
    }
    affected
}

impl Entry {
    /// Whether `text` (parsed as `parsed` when the ecosystem's rules allow) is affected.
    ///
    /// A version the rules cannot parse matches `versions` by exact text, and otherwise only a
    /// range that covers every version (fail closed for whole-package malware).
    pub(crate) fn affects(
        &self,
        ecosystem: Ecosystem,
        text: &str,
        parsed: Option<&Version>,
    ) -> bool {
        if self
            .versions
            .binary_search_by(|v| v.as_str().cmp(text))
            .is_ok()
        {
            return true;
        }
        match parsed {
            Some(version) => {
                self.ranges
                    .iter()
                    .any(|events| range_affects(ecosystem, events, version))
                    || self.versions.iter().any(|listed| {
                        Version::parse(ecosystem, listed).is_ok_and(|listed| listed == *version)
                    })
            }
            None => self
                .ranges
                .iter()
                .any(|events| is_unbounded_from_zero(events)),
        }
    }

    /// Whether some range of this entry covers every version.
    pub(crate) fn covers_every_version(&self) -> bool {
        self.ranges
            .iter()
            .any(|events| is_unbounded_from_zero(events))
    }

    /// The `fixed` versions of this entry's ranges, in version order, deduplicated.
    pub(crate) fn fixed_versions(&self, ecosystem: Ecosystem) -> Vec<String> {
        let mut fixed: Vec<(Option<Version>, &str)> = self
            .ranges
            .iter()
            .flatten()
            .filter_map(|event| match event {
                Event::Fixed(text) => Some((Version::parse(ecosystem, text).ok(), text.as_str())),
                Event::Introduced(_) | Event::LastAffected(_) => None,
            })
            .collect();
        // Parsed versions in version order, then unparseable ones by text.
        fixed.sort_by(|a, b| match (&a.0, &b.0) {
            (Some(x), Some(y)) => x.cmp(y).then_with(|| a.1.cmp(b.1)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.1.cmp(b.1),
        });
        let mut out: Vec<String> = Vec::with_capacity(fixed.len());
        for (_, text) in fixed {
            if out.last().map(String::as_str) != Some(text) {
                out.push(text.to_owned());
            }
        }
        out
    }
}
