//! A fixture upstream cargo sparse registry: crates built in memory as real `.crate` files
//! (which cargo unpacks and builds), served over HTTP/1.1 on loopback with switchable faults
//! and a request log.
//!
//! Layout (`{url}` = [`FixtureCrates::url`]):
//! - `{url}/index/config.json` — `{"dl": "{url}/dl"}` (no markers, so cargo downloads from
//!   `{dl}/{crate}/{version}/download`).
//! - `{url}/index/<prefix>/<name>` — the index file at the standard sparse path (`1/a`,
//!   `2/ab`, `3/a/abc`, `ab/cd/abcd`), one JSON line per version (`name`, `vers`, `deps`,
//!   `cksum`, `features`, `yanked`, `links`, `v: 1`, `pubtime`). Found by crates.io's name
//!   rules (case-insensitive, `-` ≡ `_`); the lines carry the crate's own spelling.
//! - `{url}/dl/<name>/<version>/download` — the `.crate` (same name rules).
//! - anything else: 404 `text/plain`.
//!
//! Cargo's source replacement takes `sparse+{url}/index/` ([`FixtureCrates::index_url`]).

mod server;

use serde_json::{Value, json};

pub use crate::fixture_server::RequestRecord;
pub use server::FixtureCrates;

use crate::fixture_server::{days_ago, publish_time, sha256_hex};
use crate::tarball;

/// crates.io's name identity: lowercase, `_` as `-`.
pub fn canonical_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The sparse index path of a crate, lowercased: `1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd`.
pub fn index_path(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// One version of a fixture crate.
#[derive(Debug, Clone)]
pub struct CrateVersion {
    version: String,
    published: Option<jiff::Timestamp>,
    dependencies: Vec<(String, String)>,
    yanked: bool,
    lib_rs: Option<String>,
}

impl CrateVersion {
    pub fn new(version: &str) -> Self {
        semver::Version::parse(version).unwrap_or_else(|error| {
            panic!("fixture crate version {version:?} is not semver: {error}")
        });
        Self {
            version: version.to_owned(),
            published: None,
            dependencies: Vec::new(),
            yanked: false,
            lib_rs: None,
        }
    }

    /// Published at this instant (`pubtime`; default: the crate's `i`-th version `i` days
    /// after 2020-01-01).
    pub fn published(mut self, at: jiff::Timestamp) -> Self {
        self.published = Some(at);
        self
    }

    /// Published `days` days before now.
    pub fn published_days_ago(self, days: i64) -> Self {
        self.published(days_ago(days))
    }

    /// A normal dependency on another crate of the same registry (`name`, `req`).
    pub fn dependency(mut self, name: &str, requirement: &str) -> Self {
        self.dependencies
            .push((name.to_owned(), requirement.to_owned()));
        self
    }

    /// Yanked upstream (`"yanked": true`).
    pub fn yanked(mut self) -> Self {
        self.yanked = true;
        self
    }

    /// The crate's `src/lib.rs` (default: a `VERSION` constant and a `version()` function).
    pub fn lib_rs(mut self, source: &str) -> Self {
        self.lib_rs = Some(source.to_owned());
        self
    }
}

impl From<&str> for CrateVersion {
    fn from(version: &str) -> Self {
        Self::new(version)
    }
}

/// A fixture crate: a name and its versions.
#[derive(Debug, Clone)]
pub struct Crate {
    name: String,
    versions: Vec<CrateVersion>,
}

impl Crate {
    pub fn new(name: &str) -> Self {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        assert!(
            valid,
            "fixture crate name {name:?} is not a valid crates.io name"
        );
        Self {
            name: name.to_owned(),
            versions: Vec::new(),
        }
    }

    /// Adds a version (a `&str` or a [`CrateVersion`]).
    pub fn version(mut self, version: impl Into<CrateVersion>) -> Self {
        self.versions.push(version.into());
        self
    }

    /// Adds several plain versions.
    pub fn versions(self, versions: &[&str]) -> Self {
        versions.iter().fold(self, |krate, &v| krate.version(v))
    }

    pub(crate) fn build(self) -> BuiltCrate {
        assert!(
            !self.versions.is_empty(),
            "fixture crate {} has no versions",
            self.name
        );
        let versions = self
            .versions
            .into_iter()
            .enumerate()
            .map(|(index, version)| {
                let published = publish_time(index, version.published);
                BuiltCrateVersion::build(&self.name, version, published)
            })
            .collect();
        BuiltCrate {
            canonical: canonical_name(&self.name),
            name: self.name,
            versions,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BuiltCrate {
    pub(crate) name: String,
    pub(crate) canonical: String,
    pub(crate) versions: Vec<BuiltCrateVersion>,
}

#[derive(Debug, Clone)]
pub(crate) struct BuiltCrateVersion {
    pub(crate) version: String,
    pub(crate) published: jiff::Timestamp,
    pub(crate) dependencies: Vec<(String, String)>,
    pub(crate) yanked: bool,
    pub(crate) bytes: Vec<u8>,
    pub(crate) cksum: String,
}

impl BuiltCrateVersion {
    fn build(name: &str, version: CrateVersion, published: jiff::Timestamp) -> Self {
        let mut manifest = format!(
            "[package]\nedition = \"2021\"\nname = {name:?}\nversion = {:?}\n\
             description = \"fixture crate {name}\"\nlicense = \"MIT\"\n\n[lib]\npath = \"src/lib.rs\"\n",
            version.version
        );
        if !version.dependencies.is_empty() {
            manifest.push_str("\n[dependencies]\n");
            for (dependency, requirement) in &version.dependencies {
                manifest.push_str(&format!("{dependency} = {requirement:?}\n"));
            }
        }
        let lib_rs = version.lib_rs.clone().unwrap_or_else(|| {
            format!(
                "//! Fixture crate {name}.\n\npub const VERSION: &str = {v:?};\n\n\
                 pub fn version() -> &'static str {{\n    VERSION\n}}\n",
                v = version.version
            )
        });
        let files = vec![
            ("Cargo.toml".to_owned(), manifest.clone().into_bytes()),
            ("Cargo.toml.orig".to_owned(), manifest.into_bytes()),
            ("src/lib.rs".to_owned(), lib_rs.into_bytes()),
        ];
        let bytes = tarball::build_with_prefix(&format!("{name}-{}", version.version), &files);
        Self {
            cksum: sha256_hex(&bytes),
            bytes,
            published,
            version: version.version,
            dependencies: version.dependencies,
            yanked: version.yanked,
        }
    }

    /// The version's index line (as JSON; one line when serialised).
    pub(crate) fn index_entry(&self, name: &str, pubtime: bool) -> Value {
        let deps: Vec<Value> = self
            .dependencies
            .iter()
            .map(|(dependency, requirement)| {
                json!({
                    "name": dependency,
                    "req": requirement,
                    "features": [],
                    "optional": false,
                    "default_features": true,
                    "target": null,
                    "kind": "normal",
                })
            })
            .collect();
        let mut entry = json!({
            "name": name,
            "vers": self.version,
            "deps": deps,
            "cksum": self.cksum,
            "features": {},
            "yanked": self.yanked,
            "links": null,
            "v": 1,
        });
        if pubtime {
            entry.as_object_mut().expect("object").insert(
                "pubtime".into(),
                json!(self.published.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
        }
        entry
    }
}

impl BuiltCrate {
    /// The index file: one JSON line per version, each ending in `\n`.
    pub(crate) fn index_file(&self, pubtime: bool) -> String {
        self.versions
            .iter()
            .map(|v| format!("{}\n", v.index_entry(&self.name, pubtime)))
            .collect()
    }

    pub(crate) fn find(&self, version: &str) -> Option<&BuiltCrateVersion> {
        self.versions.iter().find(|v| v.version == version)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn index_paths_follow_the_sparse_layout() {
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("ab"), "2/ab");
        assert_eq!(index_path("abc"), "3/a/abc");
        assert_eq!(index_path("Serde_Json"), "se/rd/serde_json");
        assert_eq!(canonical_name("Serde_Json"), "serde-json");
    }

    #[test]
    fn index_lines_carry_the_checksum_and_pubtime() {
        let krate = Crate::new("tiny_pad")
            .version(CrateVersion::new("1.0.0").dependency("other", "^0.1"))
            .version(CrateVersion::new("1.1.0").yanked())
            .build();
        let file = krate.index_file(true);
        let lines: Vec<Value> = file
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["name"], "tiny_pad");
        assert_eq!(lines[0]["cksum"], sha256_hex(&krate.versions[0].bytes));
        assert_eq!(lines[0]["deps"][0]["req"], "^0.1");
        assert_eq!(lines[0]["pubtime"], "2020-01-01T00:00:00Z");
        assert_eq!(lines[1]["yanked"], true);
        assert!(!krate.index_file(false).contains("pubtime"));
    }

    #[test]
    fn crate_file_holds_a_manifest_under_its_directory() {
        let krate = Crate::new("thing").versions(&["0.3.0"]).build();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(krate.versions[0].bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(&tar[..23], b"thing-0.3.0/Cargo.toml\0");
        let text = String::from_utf8_lossy(&tar);
        assert!(text.contains("name = \"thing\"\nversion = \"0.3.0\""));
    }
}
