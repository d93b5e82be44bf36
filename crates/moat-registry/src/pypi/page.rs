//! An upstream project page (PEP 691 JSON or PEP 503 HTML) as the gate reads it: the project
//! name and its distribution files, each with its upstream URL, hashes, yank state and the
//! version its file name carries.
//!
//! Files the gate could not serve safely are dropped when the page is read, so they are never
//! listed nor fetched: a URL that is not http(s), a file name that [`check_filename`] refuses,
//! a file whose version cannot be told from its name (the policy could not judge it; pip and uv
//! skip such files too), and repeats of a file name already listed.

use std::collections::{BTreeMap, BTreeSet};

use moat_policy::VersionInfo;
use reqwest::Url;
use serde_json::{Map, Value};

use crate::MetadataError;
use crate::pypi::path::{check_filename, normalize_name, version_from_filename};

/// A project's page: its name and distribution files, in upstream order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectPage {
    /// The project name as the upstream spells it (PEP 503-equal to the requested one).
    pub name: String,
    /// The distribution files, one per file name.
    pub files: Vec<DistFile>,
}

/// One distribution file of a project page.
#[derive(Debug, Clone, PartialEq)]
pub struct DistFile {
    /// The file name (wheel, sdist or egg).
    pub filename: String,
    /// Absolute upstream URL (resolved against the page URL, fragment removed).
    pub url: String,
    /// Lowercase algorithm → lowercase hex (from JSON `hashes` or the HTML `#sha256=` fragment).
    pub hashes: BTreeMap<String, String>,
    /// The `Requires-Python` specifier, as the upstream wrote it.
    pub requires_python: Option<String>,
    /// When the file was uploaded (PEP 700; JSON pages only).
    pub upload_time: Option<jiff::Timestamp>,
    /// Upstream yank: `None` = not yanked, `Some(reason)` (empty when yanked without reason).
    pub yanked: Option<String>,
    /// PEP 658/714: `None` = no metadata file; `Some(hashes)` (possibly empty: "true").
    pub core_metadata: Option<BTreeMap<String, String>>,
    /// Size in bytes (PEP 700; JSON pages only).
    pub size: Option<u64>,
    /// [`version_from_filename`] of the page name and the file name (always set on a parsed
    /// page: files without one are dropped).
    pub version: Option<String>,
}

impl DistFile {
    /// The expected SHA-256 digest (lowercase hex), if the upstream gave one.
    pub fn sha256(&self) -> Option<&str> {
        self.hashes.get("sha256").map(String::as_str)
    }

    /// The upstream URL of the PEP 658 core-metadata file, when the upstream has one.
    pub fn metadata_url(&self) -> Option<String> {
        self.core_metadata
            .as_ref()
            .map(|_| format!("{}.metadata", self.url))
    }
}

/// A file as read from either serialisation, before the checks every file must pass.
pub(crate) struct RawFile {
    pub(crate) filename: Option<String>,
    pub(crate) url: Url,
    pub(crate) hashes: BTreeMap<String, String>,
    pub(crate) requires_python: Option<String>,
    pub(crate) upload_time: Option<jiff::Timestamp>,
    pub(crate) yanked: Option<String>,
    pub(crate) core_metadata: Option<BTreeMap<String, String>>,
    pub(crate) size: Option<u64>,
}

impl ProjectPage {
    /// Read a PEP 691 JSON page (api-version 1.x). `page_url` resolves relative file URLs;
    /// `requested` is the name the client asked for, which the page's `name` must
    /// PEP 503-normalise equal to. Unknown keys are ignored.
    pub fn parse_json(
        body: &[u8],
        page_url: &str,
        requested: &str,
    ) -> Result<ProjectPage, MetadataError> {
        let base = parse_page_url(page_url)?;
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| MetadataError::Malformed(format!("not JSON: {err}")))?;
        let Value::Object(doc) = value else {
            return Err(malformed("not a JSON object"));
        };
        if let Some(meta) = doc.get("meta") {
            let version = meta.get("api-version").and_then(Value::as_str);
            check_api_version(version)?;
        }
        let Some(name) = doc.get("name").and_then(Value::as_str) else {
            return Err(malformed("no `name` string"));
        };
        check_name(name, requested)?;
        let Some(Value::Array(entries)) = doc.get("files") else {
            return Err(malformed("no `files` array"));
        };
        let mut raw_files = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Object(entry) = entry else {
                return Err(malformed("a file is not an object"));
            };
            if let Some(raw) = json_file(entry, &base)? {
                raw_files.push(raw);
            }
        }
        Ok(ProjectPage::from_raw(name, raw_files))
    }

    /// Build a page from files read upstream, dropping those the gate could not serve.
    pub(crate) fn from_raw(name: &str, raw_files: Vec<RawFile>) -> ProjectPage {
        let mut seen = BTreeSet::new();
        let files = raw_files
            .into_iter()
            .filter_map(|raw| finish_file(name, raw))
            .filter(|file| seen.insert(file.filename.clone()))
            .collect();
        ProjectPage {
            name: name.to_owned(),
            files,
        }
    }

    /// One [`VersionInfo`] per distinct version, in order of first appearance; `published` is
    /// the earliest upload time among that version's files.
    pub fn version_infos(&self) -> Vec<VersionInfo> {
        let mut infos: Vec<VersionInfo> = Vec::new();
        for file in &self.files {
            let Some(version) = &file.version else {
                continue;
            };
            match infos.iter_mut().find(|info| &info.version == version) {
                Some(info) => {
                    info.published = match (info.published, file.upload_time) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                None => infos.push(VersionInfo {
                    version: version.clone(),
                    published: file.upload_time,
                }),
            }
        }
        infos
    }

    /// The file of that exact name.
    pub fn file(&self, filename: &str) -> Option<&DistFile> {
        self.files.iter().find(|file| file.filename == filename)
    }

    /// The page of a project blocked as a whole whose upstream has no files: one synthetic
    /// wheel `<name with _>-0.0.0-py3-none-any.whl` with core metadata, so that pip and uv pick
    /// it, ask for its `.metadata` or the file, and print the gate's 403 reason. Its URL is
    /// empty and its sha256 all zeros: it exists only to be refused, never fetched.
    pub fn synthetic(name: &str) -> ProjectPage {
        let normalized = normalize_name(name);
        let filename = format!("{}-0.0.0-py3-none-any.whl", normalized.replace('-', "_"));
        let file = DistFile {
            filename,
            url: String::new(),
            hashes: BTreeMap::from([("sha256".to_owned(), "0".repeat(64))]),
            requires_python: None,
            upload_time: None,
            yanked: None,
            core_metadata: Some(BTreeMap::new()),
            size: None,
            version: Some("0.0.0".to_owned()),
        };
        ProjectPage {
            name: normalized,
            files: vec![file],
        }
    }
}

/// Apply the checks every file must pass and derive its version; `None` drops the file.
fn finish_file(project: &str, raw: RawFile) -> Option<DistFile> {
    let RawFile {
        filename,
        mut url,
        mut hashes,
        requires_python,
        upload_time,
        yanked,
        core_metadata,
        size,
    } = raw;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    for (algorithm, digest) in url.fragment().map(fragment_hashes).unwrap_or_default() {
        hashes.entry(algorithm).or_insert(digest);
    }
    url.set_fragment(None);
    let filename = match filename {
        Some(filename) => filename,
        None => url_filename(&url)?,
    };
    check_filename(&filename).ok()?;
    let version = version_from_filename(project, &filename)?;
    Some(DistFile {
        filename,
        url: url.into(),
        hashes,
        requires_python,
        upload_time,
        yanked,
        core_metadata,
        size,
        version: Some(version),
    })
}

/// Read one entry of a JSON `files` array. `Ok(None)` when its URL cannot be resolved.
fn json_file(entry: &Map<String, Value>, base: &Url) -> Result<Option<RawFile>, MetadataError> {
    let Some(filename) = entry.get("filename").and_then(Value::as_str) else {
        return Err(malformed("a file has no `filename` string"));
    };
    let Some(href) = entry.get("url").and_then(Value::as_str) else {
        return Err(malformed(format!("file {filename:?} has no `url` string")));
    };
    let hashes = match entry.get("hashes") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => json_hashes(map, filename)?,
        Some(_) => {
            return Err(malformed(format!(
                "file {filename:?}: `hashes` not an object"
            )));
        }
    };
    let requires_python = match entry.get("requires-python") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            return Err(malformed(format!(
                "file {filename:?}: `requires-python` not a string"
            )));
        }
    };
    let yanked = match entry.get("yanked") {
        None | Some(Value::Null | Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(String::new()),
        // pip reads an empty reason as "not yanked".
        Some(Value::String(reason)) => (!reason.is_empty()).then(|| reason.clone()),
        Some(_) => return Err(malformed(format!("file {filename:?}: `yanked` invalid"))),
    };
    let core_metadata = match core_metadata_value(entry) {
        None | Some((_, Value::Bool(false))) => None,
        Some((_, Value::Bool(true))) => Some(BTreeMap::new()),
        Some((_, Value::Object(map))) => Some(json_hashes(map, filename)?),
        Some((key, _)) => return Err(malformed(format!("file {filename:?}: `{key}` invalid"))),
    };
    let size = match entry.get("size") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .ok_or_else(|| malformed(format!("file {filename:?}: `size` invalid")))?,
        ),
    };
    let upload_time = match entry.get("upload-time") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => text.parse::<jiff::Timestamp>().ok(),
        Some(_) => {
            return Err(malformed(format!(
                "file {filename:?}: `upload-time` invalid"
            )));
        }
    };
    let Ok(url) = base.join(href) else {
        return Ok(None);
    };
    Ok(Some(RawFile {
        filename: Some(filename.to_owned()),
        url,
        hashes,
        requires_python,
        upload_time,
        yanked,
        core_metadata,
        size,
    }))
}

/// The first core-metadata key present (PEP 714 `core-metadata`, then the older spellings).
fn core_metadata_value(entry: &Map<String, Value>) -> Option<(&'static str, &Value)> {
    [
        "core-metadata",
        "dist-info-metadata",
        "data-dist-info-metadata",
    ]
    .into_iter()
    .find_map(|key| {
        entry
            .get(key)
            .filter(|value| !value.is_null())
            .map(|value| (key, value))
    })
}

/// A JSON hash map (`{"sha256": "<hex>"}`): values must be strings; entries that are not a
/// plausible algorithm and hex digest are left out.
fn json_hashes(
    map: &Map<String, Value>,
    filename: &str,
) -> Result<BTreeMap<String, String>, MetadataError> {
    let mut hashes = BTreeMap::new();
    for (algorithm, digest) in map {
        let Some(digest) = digest.as_str() else {
            return Err(malformed(format!(
                "file {filename:?}: hash {algorithm:?} not a string"
            )));
        };
        if let Some((algorithm, digest)) = clean_hash(algorithm, digest) {
            hashes.insert(algorithm, digest);
        }
    }
    Ok(hashes)
}

/// Lowercase a hash entry, or `None` when it is not `[a-z0-9_-]+` → hex.
pub(crate) fn clean_hash(algorithm: &str, digest: &str) -> Option<(String, String)> {
    let algorithm = algorithm.trim().to_ascii_lowercase();
    let digest = digest.trim().to_ascii_lowercase();
    let valid = !algorithm.is_empty()
        && algorithm.len() <= 32
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !digest.is_empty()
        && digest.len() <= 256
        && digest.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some((algorithm, digest))
}

/// The hashes in a URL fragment: `sha256=<hex>`, possibly several joined with `&`.
pub(crate) fn fragment_hashes(fragment: &str) -> Vec<(String, String)> {
    fragment
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(algorithm, digest)| clean_hash(algorithm, digest))
        .collect()
}

/// The last path segment of a URL, percent-decoded.
fn url_filename(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.next_back()?;
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    (!decoded.is_empty()).then(|| decoded.into_owned())
}

/// The page URL relative file URLs are resolved against.
pub(crate) fn parse_page_url(page_url: &str) -> Result<Url, MetadataError> {
    Url::parse(page_url).map_err(|err| malformed(format!("invalid page url `{page_url}`: {err}")))
}

/// Accept `1.x` (PEP 629/691): a major version this reader does not know is refused.
pub(crate) fn check_api_version(version: Option<&str>) -> Result<(), MetadataError> {
    match version {
        None => Ok(()),
        Some(version) if version.trim().split('.').next() == Some("1") => Ok(()),
        Some(version) => Err(malformed(format!(
            "unsupported simple api version `{version}`"
        ))),
    }
}

/// The page must be the one asked for (PEP 503-normalised comparison).
pub(crate) fn check_name(found: &str, requested: &str) -> Result<(), MetadataError> {
    if normalize_name(found) == normalize_name(requested) {
        Ok(())
    } else {
        Err(MetadataError::NameMismatch {
            requested: requested.to_owned(),
            found: found.to_owned(),
        })
    }
}

pub(crate) fn malformed(message: impl Into<String>) -> MetadataError {
    MetadataError::Malformed(message.into())
}
