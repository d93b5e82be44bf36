//! One crate's sparse index file: one JSON object per line, one line per published version.
//!
//! The gate reads the upstream file once, hands its versions to policy, and serves it back with
//! blocked versions marked `"yanked": true`; every other line is passed through byte for byte.
//!
//! Security invariants: every line must name the requested crate and carry a valid `cksum` (else
//! the whole file is refused and the gate fails closed); a line with a repeated top-level key is
//! refused (cargo's own parser rejects it, so the two can never read different versions out of
//! one line); a repeated version is served once, as its first line, so a blocked version cannot
//! come back through a second, unyanked copy.

use std::collections::BTreeSet;
use std::fmt;

use moat_policy::VersionInfo;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::MetadataError;
use crate::crates::path::same_name;

/// A parsed upstream index file.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexFile {
    name: String,
    entries: Vec<IndexEntry>,
    lines: Vec<Line>,
}

/// One version line of an index file, as the gate needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The crate name as the line spells it.
    pub name: String,
    /// The version string as the line spells it.
    pub vers: String,
    /// SHA-256 of the `.crate` file: 64 lowercase hex digits.
    pub cksum: String,
    /// Whether the upstream has yanked this version.
    pub yanked: bool,
    /// When the version was published (`pubtime`, RFC 3339), if present and readable.
    pub pubtime: Option<jiff::Timestamp>,
}

/// The upstream bytes of one kept line and its parsed object (re-serialised when blocked).
#[derive(Debug, Clone, PartialEq)]
struct Line {
    raw: Vec<u8>,
    object: Map<String, Value>,
}

impl IndexFile {
    /// Parse an upstream index file for the crate `requested`.
    ///
    /// Blank lines are skipped. Every line must be a JSON object with string `name`, `vers` and
    /// `cksum` (64 lowercase hex digits), a boolean or null `yanked` if any, and no repeated
    /// top-level key: anything else is [`MetadataError::Malformed`], as is a file without lines.
    /// Every `name` must equal `requested` under crates.io rules (ASCII case-insensitive, `-`
    /// and `_` equivalent), else [`MetadataError::NameMismatch`]. A version that appears again
    /// (same string, or equal as SemVer) is ignored after its first line.
    pub fn parse(body: &[u8], requested: &str) -> Result<IndexFile, MetadataError> {
        let mut entries: Vec<IndexEntry> = Vec::new();
        let mut lines = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (number, raw) in body.split(|byte| *byte == b'\n').enumerate() {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (entry, object) = parse_line(raw).map_err(|reason| {
                MetadataError::Malformed(format!("index line {}: {reason}", number + 1))
            })?;
            if !same_name(&entry.name, requested) {
                return Err(MetadataError::NameMismatch {
                    requested: requested.to_owned(),
                    found: entry.name,
                });
            }
            if !seen.insert(version_key(&entry.vers)) {
                continue;
            }
            entries.push(entry);
            lines.push(Line {
                raw: raw.to_vec(),
                object,
            });
        }
        let Some(first) = entries.first() else {
            return Err(MetadataError::Malformed("index file has no lines".into()));
        };
        Ok(IndexFile {
            name: first.name.clone(),
            entries,
            lines,
        })
    }

    /// The crate's name as the upstream spells it (from the first line).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every version, in file order (repeats dropped).
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The entry of `version`: the exact string, else the entry equal to it as SemVer (build
    /// metadata included). Check policy against the returned entry's `vers`, not the request's.
    pub fn entry(&self, version: &str) -> Option<&IndexEntry> {
        if let Some(entry) = self.entries.iter().find(|entry| entry.vers == version) {
            return Some(entry);
        }
        let wanted = semver::Version::parse(version).ok()?;
        self.entries
            .iter()
            .find(|entry| semver::Version::parse(&entry.vers).is_ok_and(|v| v == wanted))
    }

    /// One [`VersionInfo`] per entry (`vers`, `pubtime`), in file order, for policy evaluation.
    pub fn version_infos(&self) -> Vec<VersionInfo> {
        self.entries
            .iter()
            .map(|entry| VersionInfo {
                version: entry.vers.clone(),
                published: entry.pubtime,
            })
            .collect()
    }

    /// The index file served to clients, one line per kept entry, each followed by `\n`.
    ///
    /// Lines whose `vers` is in `blocked` and that are not yanked upstream are re-serialised
    /// with `"yanked": true` (other keys, their order and `cksum` unchanged); every other line is
    /// byte-identical to the upstream line. A blocked line that cannot be re-serialised is left
    /// out rather than served unyanked.
    pub fn render(&self, blocked: &BTreeSet<String>) -> Vec<u8> {
        let capacity = self.lines.iter().map(|line| line.raw.len() + 1).sum();
        let mut out = Vec::with_capacity(capacity);
        for (entry, line) in self.entries.iter().zip(&self.lines) {
            if entry.yanked || !blocked.contains(&entry.vers) {
                out.extend_from_slice(&line.raw);
                out.push(b'\n');
                continue;
            }
            let mut object = line.object.clone();
            object.insert("yanked".into(), Value::Bool(true));
            if let Ok(bytes) = serde_json::to_vec(&object) {
                out.extend_from_slice(&bytes);
                out.push(b'\n');
            }
        }
        out
    }
}

/// Parse one non-blank line into its entry and object, or say why it is malformed.
fn parse_line(raw: &[u8]) -> Result<(IndexEntry, Map<String, Value>), String> {
    let members = serde_json::from_slice::<Members>(raw)
        .map_err(|err| format!("not a JSON object: {err}"))?;
    let mut object = Map::new();
    for (key, value) in members.0 {
        if object.contains_key(&key) {
            return Err(format!("repeated key `{key}`"));
        }
        object.insert(key, value);
    }
    let string = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no `{key}` string"))
    };
    let name = string("name")?;
    let vers = string("vers")?;
    let cksum = string("cksum")?;
    if !is_sha256_hex(&cksum) {
        return Err(format!("`cksum` of {vers} is not 64 lowercase hex digits"));
    }
    let yanked = match object.get("yanked") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(yanked)) => *yanked,
        Some(_) => return Err(format!("`yanked` of {vers} is not a boolean")),
    };
    let pubtime = object
        .get("pubtime")
        .and_then(Value::as_str)
        .and_then(|time| time.parse::<jiff::Timestamp>().ok());
    let entry = IndexEntry {
        name,
        vers,
        cksum,
        yanked,
        pubtime,
    };
    Ok((entry, object))
}

/// The key under which repeated versions are recognised: the canonical SemVer text, or the
/// string itself when it is not SemVer.
fn version_key(vers: &str) -> String {
    semver::Version::parse(vers)
        .map(|version| version.to_string())
        .unwrap_or_else(|_| vers.to_owned())
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The members of a JSON object in document order, repeats kept (a `Map` would keep only the
/// last), so that a repeated key can be refused.
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Members, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = access.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(Members(members))
    }
}
