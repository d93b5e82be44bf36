//! OSV advisory dumps and popular-name lists written to temp dirs, in the layout
//! `moat gate --advisories DIR --popular DIR` reads: `DIR/npm.zip` (one `<ID>.json` per record
//! at the zip root) and `DIR/npm.txt` (one name a line).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tempfile::TempDir;

/// A temp dir holding `npm.zip`.
pub struct AdvisoryDir {
    dir: TempDir,
}

impl AdvisoryDir {
    /// Only these records.
    pub fn new(records: &[Value]) -> Self {
        Self::write(records.to_vec())
    }

    /// The shared sample records (`advisories/samples/npm.zip`, which include
    /// GHSA-xvch-5gv4-984h for minimist and MAL-2021-1 for cxp-jquery) plus these.
    pub fn with_samples(records: &[Value]) -> Self {
        let mut all = read_zip(&crate::sample_advisories_dir().join("npm.zip"));
        all.extend(records.iter().cloned());
        Self::write(all)
    }

    fn write(records: Vec<Value>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("moat-advisories-")
            .tempdir()
            .expect("temp dir");
        write_zip(&dir.path().join("npm.zip"), &records);
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes records as an OSV `all.zip`-style archive.
pub fn write_zip(path: &Path, records: &[Value]) {
    let file = std::fs::File::create(path).expect("create zip");
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for record in records {
        let id = record["id"].as_str().expect("OSV record without id");
        zip.start_file(format!("{id}.json"), options)
            .expect("zip entry");
        zip.write_all(&serde_json::to_vec_pretty(record).expect("serialisable"))
            .expect("zip write");
    }
    zip.finish().expect("zip finish");
}

/// Reads every `.json` record of an OSV zip.
pub fn read_zip(path: &Path) -> Vec<Value> {
    let file = std::fs::File::open(path)
        .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
    let mut zip = zip::ZipArchive::new(file).expect("valid zip");
    (0..zip.len())
        .filter_map(|index| {
            let mut entry = zip.by_index(index).expect("zip entry");
            if !entry.name().ends_with(".json") {
                return None;
            }
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("utf-8 record");
            Some(serde_json::from_str(&text).expect("JSON record"))
        })
        .collect()
}

/// A vulnerability record for one npm package: `events` are OSV range events such as
/// `[("introduced", "1.2.0"), ("fixed", "2.0.0")]`; `severity` is a GHSA severity
/// (`LOW`, `MODERATE`, `HIGH`, `CRITICAL`).
pub fn vulnerability(
    id: &str,
    package: &str,
    severity: &str,
    summary: &str,
    events: &[(&str, &str)],
) -> Value {
    let events: Vec<Value> = events
        .iter()
        .map(|(kind, version)| json!({ *kind: version }))
        .collect();
    json!({
        "schema_version": "1.4.0",
        "id": id,
        "modified": "2024-01-01T00:00:00Z",
        "published": "2024-01-01T00:00:00Z",
        "aliases": [],
        "summary": summary,
        "details": summary,
        "affected": [{
            "package": { "ecosystem": "npm", "name": package },
            "ranges": [{ "type": "SEMVER", "events": events }],
        }],
        "database_specific": { "severity": severity },
    })
}

/// A `MAL-` record covering every version of an npm package.
pub fn malicious(id: &str, package: &str) -> Value {
    json!({
        "schema_version": "1.5.0",
        "id": id,
        "modified": "2024-01-01T00:00:00Z",
        "published": "2024-01-01T00:00:00Z",
        "summary": format!("Malicious code in {package} (npm)"),
        "details": "fixture malicious package",
        "affected": [{
            "package": { "ecosystem": "npm", "name": package },
            "ranges": [{ "type": "SEMVER", "events": [{ "introduced": "0" }] }],
        }],
    })
}

/// A temp dir holding `npm.txt` with the given names.
pub struct PopularDir {
    dir: TempDir,
}

impl PopularDir {
    pub fn new(names: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("moat-popular-")
            .tempdir()
            .expect("temp dir");
        let mut text = names.join("\n");
        text.push('\n');
        std::fs::write(dir.path().join("npm.txt"), text).expect("write npm.txt");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Where the shared popular lists live (see [`crate::shared_popular_dir`]).
pub fn popular_dir() -> PathBuf {
    crate::shared_popular_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_round_trips_records() {
        let dir = AdvisoryDir::new(&[
            vulnerability(
                "GHSA-test-0001",
                "tiny-pad",
                "HIGH",
                "bad",
                &[("introduced", "1.2.0")],
            ),
            malicious("MAL-TEST-1", "evil"),
        ]);
        let records = read_zip(&dir.path().join("npm.zip"));
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0]["affected"][0]["ranges"][0]["events"][0]["introduced"],
            "1.2.0"
        );
    }

    #[test]
    fn samples_are_included_when_asked() {
        let dir = AdvisoryDir::with_samples(&[malicious("MAL-TEST-1", "evil")]);
        let ids: Vec<String> = read_zip(&dir.path().join("npm.zip"))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.contains(&"GHSA-xvch-5gv4-984h".to_owned()));
        assert!(ids.contains(&"MAL-TEST-1".to_owned()));
    }

    #[test]
    fn popular_list_is_one_name_a_line() {
        let dir = PopularDir::new(&["lodash", "express"]);
        let text = std::fs::read_to_string(dir.path().join("npm.txt")).unwrap();
        assert_eq!(text, "lodash\nexpress\n");
    }
}
