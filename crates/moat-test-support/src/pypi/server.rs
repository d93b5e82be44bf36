//! The HTTP side of the fixture PyPI.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::response::Response;
use http::{StatusCode, header};
use serde_json::{Value, json};

use super::{BuiltFile, BuiltProject, Project, normalize};
use crate::fixture_server::{self, Common, corrupt, respond, sha256_hex, switch, text};
use crate::raw_http::percent_decode;

const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

#[derive(Default)]
struct Faults {
    malformed: HashSet<String>,
    corrupt: HashSet<String>,
}

struct Shared {
    common: Common,
    html_only: AtomicBool,
    /// By normalised name.
    projects: Mutex<BTreeMap<String, BuiltProject>>,
    faults: Mutex<Faults>,
}

/// A running fixture PyPI; stopped when dropped.
pub struct FixturePypi {
    shared: Arc<Shared>,
    _running: fixture_server::Running,
}

impl FixturePypi {
    fixture_server::common_controls!();

    /// Builds the projects (wheels, sdists, digests) and starts serving them on
    /// `127.0.0.1:0`.
    pub fn start(projects: impl IntoIterator<Item = Project>) -> Self {
        let state = |common| Shared {
            common,
            html_only: AtomicBool::new(false),
            projects: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Faults::default()),
        };
        let (shared, running) = fixture_server::start("pypi", state, handle);
        let fixture = Self {
            shared,
            _running: running,
        };
        for project in projects {
            fixture.publish(project);
        }
        fixture
    }

    /// The simple index, `{url}/simple/` — what pip's and uv's `--index-url` take.
    pub fn index_url(&self) -> String {
        format!("{}/simple/", self.url())
    }

    /// Adds or replaces (by normalised name) a project while running.
    pub fn publish(&self, project: Project) {
        let built = project.build();
        self.shared
            .projects
            .lock()
            .unwrap()
            .insert(built.normalized.clone(), built);
    }

    /// Malformed: the project's page (any spelling) is served broken with status 200 —
    /// truncated JSON, or HTML cut off inside a link.
    pub fn set_malformed(&self, project: &str, malformed: bool) {
        let mut faults = self.shared.faults.lock().unwrap();
        switch(&mut faults.malformed, normalize(project), malformed);
    }

    /// Corrupt: the file (a wheel or sdist name, or `<wheel>.metadata`) is served with other
    /// bytes than the sha256 the page lists: a wheel as a valid wheel with a changed
    /// `__init__.py` (a swapped artifact, so uv, which unpacks while downloading, still
    /// reaches its hash check), anything else with one byte flipped.
    pub fn set_corrupt_file(&self, filename: &str, corrupt: bool) {
        let mut faults = self.shared.faults.lock().unwrap();
        switch(&mut faults.corrupt, filename.to_owned(), corrupt);
    }

    /// HTML only: ignore `Accept` and serve PEP 503 HTML, which has no upload times (an
    /// upstream whose release ages are unknown).
    pub fn set_html_only(&self, html_only: bool) {
        self.shared.html_only.store(html_only, Ordering::SeqCst);
    }

    /// The bytes of a file as served when not corrupted: a wheel or sdist by file name, or a
    /// wheel's METADATA as `<wheel>.metadata`.
    pub fn file(&self, filename: &str) -> Vec<u8> {
        if let Some(wheel) = filename.strip_suffix(".metadata") {
            if let Some(metadata) = self.with_file(wheel, |f| f.metadata.clone()) {
                return metadata;
            }
        }
        self.with_file(filename, |f| f.bytes.clone())
    }

    /// Lowercase hex sha256 of [`FixturePypi::file`] (for `<wheel>.metadata`, what
    /// `core-metadata` says).
    pub fn file_sha256(&self, filename: &str) -> String {
        sha256_hex(&self.file(filename))
    }

    /// `{url}/files/<filename>`.
    pub fn file_url(&self, filename: &str) -> String {
        format!("{}/files/{filename}", self.url())
    }

    /// The file names of a project (any spelling), wheels and sdists, in release order.
    pub fn filenames(&self, project: &str) -> Vec<String> {
        self.with_project(project, |p| {
            p.files.iter().map(|f| f.filename.clone()).collect()
        })
    }

    /// The project's PEP 691 JSON page, as served.
    pub fn json_page(&self, project: &str) -> Value {
        self.with_project(project, |p| p.json_page(self.url()))
    }

    /// The project's PEP 503 HTML page, as served.
    pub fn html_page(&self, project: &str) -> String {
        self.with_project(project, |p| p.html_page(self.url()))
    }

    fn with_project<T>(&self, project: &str, f: impl FnOnce(&BuiltProject) -> T) -> T {
        let projects = self.shared.projects.lock().unwrap();
        let found = projects
            .get(&normalize(project))
            .unwrap_or_else(|| panic!("no fixture project {project}"));
        f(found)
    }

    fn with_file<T>(&self, filename: &str, f: impl FnOnce(&BuiltFile) -> T) -> T {
        let projects = self.shared.projects.lock().unwrap();
        let found = projects.values().find_map(|p| p.file(filename));
        f(found.unwrap_or_else(|| panic!("no fixture file {filename}")))
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.common.record(&request);
    shared.common.wait_for_delay().await;
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json = !shared.html_only.load(Ordering::SeqCst) && accept.contains(JSON_TYPE);
    let path = percent_decode(request.uri().path());
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let base = shared.common.base_url.as_str();
    match segments.as_slice() {
        ["simple"] => {
            let projects = shared.projects.lock().unwrap();
            if json {
                let names: Vec<Value> = projects
                    .values()
                    .map(|p| json!({ "name": p.name }))
                    .collect();
                let body = json!({ "meta": { "api-version": "1.1" }, "projects": names });
                respond(StatusCode::OK, JSON_TYPE, body.to_string())
            } else {
                let mut html = String::from(
                    "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    \
                     <title>Simple index</title>\n  </head>\n  <body>\n",
                );
                for project in projects.values() {
                    html.push_str(&format!(
                        "    <a href=\"/simple/{}/\">{}</a>\n",
                        project.normalized, project.name
                    ));
                }
                html.push_str("  </body>\n</html>\n");
                respond(StatusCode::OK, "text/html; charset=utf-8", html)
            }
        }
        ["simple", name] => {
            let key = normalize(name);
            let malformed = shared.faults.lock().unwrap().malformed.contains(&key);
            let projects = shared.projects.lock().unwrap();
            let Some(project) = projects.get(&key) else {
                return text(StatusCode::NOT_FOUND, "404 Not Found");
            };
            match (json, malformed) {
                (true, true) => respond(
                    StatusCode::OK,
                    JSON_TYPE,
                    r#"{"meta": {"api-version": "1.1"}, "name": "broken", "files": [{"filename"#,
                ),
                (true, false) => respond(
                    StatusCode::OK,
                    JSON_TYPE,
                    project.json_page(base).to_string(),
                ),
                (false, true) => respond(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    "<!DOCTYPE html>\n<html><body><a href=\"/files/broken",
                ),
                (false, false) => respond(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    project.html_page(base),
                ),
            }
        }
        ["files", filename] => {
            let corrupted = shared.faults.lock().unwrap().corrupt.contains(*filename);
            let served = {
                let projects = shared.projects.lock().unwrap();
                let find = |name: &str| projects.values().find_map(|p| p.file(name));
                match (find(filename), filename.strip_suffix(".metadata")) {
                    (Some(file), _) if corrupted => Some(
                        file.tampered
                            .clone()
                            .unwrap_or_else(|| corrupt(file.bytes.clone())),
                    ),
                    (Some(file), _) => Some(file.bytes.clone()),
                    (None, Some(wheel)) => find(wheel)
                        .and_then(|f| f.metadata.clone())
                        .map(|bytes| if corrupted { corrupt(bytes) } else { bytes }),
                    (None, None) => None,
                }
            };
            let Some(bytes) = served else {
                return text(StatusCode::NOT_FOUND, "404 Not Found");
            };
            respond(StatusCode::OK, "application/octet-stream", bytes)
        }
        _ => text(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::Release;
    use crate::raw_http;

    fn fixture() -> FixturePypi {
        FixturePypi::start([
            Project::new("Tiny_Pad").version(Release::new("1.0.0").with_sdist()),
            Project::new("other").versions(&["0.1.0"]),
        ])
    }

    fn get_json(url: &str, path: &str) -> raw_http::RawResponse {
        raw_http::request(url, "GET", path, &[("Accept", JSON_TYPE)])
    }

    #[test]
    fn any_spelling_finds_the_project_in_both_formats() {
        let index = fixture();
        for path in [
            "/simple/tiny-pad/",
            "/simple/Tiny.Pad",
            "/simple/tiny__pad/",
            "/simple/TINY-pad/",
        ] {
            let response = get_json(index.url(), path);
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(response.header("content-type"), Some(JSON_TYPE));
            assert_eq!(response.json()["name"], "Tiny_Pad");
            let html = raw_http::get(index.url(), path);
            assert!(
                html.header("content-type")
                    .unwrap()
                    .starts_with("text/html")
            );
            assert!(
                html.text()
                    .contains("tiny_pad-1.0.0-py3-none-any.whl#sha256=")
            );
        }
        assert_eq!(raw_http::get(index.url(), "/simple/nope/").status, 404);
        let root = get_json(index.url(), "/simple/").json();
        assert_eq!(root["projects"][1]["name"], "Tiny_Pad");
        assert!(
            raw_http::get(index.url(), "/simple/")
                .text()
                .contains("/simple/tiny-pad/")
        );
    }

    #[test]
    fn files_and_metadata_match_the_listed_hashes_until_corrupted() {
        let index = fixture();
        let page = get_json(index.url(), "/simple/tiny-pad/").json();
        let wheel = &page["files"][0];
        let path = wheel["url"]
            .as_str()
            .unwrap()
            .strip_prefix(index.url())
            .unwrap()
            .to_owned();
        let bytes = raw_http::get(index.url(), &path).body;
        assert_eq!(sha256_hex(&bytes), wheel["hashes"]["sha256"]);
        let metadata = raw_http::get(index.url(), &format!("{path}.metadata")).body;
        assert_eq!(sha256_hex(&metadata), wheel["core-metadata"]["sha256"]);
        assert_eq!(
            metadata,
            index.file("tiny_pad-1.0.0-py3-none-any.whl.metadata")
        );
        assert_eq!(
            index.file_sha256("tiny_pad-1.0.0.tar.gz"),
            page["files"][1]["hashes"]["sha256"]
        );

        index.set_corrupt_file("tiny_pad-1.0.0-py3-none-any.whl", true);
        let corrupt = raw_http::get(index.url(), &path).body;
        assert_ne!(sha256_hex(&corrupt), wheel["hashes"]["sha256"]);
        assert!(zip::ZipArchive::new(std::io::Cursor::new(corrupt)).is_ok());
        assert_eq!(
            raw_http::get(index.url(), &format!("{path}.metadata")).body,
            metadata
        );
        assert_eq!(raw_http::get(index.url(), "/files/nope.whl").status, 404);
    }

    #[test]
    fn html_only_ignores_accept_and_faults_switch() {
        let index = fixture();
        index.set_html_only(true);
        let response = get_json(index.url(), "/simple/tiny-pad/");
        assert!(
            response
                .header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert!(!response.text().contains("upload-time"));
        index.set_html_only(false);

        index.set_malformed("TINY.PAD", true);
        let broken = get_json(index.url(), "/simple/tiny-pad/");
        assert_eq!(broken.status, 200);
        assert!(serde_json::from_slice::<Value>(&broken.body).is_err());
        index.set_malformed("tiny-pad", false);
        assert_eq!(
            get_json(index.url(), "/simple/tiny-pad/").json()["name"],
            "Tiny_Pad"
        );

        index.set_down(true);
        assert!(raw_http::try_request(index.url(), "GET", "/simple/", &[]).is_err());
        index.set_down(false);

        index.publish(Project::new("tiny-pad").versions(&["2.0.0"]));
        let page = get_json(index.url(), "/simple/tiny-pad/").json();
        assert_eq!(page["versions"], json!(["2.0.0"]));
        let paths: Vec<String> = index.requests().into_iter().map(|r| r.path).collect();
        assert!(paths.contains(&"/simple/tiny-pad/".to_owned()), "{paths:?}");
        index.clear_requests();
        assert!(index.requests().is_empty());
    }
}
