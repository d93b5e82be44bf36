//! A fixture upstream npm registry: packages built in memory with real tarballs, served over
//! HTTP/1.1 on loopback with switchable faults and a request log.

mod server;

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub use crate::fixture_server::RequestRecord;
pub use server::FixtureRegistry;

use crate::fixture_server::{days_ago, publish_time};
use crate::tarball;

/// One version of a fixture package.
#[derive(Debug, Clone)]
pub struct Version {
    version: String,
    published: Option<jiff::Timestamp>,
    dependencies: BTreeMap<String, String>,
    files: Vec<(String, Vec<u8>)>,
}

impl Version {
    pub fn new(version: &str) -> Self {
        semver::Version::parse(version)
            .unwrap_or_else(|error| panic!("fixture version {version:?} is not semver: {error}"));
        Self {
            version: version.to_owned(),
            published: None,
            dependencies: BTreeMap::new(),
            files: Vec::new(),
        }
    }

    /// Published at this instant (default: the package's `i`-th version `i` days after
    /// 2020-01-01).
    pub fn published(mut self, at: jiff::Timestamp) -> Self {
        self.published = Some(at);
        self
    }

    /// Published `days` days before now (fractions allowed through `published`).
    pub fn published_days_ago(self, days: i64) -> Self {
        self.published(days_ago(days))
    }

    /// Adds a dependency (`name`, `range`) to the version's manifest.
    pub fn dependency(mut self, name: &str, range: &str) -> Self {
        self.dependencies.insert(name.to_owned(), range.to_owned());
        self
    }

    /// Adds a file to the tarball, at `path` under `package/`.
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_owned(), contents.into()));
        self
    }
}

impl From<&str> for Version {
    fn from(version: &str) -> Self {
        Self::new(version)
    }
}

/// A fixture package: a name (scoped or not) and its versions.
#[derive(Debug, Clone)]
pub struct Package {
    name: String,
    versions: Vec<Version>,
    latest: Option<String>,
    tags: BTreeMap<String, String>,
}

impl Package {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            versions: Vec::new(),
            latest: None,
            tags: BTreeMap::new(),
        }
    }

    /// Adds a version (a `&str` or a [`Version`]).
    pub fn version(mut self, version: impl Into<Version>) -> Self {
        self.versions.push(version.into());
        self
    }

    /// Adds several plain versions.
    pub fn versions(self, versions: &[&str]) -> Self {
        versions.iter().fold(self, |package, &v| package.version(v))
    }

    /// Sets `dist-tags.latest` (default: the highest non-prerelease version).
    pub fn latest(mut self, version: &str) -> Self {
        self.latest = Some(version.to_owned());
        self
    }

    /// Adds a dist-tag other than `latest`.
    pub fn tag(mut self, tag: &str, version: &str) -> Self {
        self.tags.insert(tag.to_owned(), version.to_owned());
        self
    }

    pub(crate) fn build(self) -> BuiltPackage {
        assert!(
            !self.versions.is_empty(),
            "fixture package {} has no versions",
            self.name
        );
        let versions: Vec<BuiltVersion> = self
            .versions
            .into_iter()
            .enumerate()
            .map(|(index, version)| {
                let published = publish_time(index, version.published);
                BuiltVersion::build(&self.name, version, published)
            })
            .collect();
        let latest = self.latest.unwrap_or_else(|| default_latest(&versions));
        let mut tags = self.tags;
        tags.insert("latest".to_owned(), latest);
        BuiltPackage {
            name: self.name,
            tags,
            versions,
        }
    }
}

fn default_latest(versions: &[BuiltVersion]) -> String {
    let parsed = versions
        .iter()
        .map(|v| semver::Version::parse(&v.version).expect("validated in Version::new"));
    let stable = parsed.clone().filter(|v| v.pre.is_empty()).max();
    stable
        .or_else(|| parsed.max())
        .expect("at least one version")
        .to_string()
}

/// The last path segment of a package name: `@scope/name` → `name`.
pub fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The file name of a version's tarball: `name-1.2.3.tgz`.
pub fn tarball_file(name: &str, version: &str) -> String {
    format!("{}-{version}.tgz", base_name(name))
}

#[derive(Debug, Clone)]
pub(crate) struct BuiltPackage {
    pub(crate) name: String,
    /// dist-tags, `latest` included.
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) versions: Vec<BuiltVersion>,
}

#[derive(Debug, Clone)]
pub(crate) struct BuiltVersion {
    pub(crate) version: String,
    pub(crate) published: jiff::Timestamp,
    pub(crate) dependencies: BTreeMap<String, String>,
    pub(crate) tarball: Vec<u8>,
    pub(crate) integrity: String,
    pub(crate) shasum: String,
}

impl BuiltVersion {
    fn build(name: &str, version: Version, published: jiff::Timestamp) -> Self {
        let manifest = json!({
            "name": name,
            "version": version.version,
            "description": format!("fixture package {name}"),
            "main": "index.js",
            "license": "MIT",
            "dependencies": version.dependencies,
        });
        let mut files = vec![
            (
                "package.json".to_owned(),
                serde_json::to_vec_pretty(&manifest).expect("serialisable"),
            ),
            (
                "index.js".to_owned(),
                format!(
                    "module.exports = {:?};\n",
                    format!("{name}@{}", version.version)
                )
                .into_bytes(),
            ),
        ];
        files.extend(version.files);
        let tarball = tarball::build(&files);
        Self {
            integrity: tarball::integrity(&tarball),
            shasum: tarball::shasum(&tarball),
            tarball,
            version: version.version,
            published,
            dependencies: version.dependencies,
        }
    }

    fn dist(&self, registry: &str, name: &str) -> Value {
        json!({
            "tarball": format!("{registry}/{name}/-/{}", tarball_file(name, &self.version)),
            "shasum": self.shasum,
            "integrity": self.integrity,
        })
    }

    /// The version document, as in a full packument and at `/<name>/<version>`.
    pub(crate) fn manifest(&self, registry: &str, name: &str) -> Value {
        json!({
            "name": name,
            "version": self.version,
            "description": format!("fixture package {name}"),
            "main": "index.js",
            "license": "MIT",
            "dependencies": self.dependencies,
            "_id": format!("{name}@{}", self.version),
            "dist": self.dist(registry, name),
        })
    }

    fn abbreviated(&self, registry: &str, name: &str) -> Value {
        json!({
            "name": name,
            "version": self.version,
            "dependencies": self.dependencies,
            "dist": self.dist(registry, name),
        })
    }
}

impl BuiltPackage {
    /// The full packument (`Accept: application/json`).
    pub(crate) fn packument(&self, registry: &str) -> Value {
        let name = &self.name;
        let versions: serde_json::Map<String, Value> = self
            .versions
            .iter()
            .map(|v| (v.version.clone(), v.manifest(registry, name)))
            .collect();
        let mut time = serde_json::Map::new();
        let first = self.versions.iter().map(|v| v.published).min();
        let last = self.versions.iter().map(|v| v.published).max();
        time.insert("created".into(), json!(iso(first.expect("non-empty"))));
        time.insert("modified".into(), json!(iso(last.expect("non-empty"))));
        for version in &self.versions {
            time.insert(version.version.clone(), json!(iso(version.published)));
        }
        json!({
            "_id": name,
            "_rev": "1-fixture",
            "name": name,
            "description": format!("fixture package {name}"),
            "dist-tags": self.tags,
            "versions": versions,
            "time": time,
            "license": "MIT",
            "readme": "",
        })
    }

    /// The abbreviated packument (`Accept: application/vnd.npm.install-v1+json`).
    pub(crate) fn abbreviated(&self, registry: &str) -> Value {
        let versions: serde_json::Map<String, Value> = self
            .versions
            .iter()
            .map(|v| (v.version.clone(), v.abbreviated(registry, &self.name)))
            .collect();
        let modified = self.versions.iter().map(|v| v.published).max();
        json!({
            "name": self.name,
            "modified": iso(modified.expect("non-empty")),
            "dist-tags": self.tags,
            "versions": versions,
        })
    }

    pub(crate) fn find(&self, version_or_tag: &str) -> Option<&BuiltVersion> {
        let version = self
            .tags
            .get(version_or_tag)
            .map_or(version_or_tag, String::as_str);
        self.versions.iter().find(|v| v.version == version)
    }
}

/// ISO 8601 with milliseconds, as the npm registry writes times.
fn iso(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packument_has_the_shape_npm_expects() {
        let package = Package::new("@scope/thing")
            .version("1.0.0")
            .version(Version::new("1.1.0").dependency("dep", "^1.0.0"))
            .version("2.0.0-beta.1")
            .build();
        let doc = package.packument("http://fixture");
        assert_eq!(doc["name"], "@scope/thing");
        assert_eq!(doc["dist-tags"]["latest"], "1.1.0");
        let v = &doc["versions"]["1.1.0"];
        assert_eq!(v["dependencies"]["dep"], "^1.0.0");
        assert_eq!(
            v["dist"]["tarball"],
            "http://fixture/@scope/thing/-/thing-1.1.0.tgz"
        );
        assert!(
            v["dist"]["integrity"]
                .as_str()
                .unwrap()
                .starts_with("sha512-")
        );
        assert_eq!(doc["time"]["1.0.0"], "2020-01-01T00:00:00.000Z");
        assert_eq!(doc["time"]["created"], "2020-01-01T00:00:00.000Z");
        assert_eq!(doc["time"]["modified"], "2020-01-03T00:00:00.000Z");
        let abbreviated = package.abbreviated("http://fixture");
        assert_eq!(abbreviated["versions"]["1.0.0"]["name"], "@scope/thing");
        assert!(abbreviated.get("time").is_none());
    }

    #[test]
    fn integrity_and_shasum_match_the_tarball() {
        let package = Package::new("left").version("1.0.0").build();
        let version = &package.versions[0];
        assert_eq!(version.integrity, tarball::integrity(&version.tarball));
        assert_eq!(version.shasum, tarball::shasum(&version.tarball));
    }

    #[test]
    fn explicit_latest_and_publish_times_are_kept() {
        let package = Package::new("x")
            .version(Version::new("1.0.0").published_days_ago(1))
            .version("0.9.0")
            .latest("0.9.0")
            .tag("next", "1.0.0")
            .build();
        assert_eq!(package.tags["latest"], "0.9.0");
        assert_eq!(package.find("next").unwrap().version, "1.0.0");
        let age = jiff::Timestamp::now().duration_since(package.versions[0].published);
        assert!(age.as_hours() >= 23 && age.as_hours() <= 25);
    }
}
