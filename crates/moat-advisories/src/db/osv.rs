//! OSV JSON records, parsed leniently into the few fields moat keeps.
//!
//! Unknown fields (`details`, `references`, `credits`, …) are skipped without being stored;
//! loosely typed `database_specific` fields that do not have the expected shape are ignored
//! rather than failing the record.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::Severity;
use super::cvss;
use super::model::{Event, is_beginning};
use crate::Ecosystem;
use crate::version::Version;

/// One record reduced to what the database needs.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) summary: String,
    pub(crate) severity: Option<Severity>,
    pub(crate) malicious: bool,
    pub(crate) modified: Option<jiff::Timestamp>,
    pub(crate) affected: Vec<Affected>,
}

/// One `affected[]` entry of a known ecosystem.
#[derive(Debug, Clone)]
pub(crate) struct Affected {
    pub(crate) ecosystem: Ecosystem,
    /// Normalised with [`Ecosystem::normalize_name`].
    pub(crate) name: String,
    /// `SEMVER`/`ECOSYSTEM` ranges, events sorted by version.
    pub(crate) ranges: Vec<Vec<Event>>,
    pub(crate) versions: Vec<String>,
}

/// The outcome of parsing one record.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A live record, and how many `GIT` ranges it had (skipped).
    Record(Record, usize),
    /// A withdrawn record (skipped).
    Withdrawn,
    /// Not a readable OSV record.
    Malformed(String),
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    modified: Option<Cow<'a, str>>,
    #[serde(default)]
    withdrawn: Option<IgnoredAnyNonNull>,
    #[serde(default, borrow)]
    aliases: Option<Vec<Cow<'a, str>>>,
    #[serde(default, borrow)]
    summary: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    severity: Option<Vec<RawSeverity<'a>>>,
    #[serde(default, borrow)]
    affected: Option<Vec<RawAffected<'a>>>,
    #[serde(default)]
    database_specific: Option<DatabaseSpecific>,
}

/// Any JSON value; `null` deserialises as absent through the surrounding `Option`.
struct IgnoredAnyNonNull;

impl<'de> Deserialize<'de> for IgnoredAnyNonNull {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| IgnoredAnyNonNull)
    }
}

#[derive(Deserialize)]
struct RawSeverity<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    score: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawAffected<'a> {
    #[serde(default, borrow)]
    package: Option<RawPackage<'a>>,
    #[serde(default, borrow)]
    ranges: Option<Vec<RawRange<'a>>>,
    #[serde(default, borrow)]
    versions: Option<Vec<Cow<'a, str>>>,
    #[serde(default, borrow)]
    severity: Option<Vec<RawSeverity<'a>>>,
    #[serde(default)]
    database_specific: Option<DatabaseSpecific>,
}

#[derive(Deserialize)]
struct RawPackage<'a> {
    #[serde(borrow)]
    ecosystem: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawRange<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    events: Vec<RawEvent<'a>>,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(default, borrow)]
    introduced: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    fixed: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    last_affected: Option<Cow<'a, str>>,
}

/// A value of the expected shape, or anything else (ignored).
#[derive(Deserialize)]
#[serde(untagged)]
enum Loose<T> {
    Value(T),
    Other(IgnoredAny),
}

impl<T> Loose<T> {
    fn value(&self) -> Option<&T> {
        match self {
            Loose::Value(value) => Some(value),
            Loose::Other(_) => None,
        }
    }
}

/// The `database_specific` fields moat reads (GHSA, RustSec and malicious-packages styles).
///
/// Deserialised by hand: any JSON value is accepted (a non-object gives no fields), unknown
/// keys are skipped without buffering, and each known key's value is kept only if it has the
/// expected shape.
#[derive(Default)]
struct DatabaseSpecific {
    severity: Option<Loose<String>>,
    cwe_ids: Option<Loose<Vec<Loose<String>>>>,
    categories: Option<Loose<Vec<Loose<String>>>>,
    cwes: Option<Loose<Vec<Loose<Cwe>>>>,
    /// RustSec keeps its CVSS vector here.
    cvss: Option<Loose<String>>,
}

impl<'de> Deserialize<'de> for DatabaseSpecific {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DatabaseSpecificVisitor)
    }
}

struct DatabaseSpecificVisitor;

impl<'de> serde::de::Visitor<'de> for DatabaseSpecificVisitor {
    type Value = DatabaseSpecific;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = DatabaseSpecific::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "severity" => fields.severity = Some(map.next_value()?),
                "cwe_ids" => fields.cwe_ids = Some(map.next_value()?),
                "categories" => fields.categories = Some(map.next_value()?),
                "cwes" => fields.cwes = Some(map.next_value()?),
                "cvss" => fields.cvss = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(DatabaseSpecific::default())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(DatabaseSpecific::default())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(DatabaseSpecific::default())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(DatabaseSpecific::default())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(DatabaseSpecific::default())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(DatabaseSpecific::default())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(DatabaseSpecific::default())
    }
}

#[derive(Deserialize)]
struct Cwe {
    #[serde(rename = "cweId", default)]
    cwe_id: Option<Loose<String>>,
}

fn strings(list: &Option<Loose<Vec<Loose<String>>>>) -> impl Iterator<Item = &str> {
    list.iter()
        .filter_map(Loose::value)
        .flatten()
        .filter_map(Loose::value)
        .map(String::as_str)
}

impl DatabaseSpecific {
    fn is_malicious(&self) -> bool {
        strings(&self.categories).any(|c| c.eq_ignore_ascii_case("malicious"))
            || strings(&self.cwe_ids).any(is_cwe_506)
            || self
                .cwes
                .iter()
                .filter_map(Loose::value)
                .flatten()
                .filter_map(Loose::value)
                .filter_map(|cwe| cwe.cwe_id.as_ref()?.value())
                .any(|id| is_cwe_506(id))
    }

    fn stated_severity(&self) -> Option<Severity> {
        let text = self.severity.as_ref()?.value()?;
        match text.trim().to_ascii_uppercase().as_str() {
            "LOW" => Some(Severity::Low),
            "MODERATE" | "MEDIUM" => Some(Severity::Moderate),
            "HIGH" => Some(Severity::High),
            "CRITICAL" => Some(Severity::Critical),
            _ => None,
        }
    }

    fn cvss_severity(&self) -> Option<Severity> {
        let vector = self.cvss.as_ref()?.value()?;
        cvss::severity_of("CVSS_V3", vector)
    }
}

fn is_cwe_506(id: &str) -> bool {
    id.trim().eq_ignore_ascii_case("CWE-506")
}

/// Whether an id names a malicious-package record.
pub(crate) fn is_mal_id(id: &str) -> bool {
    id.starts_with("MAL-")
}

/// The ecosystem of an OSV `package.ecosystem` string, spelled exactly as OSV does.
fn ecosystem_of(text: &str) -> Option<Ecosystem> {
    match text {
        "npm" => Some(Ecosystem::Npm),
        "PyPI" => Some(Ecosystem::PyPI),
        "crates.io" => Some(Ecosystem::CratesIo),
        _ => None,
    }
}

/// Parse one OSV record.
pub(crate) fn parse(text: &str) -> Parsed {
    let raw: RawRecord<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(error) => return Parsed::Malformed(error.to_string()),
    };
    if raw.id.trim().is_empty() {
        return Parsed::Malformed("empty `id`".to_owned());
    }
    if raw.withdrawn.is_some() {
        return Parsed::Withdrawn;
    }
    let record_specific = raw.database_specific.as_ref();
    let aliases: Vec<String> = raw
        .aliases
        .unwrap_or_default()
        .into_iter()
        .map(Cow::into_owned)
        .filter(|alias| !alias.is_empty())
        .collect();

    let mut malicious = is_mal_id(&raw.id)
        || aliases.iter().any(|alias| is_mal_id(alias))
        || record_specific.is_some_and(DatabaseSpecific::is_malicious);
    let mut stated = record_specific.and_then(DatabaseSpecific::stated_severity);
    let mut computed = severities(raw.severity.as_deref());

    let mut git_ranges = 0;
    let mut affected = Vec::new();
    for entry in raw.affected.unwrap_or_default() {
        let specific = entry.database_specific.as_ref();
        malicious |= specific.is_some_and(DatabaseSpecific::is_malicious);
        stated = stated.max(specific.and_then(DatabaseSpecific::stated_severity));
        computed = computed
            .max(severities(entry.severity.as_deref()))
            .max(specific.and_then(DatabaseSpecific::cvss_severity));
        let Some(package) = entry.package else {
            continue;
        };
        let Some(ecosystem) = ecosystem_of(&package.ecosystem) else {
            continue;
        };
        let mut ranges = Vec::new();
        for range in entry.ranges.unwrap_or_default() {
            match range.kind.as_ref() {
                "SEMVER" | "ECOSYSTEM" => ranges.push(sorted_events(ecosystem, range.events)),
                "GIT" => git_ranges += 1,
                // Unknown range types cannot be evaluated; like GIT they are left out.
                _ => {}
            }
        }
        let versions = entry
            .versions
            .unwrap_or_default()
            .into_iter()
            .map(Cow::into_owned)
            .collect();
        affected.push(Affected {
            ecosystem,
            name: ecosystem.normalize_name(&package.name),
            ranges,
            versions,
        });
    }

    let record = Record {
        id: raw.id.into_owned(),
        aliases,
        summary: raw.summary.map(Cow::into_owned).unwrap_or_default(),
        severity: stated.or(computed),
        malicious,
        modified: raw.modified.and_then(|text| text.parse().ok()),
        affected,
    };
    Parsed::Record(record, git_ranges)
}

/// The highest severity computable from a `severity[]` list.
fn severities(list: Option<&[RawSeverity<'_>]>) -> Option<Severity> {
    list.unwrap_or_default()
        .iter()
        .filter_map(|entry| cvss::severity_of(&entry.kind, &entry.score))
        .max()
}

/// Convert raw events and sort them by version (`introduced: "0"` first), as OSV's evaluation
/// algorithm requires. When some version does not parse, the given order is kept.
fn sorted_events(ecosystem: Ecosystem, raw: Vec<RawEvent<'_>>) -> Vec<Event> {
    let mut events: Vec<Event> = raw
        .into_iter()
        .flat_map(|event| {
            let introduced = event.introduced.map(|v| Event::Introduced(v.into_owned()));
            let fixed = event.fixed.map(|v| Event::Fixed(v.into_owned()));
            let last = event
                .last_affected
                .map(|v| Event::LastAffected(v.into_owned()));
            [introduced, fixed, last].into_iter().flatten()
        })
        .collect();
    let keys: Option<Vec<Option<Version>>> = events
        .iter()
        .map(|event| match event {
            Event::Introduced(v) if is_beginning(v) => Some(None),
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) => {
                Version::parse(ecosystem, v).ok().map(Some)
            }
        })
        .collect();
    if let Some(keys) = keys {
        let mut keyed: Vec<(Option<Version>, Event)> = keys.into_iter().zip(events).collect();
        // `None` ("0") sorts first; the sort is stable for equal versions.
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        events = keyed.into_iter().map(|(_, event)| event).collect();
    }
    events
}
