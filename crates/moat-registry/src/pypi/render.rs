//! Rendering a project page for clients, in PEP 691 JSON or PEP 503 HTML, with every file URL
//! pointing at the gate and the files of blocked versions yanked with the block reason.
//! Everything taken from upstream is escaped in HTML: a hostile file name or reason cannot add
//! markup.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use crate::pypi::negotiate::Format;
use crate::pypi::page::{DistFile, ProjectPage};
use crate::pypi::path::normalize_name;

/// Bytes left as they are in a file name within a URL path (RFC 3986 unreserved).
const FILENAME_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Hash algorithms put in an HTML `#<algorithm>=<hex>` fragment, most preferred first (those
/// pip accepts there).
const FRAGMENT_ALGORITHMS: &[&str] = &["sha256", "sha512", "sha384", "sha224", "sha1", "md5"];

/// How the gate rewrites a page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PagePlan {
    /// The gate's PyPI root, without trailing slash (`http://127.0.0.1:7070/pypi`): every file
    /// URL becomes `{files_base}/files/{normalized project}/{percent-encoded filename}`.
    pub files_base: String,
    /// Version (as in [`DistFile::version`]) → one-line block reason: every file of that version
    /// is rendered yanked with that reason, which overrides an upstream one.
    pub blocked: BTreeMap<String, String>,
}

/// A file as rendered: where the client fetches it and why it is yanked, if it is.
struct Rendered<'a> {
    file: &'a DistFile,
    url: String,
    yanked: Option<&'a str>,
}

impl ProjectPage {
    /// The PEP 691 JSON page. Api-version `1.1` (with `versions` and `size`) when every file has
    /// a size, else `1.0`; core metadata under `core-metadata` (PEP 714; not the old `dist-info-metadata`).
    pub fn render_json(&self, plan: &PagePlan) -> Vec<u8> {
        let with_sizes = self.has_sizes();
        let files: Vec<Value> = self
            .rendered(plan)
            .map(|rendered| json_file(&rendered, with_sizes))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "meta".into(),
            json!({ "api-version": api_version(with_sizes) }),
        );
        doc.insert("name".into(), Value::String(normalize_name(&self.name)));
        doc.insert("files".into(), Value::Array(files));
        if with_sizes {
            let versions: Vec<Value> = self
                .distinct_versions()
                .into_iter()
                .map(|version| Value::String(version.to_owned()))
                .collect();
            doc.insert("versions".into(), Value::Array(versions));
        }
        serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
    }

    /// The PEP 503 HTML page: one anchor per file with its hash fragment, and the
    /// `data-requires-python`, `data-yanked` and `data-core-metadata`
    /// attributes, everything escaped.
    pub fn render_html(&self, plan: &PagePlan) -> Vec<u8> {
        let name = escape(&normalize_name(&self.name));
        let version = api_version(self.has_sizes());
        let mut html = format!(
            "<!DOCTYPE html>\n<html>\n  <head>\n    \
             <meta name=\"pypi:repository-version\" content=\"{version}\">\n    \
             <title>Links for {name}</title>\n  </head>\n  <body>\n    \
             <h1>Links for {name}</h1>\n"
        );
        for rendered in self.rendered(plan) {
            html.push_str(&html_anchor(&rendered));
        }
        html.push_str("  </body>\n</html>\n");
        html.into_bytes()
    }

    fn has_sizes(&self) -> bool {
        self.files.iter().all(|file| file.size.is_some())
    }

    fn distinct_versions(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.files
            .iter()
            .filter_map(|file| file.version.as_deref())
            .filter(|version| seen.insert(*version))
            .collect()
    }

    fn rendered<'a>(&'a self, plan: &'a PagePlan) -> impl Iterator<Item = Rendered<'a>> + 'a {
        let project = normalize_name(&self.name);
        self.files.iter().map(move |file| {
            let blocked = file
                .version
                .as_ref()
                .and_then(|version| plan.blocked.get(version));
            Rendered {
                file,
                url: file_url(&plan.files_base, &project, &file.filename),
                yanked: blocked.or(file.yanked.as_ref()).map(String::as_str),
            }
        })
    }
}

/// The URL of a file at the gate: `{files_base}/files/{normalized project}/{filename}`, both
/// percent-encoded but for RFC 3986 unreserved characters.
pub fn file_url(files_base: &str, project: &str, filename: &str) -> String {
    let project = normalize_name(project);
    let project = utf8_percent_encode(&project, FILENAME_KEEP);
    let filename = utf8_percent_encode(filename, FILENAME_KEEP);
    format!("{files_base}/files/{project}/{filename}")
}

/// The body of the root index (`/simple/`): no projects are listed (the gate only serves
/// pages a client names).
pub fn render_root(format: Format) -> Vec<u8> {
    match format {
        Format::Json => br#"{"meta":{"api-version":"1.0"},"projects":[]}"#.to_vec(),
        Format::Html => b"<!DOCTYPE html>\n<html>\n  <head>\n    \
            <meta name=\"pypi:repository-version\" content=\"1.0\">\n    \
            <title>Simple index</title>\n  </head>\n  <body>\n  </body>\n</html>\n"
            .to_vec(),
    }
}

fn api_version(with_sizes: bool) -> &'static str {
    if with_sizes { "1.1" } else { "1.0" }
}

fn json_file(rendered: &Rendered<'_>, with_size: bool) -> Value {
    let file = rendered.file;
    let mut object = Map::new();
    object.insert("filename".into(), Value::String(file.filename.clone()));
    object.insert("url".into(), Value::String(rendered.url.clone()));
    object.insert("hashes".into(), json_hashes(&file.hashes));
    if let Some(requires_python) = &file.requires_python {
        object.insert(
            "requires-python".into(),
            Value::String(requires_python.clone()),
        );
    }
    let metadata = match &file.core_metadata {
        None => Value::Bool(false),
        Some(hashes) if hashes.is_empty() => Value::Bool(true),
        Some(hashes) => json_hashes(hashes),
    };
    // Only the PEP 714 name: the older `dist-info-metadata` key with a hash object crashes
    // pip 23.0 (still Debian 12's pip), which is why PyPI stopped serving it.
    object.insert("core-metadata".into(), metadata);
    // An empty reason would read as "not yanked" to pip: say `true` instead.
    let yanked = match rendered.yanked {
        None => Value::Bool(false),
        Some("") => Value::Bool(true),
        Some(reason) => Value::String(reason.to_owned()),
    };
    object.insert("yanked".into(), yanked);
    if let (true, Some(size)) = (with_size, file.size) {
        object.insert("size".into(), Value::from(size));
    }
    if let Some(upload_time) = file.upload_time {
        object.insert(
            "upload-time".into(),
            Value::String(upload_time_text(upload_time)),
        );
    }
    Value::Object(object)
}

/// An upload time as PyPI writes it: UTC, microseconds, `Z` (`2024-01-02T03:04:05.000000Z`),
/// which every Python version's `datetime.fromisoformat` reads once the `Z` is handled.
fn upload_time_text(upload_time: jiff::Timestamp) -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", upload_time)
        .unwrap_or_else(|_| upload_time.to_string())
}

fn json_hashes(hashes: &BTreeMap<String, String>) -> Value {
    Value::Object(
        hashes
            .iter()
            .map(|(algorithm, digest)| (algorithm.clone(), Value::String(digest.clone())))
            .collect(),
    )
}

fn html_anchor(rendered: &Rendered<'_>) -> String {
    let file = rendered.file;
    let mut href = rendered.url.clone();
    if let Some((algorithm, digest)) = preferred_hash(&file.hashes) {
        let _ = write!(href, "#{algorithm}={digest}");
    }
    let mut anchor = format!("    <a href=\"{}\"", escape(&href));
    if let Some(requires_python) = &file.requires_python {
        let _ = write!(
            anchor,
            " data-requires-python=\"{}\"",
            escape(requires_python)
        );
    }
    if let Some(reason) = rendered.yanked {
        let _ = write!(anchor, " data-yanked=\"{}\"", escape(reason));
    }
    if let Some(hashes) = &file.core_metadata {
        let value = match preferred_hash(hashes) {
            Some((algorithm, digest)) => format!("{algorithm}={digest}"),
            None => "true".to_owned(),
        };
        let value = escape(&value);
        // PEP 714's name only, as PyPI serves it (see `json_file`).
        let _ = write!(anchor, " data-core-metadata=\"{value}\"");
    }
    let _ = writeln!(anchor, ">{}</a><br>", escape(&file.filename));
    anchor
}

/// The hash to show in a fragment: the most preferred known algorithm, else the first.
fn preferred_hash(hashes: &BTreeMap<String, String>) -> Option<(&str, &str)> {
    FRAGMENT_ALGORITHMS
        .iter()
        .find_map(|algorithm| hashes.get_key_value(*algorithm))
        .or_else(|| hashes.iter().next())
        .map(|(algorithm, digest)| (algorithm.as_str(), digest.as_str()))
}

/// Escape text for an HTML attribute value or element content.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}
