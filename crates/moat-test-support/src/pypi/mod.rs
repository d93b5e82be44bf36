//! A fixture upstream PyPI: projects built in memory with real wheels (installable by pip and
//! uv) and optional sdists, served as a PEP 503 / PEP 691 simple index over HTTP/1.1 on
//! loopback, with switchable faults and a request log.
//!
//! Layout (`{url}` = [`FixturePypi::url`], e.g. `http://127.0.0.1:PORT`):
//! - `{url}/simple/` — the project list; `{url}/simple/<name>/` — a project page, found by
//!   any spelling of the name (PEP 503 normalisation), with or without the trailing slash.
//!   PEP 691 JSON (api-version 1.1: `versions`, `size`, `upload-time`, `core-metadata`) when
//!   `Accept` asks for `application/vnd.pypi.simple.v1+json`, else PEP 503 HTML
//!   (`#sha256=` fragments, `data-requires-python`, `data-dist-info-metadata`,
//!   `data-core-metadata`, `data-yanked`). The page's `name` is the project's own spelling.
//! - `{url}/files/<filename>` — wheels and sdists, linked by absolute URL (as PyPI links to
//!   its files host); `{url}/files/<wheel>.metadata` — the wheel's `METADATA` (PEP 658).
//! - anything else: 404 `text/plain`.

mod server;

use std::io::Write as _;

use base64::Engine as _;
use serde_json::{Value, json};

pub use crate::fixture_server::RequestRecord;
pub use server::FixturePypi;

use crate::fixture_server::{days_ago, publish_time, sha256_hex};
use crate::tarball;

/// PEP 503 normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for ch in name.chars() {
        if matches!(ch, '-' | '_' | '.') {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('-');
        }
        separator = false;
        out.push(ch.to_ascii_lowercase());
    }
    out
}

/// The distribution name as it appears in file names and the importable module:
/// normalised, with `_` for `-` (`Foo.Bar` → `foo_bar`).
pub fn escaped_name(name: &str) -> String {
    normalize(name).replace('-', "_")
}

/// `{dist}-{version}-py3-none-any.whl`.
pub fn wheel_filename(name: &str, version: &str) -> String {
    format!("{}-{version}-py3-none-any.whl", escaped_name(name))
}

/// `{dist}-{version}.tar.gz`.
pub fn sdist_filename(name: &str, version: &str) -> String {
    format!("{}-{version}.tar.gz", escaped_name(name))
}

/// One release of a fixture project: always a wheel, optionally an sdist.
#[derive(Debug, Clone)]
pub struct Release {
    version: String,
    published: Option<jiff::Timestamp>,
    requires_python: Option<String>,
    dependencies: Vec<String>,
    sdist: bool,
    yanked: Option<String>,
    files: Vec<(String, Vec<u8>)>,
}

impl Release {
    /// A release; `version` should be PEP 440 canonical (`1.0.0`, `2.0.0rc1`, `1.0.post1`).
    pub fn new(version: &str) -> Self {
        let valid = !version.is_empty()
            && version.chars().next().is_some_and(|c| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!'));
        assert!(
            valid,
            "fixture release version {version:?} is not a PEP 440 version in canonical form"
        );
        Self {
            version: version.to_owned(),
            published: None,
            requires_python: None,
            dependencies: Vec::new(),
            sdist: false,
            yanked: None,
            files: Vec::new(),
        }
    }

    /// Uploaded at this instant (every file of the release; default: the project's `i`-th
    /// release `i` days after 2020-01-01).
    pub fn published(mut self, at: jiff::Timestamp) -> Self {
        self.published = Some(at);
        self
    }

    /// Uploaded `days` days before now.
    pub fn published_days_ago(self, days: i64) -> Self {
        self.published(days_ago(days))
    }

    /// `Requires-Python` in the metadata and on the index page (e.g. `>=3.8`).
    pub fn requires_python(mut self, specifier: &str) -> Self {
        self.requires_python = Some(specifier.to_owned());
        self
    }

    /// A `Requires-Dist` line (a PEP 508 requirement, e.g. `other>=1.0`).
    pub fn dependency(mut self, requirement: &str) -> Self {
        self.dependencies.push(requirement.to_owned());
        self
    }

    /// Also lists an sdist (`{dist}-{version}.tar.gz` with `PKG-INFO`); the wheel is still
    /// what pip and uv pick.
    pub fn with_sdist(mut self) -> Self {
        self.sdist = true;
        self
    }

    /// Yanked upstream, with this reason (may be empty).
    pub fn yanked(mut self, reason: &str) -> Self {
        self.yanked = Some(reason.to_owned());
        self
    }

    /// Adds a file to the wheel, at `path` relative to the wheel's root (e.g.
    /// `foo/data.txt`).
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_owned(), contents.into()));
        self
    }
}

impl From<&str> for Release {
    fn from(version: &str) -> Self {
        Self::new(version)
    }
}

/// A fixture project: a name (kept as spelled) and its releases.
#[derive(Debug, Clone)]
pub struct Project {
    name: String,
    releases: Vec<Release>,
}

impl Project {
    pub fn new(name: &str) -> Self {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        assert!(
            valid,
            "fixture project name {name:?} is not a valid PyPI name"
        );
        Self {
            name: name.to_owned(),
            releases: Vec::new(),
        }
    }

    /// Adds a release (a `&str` or a [`Release`]).
    pub fn version(mut self, release: impl Into<Release>) -> Self {
        self.releases.push(release.into());
        self
    }

    /// Adds several plain releases.
    pub fn versions(self, versions: &[&str]) -> Self {
        versions.iter().fold(self, |project, &v| project.version(v))
    }

    pub(crate) fn build(self) -> BuiltProject {
        assert!(
            !self.releases.is_empty(),
            "fixture project {} has no releases",
            self.name
        );
        let mut versions = Vec::new();
        let mut files = Vec::new();
        for (index, release) in self.releases.into_iter().enumerate() {
            if !versions.contains(&release.version) {
                versions.push(release.version.clone());
            }
            let upload_time = publish_time(index, release.published);
            files.extend(build_release(&self.name, release, upload_time));
        }
        BuiltProject {
            normalized: normalize(&self.name),
            name: self.name,
            versions,
            files,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BuiltProject {
    pub(crate) name: String,
    pub(crate) normalized: String,
    pub(crate) versions: Vec<String>,
    pub(crate) files: Vec<BuiltFile>,
}

#[derive(Debug, Clone)]
pub(crate) struct BuiltFile {
    pub(crate) filename: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) sha256: String,
    /// The wheel's METADATA (served as `<filename>.metadata`); `None` for sdists.
    pub(crate) metadata: Option<Vec<u8>>,
    /// What a corrupted wheel is served as: a valid wheel with different contents (so
    /// clients that unpack while downloading still get to the hash check).
    pub(crate) tampered: Option<Vec<u8>>,
    pub(crate) upload_time: jiff::Timestamp,
    pub(crate) requires_python: Option<String>,
    pub(crate) yanked: Option<String>,
}

fn build_release(name: &str, release: Release, upload_time: jiff::Timestamp) -> Vec<BuiltFile> {
    let metadata = metadata(name, &release);
    let mut built = Vec::new();
    let wheel = build_wheel(name, &release, &metadata, false);
    built.push(BuiltFile {
        filename: wheel_filename(name, &release.version),
        sha256: sha256_hex(&wheel),
        bytes: wheel,
        metadata: Some(metadata.clone().into_bytes()),
        tampered: Some(build_wheel(name, &release, &metadata, true)),
        upload_time,
        requires_python: release.requires_python.clone(),
        yanked: release.yanked.clone(),
    });
    if release.sdist {
        let sdist = build_sdist(name, &release, &metadata);
        built.push(BuiltFile {
            filename: sdist_filename(name, &release.version),
            sha256: sha256_hex(&sdist),
            bytes: sdist,
            metadata: None,
            tampered: None,
            upload_time,
            requires_python: release.requires_python.clone(),
            yanked: release.yanked.clone(),
        });
    }
    built
}

/// Core metadata 2.1.
fn metadata(name: &str, release: &Release) -> String {
    let mut text = format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {}\nSummary: fixture project {name}\nLicense: MIT\n",
        release.version
    );
    if let Some(requires) = &release.requires_python {
        text.push_str(&format!("Requires-Python: {requires}\n"));
    }
    for dependency in &release.dependencies {
        text.push_str(&format!("Requires-Dist: {dependency}\n"));
    }
    text.push('\n');
    text
}

fn init_py(release: &Release) -> Vec<u8> {
    format!("__version__ = {:?}\n", release.version).into_bytes()
}

fn tampered_init_py(release: &Release) -> Vec<u8> {
    format!("__version__ = {:?}\nTAMPERED = True\n", release.version).into_bytes()
}

/// A `py3-none-any` wheel: the module, extra files, and `.dist-info` with METADATA, WHEEL and
/// RECORD (sha256 of every other file).
fn build_wheel(name: &str, release: &Release, metadata: &str, tampered: bool) -> Vec<u8> {
    let module = escaped_name(name);
    let dist_info = format!("{module}-{}.dist-info", release.version);
    let init = if tampered {
        tampered_init_py(release)
    } else {
        init_py(release)
    };
    let mut files: Vec<(String, Vec<u8>)> = vec![(format!("{module}/__init__.py"), init)];
    files.extend(release.files.iter().cloned());
    files.push((
        format!("{dist_info}/METADATA"),
        metadata.as_bytes().to_vec(),
    ));
    files.push((
        format!("{dist_info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: moat-test-support\nRoot-Is-Purelib: true\nTag: py3-none-any\n\n"
            .to_vec(),
    ));
    let mut record = String::new();
    for (path, contents) in &files {
        use sha2::Digest as _;
        let digest =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(contents));
        record.push_str(&format!("{path},sha256={digest},{}\n", contents.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    files.push((format!("{dist_info}/RECORD"), record.into_bytes()));
    zip_files(&files)
}

fn zip_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mtime = zip::DateTime::from_date_and_time(2020, 1, 1, 0, 0, 0).expect("valid date");
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(mtime)
        .unix_permissions(0o644);
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, contents) in files {
        writer
            .start_file(path.as_str(), options)
            .expect("zip entry");
        writer.write_all(contents).expect("write to memory");
    }
    writer.finish().expect("finish zip").into_inner()
}

/// An sdist: `PKG-INFO`, a setuptools `pyproject.toml` and the module, under
/// `{dist}-{version}/`.
fn build_sdist(name: &str, release: &Release, metadata: &str) -> Vec<u8> {
    let module = escaped_name(name);
    let pyproject = format!(
        "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = {name:?}\nversion = {:?}\n",
        release.version
    );
    let files = vec![
        ("PKG-INFO".to_owned(), metadata.as_bytes().to_vec()),
        ("pyproject.toml".to_owned(), pyproject.into_bytes()),
        (format!("{module}/__init__.py"), init_py(release)),
    ];
    tarball::build_with_prefix(&format!("{module}-{}", release.version), &files)
}

/// PEP 700 form: ISO 8601 UTC with microseconds and `Z`.
fn upload_time(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl BuiltFile {
    pub(crate) fn url(&self, base: &str) -> String {
        format!("{base}/files/{}", self.filename)
    }

    pub(crate) fn metadata_sha256(&self) -> Option<String> {
        self.metadata.as_deref().map(sha256_hex)
    }
}

impl BuiltProject {
    /// The PEP 691 JSON page (api-version 1.1).
    pub(crate) fn json_page(&self, base: &str) -> Value {
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|file| {
                let mut entry = json!({
                    "filename": file.filename,
                    "url": file.url(base),
                    "hashes": { "sha256": file.sha256 },
                });
                let object = entry.as_object_mut().expect("object");
                if let Some(requires) = &file.requires_python {
                    object.insert("requires-python".into(), json!(requires));
                }
                let metadata = match file.metadata_sha256() {
                    Some(sha256) => json!({ "sha256": sha256 }),
                    None => json!(false),
                };
                object.insert("core-metadata".into(), metadata.clone());
                object.insert("dist-info-metadata".into(), metadata);
                object.insert("size".into(), json!(file.bytes.len()));
                object.insert("upload-time".into(), json!(upload_time(file.upload_time)));
                let yanked = match &file.yanked {
                    Some(reason) if reason.is_empty() => json!(true),
                    Some(reason) => json!(reason),
                    None => json!(false),
                };
                object.insert("yanked".into(), yanked);
                entry
            })
            .collect();
        json!({
            "meta": { "api-version": "1.1" },
            "name": self.name,
            "versions": self.versions,
            "files": files,
        })
    }

    /// The PEP 503 HTML page.
    pub(crate) fn html_page(&self, base: &str) -> String {
        let mut html = format!(
            "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    \
             <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n",
            name = html_escape(&self.name)
        );
        for file in &self.files {
            let mut attributes = String::new();
            if let Some(requires) = &file.requires_python {
                attributes.push_str(&format!(
                    " data-requires-python=\"{}\"",
                    html_escape(requires)
                ));
            }
            if let Some(sha256) = file.metadata_sha256() {
                attributes.push_str(&format!(
                    " data-dist-info-metadata=\"sha256={sha256}\" data-core-metadata=\"sha256={sha256}\""
                ));
            }
            if let Some(reason) = &file.yanked {
                attributes.push_str(&format!(" data-yanked=\"{}\"", html_escape(reason)));
            }
            html.push_str(&format!(
                "    <a href=\"{url}#sha256={sha256}\"{attributes}>{filename}</a><br />\n",
                url = html_escape(&file.url(base)),
                sha256 = file.sha256,
                filename = html_escape(&file.filename),
            ));
        }
        html.push_str("  </body>\n</html>\n");
        html
    }

    pub(crate) fn file(&self, filename: &str) -> Option<&BuiltFile> {
        self.files.iter().find(|f| f.filename == filename)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn names_normalise_as_pep_503_says() {
        assert_eq!(normalize("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(normalize("requests"), "requests");
        assert_eq!(escaped_name("Foo.Bar-baz"), "foo_bar_baz");
        assert_eq!(
            wheel_filename("Foo-Bar", "1.0.0"),
            "foo_bar-1.0.0-py3-none-any.whl"
        );
        assert_eq!(sdist_filename("Foo-Bar", "1.0.0"), "foo_bar-1.0.0.tar.gz");
    }

    #[test]
    fn wheel_has_metadata_and_a_record_that_matches() {
        let project = Project::new("Tiny-Thing")
            .version(
                Release::new("1.2.0")
                    .requires_python(">=3.8")
                    .dependency("other>=1"),
            )
            .build();
        let file = &project.files[0];
        assert_eq!(file.filename, "tiny_thing-1.2.0-py3-none-any.whl");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(file.bytes.clone())).unwrap();
        let mut read = |path: &str| {
            let mut text = String::new();
            archive
                .by_name(path)
                .unwrap_or_else(|_| panic!("{path} in wheel"))
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        assert_eq!(read("tiny_thing/__init__.py"), "__version__ = \"1.2.0\"\n");
        let metadata = read("tiny_thing-1.2.0.dist-info/METADATA");
        assert!(metadata.contains("Name: Tiny-Thing\n"), "{metadata}");
        assert!(metadata.contains("Requires-Python: >=3.8\n"), "{metadata}");
        assert!(metadata.contains("Requires-Dist: other>=1\n"), "{metadata}");
        assert_eq!(metadata.as_bytes(), file.metadata.as_deref().unwrap());
        let record = read("tiny_thing-1.2.0.dist-info/RECORD");
        let init_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            <sha2::Sha256 as sha2::Digest>::digest(b"__version__ = \"1.2.0\"\n"),
        );
        assert!(
            record.contains(&format!("tiny_thing/__init__.py,sha256={init_hash},22\n")),
            "{record}"
        );
        assert!(record.ends_with("tiny_thing-1.2.0.dist-info/RECORD,,\n"));
    }

    #[test]
    fn pages_carry_hashes_times_and_metadata_digests() {
        let project = Project::new("Tiny_Thing")
            .version(Release::new("1.0.0").requires_python(">=3.8").with_sdist())
            .version(Release::new("1.1.0").yanked("broken"))
            .build();
        let page = project.json_page("http://fixture");
        assert_eq!(page["meta"]["api-version"], "1.1");
        assert_eq!(page["name"], "Tiny_Thing");
        assert_eq!(page["versions"], json!(["1.0.0", "1.1.0"]));
        let wheel = &page["files"][0];
        assert_eq!(
            wheel["url"],
            "http://fixture/files/tiny_thing-1.0.0-py3-none-any.whl"
        );
        assert_eq!(wheel["hashes"]["sha256"], project.files[0].sha256);
        assert_eq!(wheel["requires-python"], ">=3.8");
        assert_eq!(wheel["upload-time"], "2020-01-01T00:00:00.000000Z");
        assert_eq!(wheel["size"], project.files[0].bytes.len());
        assert_eq!(
            wheel["core-metadata"]["sha256"],
            sha256_hex(project.files[0].metadata.as_deref().unwrap())
        );
        assert_eq!(wheel["yanked"], false);
        let sdist = &page["files"][1];
        assert_eq!(sdist["filename"], "tiny_thing-1.0.0.tar.gz");
        assert_eq!(sdist["core-metadata"], false);
        assert_eq!(page["files"][2]["yanked"], "broken");
        assert_eq!(
            page["files"][2]["upload-time"],
            "2020-01-02T00:00:00.000000Z"
        );

        let html = project.html_page("http://fixture");
        assert!(html.contains(&format!(
            "<a href=\"http://fixture/files/tiny_thing-1.0.0-py3-none-any.whl#sha256={}\" data-requires-python=\"&gt;=3.8\"",
            project.files[0].sha256
        )), "{html}");
        assert!(html.contains("data-core-metadata=\"sha256="), "{html}");
        assert!(html.contains("data-yanked=\"broken\""), "{html}");
    }

    #[test]
    fn sdist_holds_pkg_info_under_its_directory() {
        let project = Project::new("thing")
            .version(Release::new("2.0.0").with_sdist())
            .build();
        let sdist = &project.files[1].bytes;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(sdist.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(&tar[..21], b"thing-2.0.0/PKG-INFO\0");
    }
}
