//! The HTTP side of the fixture registry.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::response::Response;
use http::{StatusCode, header};
use serde_json::Value;

use super::{BuiltPackage, Package, tarball_file};
use crate::fixture_server::{self, Common, corrupt, respond, switch};
use crate::raw_http::percent_decode;

#[derive(Default)]
struct Faults {
    malformed: HashSet<String>,
    corrupt: HashSet<(String, String)>,
}

struct Shared {
    common: Common,
    case_insensitive: AtomicBool,
    packages: Mutex<BTreeMap<String, BuiltPackage>>,
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    faults: Mutex<Faults>,
}

/// A running fixture registry; stopped when dropped.
pub struct FixtureRegistry {
    shared: Arc<Shared>,
    _running: fixture_server::Running,
}

impl FixtureRegistry {
    fixture_server::common_controls!();

    /// Builds the packages (tarballs, digests) and starts serving them on `127.0.0.1:0`.
    pub fn start(packages: impl IntoIterator<Item = Package>) -> Self {
        let state = |common| Shared {
            common,
            case_insensitive: AtomicBool::new(false),
            packages: Mutex::new(BTreeMap::new()),
            files: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Faults::default()),
        };
        let (shared, running) = fixture_server::start("npm", state, handle);
        let fixture = Self {
            shared,
            _running: running,
        };
        for package in packages {
            fixture.publish(package);
        }
        fixture
    }

    /// A URL on loopback where nothing listens (a port bound, then released).
    pub fn unreachable_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local_addr");
        drop(listener);
        format!("http://{address}")
    }

    /// Adds or replaces a package while running.
    pub fn publish(&self, package: Package) {
        let built = package.build();
        self.shared
            .packages
            .lock()
            .unwrap()
            .insert(built.name.clone(), built);
    }

    /// Serves `bytes` at exactly `path` (e.g. `/osv/npm/all.zip`), ahead of the npm routes.
    pub fn serve_file(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.shared
            .files
            .lock()
            .unwrap()
            .insert(path.to_owned(), bytes.into());
    }

    /// Case-insensitive names: `/Minimist` serves `minimist`, as some private registries do.
    /// Tells whether a proxy in front matches names the way its upstream does.
    pub fn set_case_insensitive(&self, case_insensitive: bool) {
        self.shared
            .case_insensitive
            .store(case_insensitive, Ordering::SeqCst);
    }

    /// Malformed: the package's metadata documents are served as broken JSON (status 200).
    pub fn set_malformed(&self, name: &str, malformed: bool) {
        let mut faults = self.shared.faults.lock().unwrap();
        switch(&mut faults.malformed, name.to_owned(), malformed);
    }

    /// Corrupt: the version's tarball is served with one byte changed, so it no longer
    /// matches `dist.integrity`.
    pub fn set_corrupt_tarball(&self, name: &str, version: &str, corrupt: bool) {
        let key = (name.to_owned(), version.to_owned());
        let mut faults = self.shared.faults.lock().unwrap();
        switch(&mut faults.corrupt, key, corrupt);
    }

    /// The tarball bytes of a version, as served when not corrupted.
    pub fn tarball(&self, name: &str, version: &str) -> Vec<u8> {
        self.with_version(name, version, |v| v.tarball.clone())
    }

    /// `dist.integrity` of a version.
    pub fn integrity(&self, name: &str, version: &str) -> String {
        self.with_version(name, version, |v| v.integrity.clone())
    }

    /// The full packument, as served.
    pub fn packument(&self, name: &str) -> Value {
        let packages = self.shared.packages.lock().unwrap();
        let package = packages
            .get(name)
            .unwrap_or_else(|| panic!("no fixture package {name}"));
        package.packument(&self.shared.common.base_url)
    }

    fn with_version<T>(
        &self,
        name: &str,
        version: &str,
        f: impl FnOnce(&super::BuiltVersion) -> T,
    ) -> T {
        let packages = self.shared.packages.lock().unwrap();
        let found = packages.get(name).and_then(|p| p.find(version));
        f(found.unwrap_or_else(|| panic!("no fixture version {name}@{version}")))
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.common.record(&request);
    shared.common.wait_for_delay().await;
    let file = shared
        .files
        .lock()
        .unwrap()
        .get(request.uri().path())
        .cloned();
    if let Some(bytes) = file {
        return respond(StatusCode::OK, "application/octet-stream", bytes);
    }
    let path = percent_decode(request.uri().path());
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (name, rest) = match segments.as_slice() {
        [scope, name, rest @ ..] if scope.starts_with('@') => (format!("{scope}/{name}"), rest),
        [name, rest @ ..] => ((*name).to_owned(), rest),
        [] => return json_error(StatusCode::NOT_FOUND, "not found"),
    };
    let abbreviated = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/vnd.npm.install-v1+json"));
    let case_insensitive = shared.case_insensitive.load(Ordering::SeqCst);
    let packages = shared.packages.lock().unwrap();
    let found = packages.get(&name).or_else(|| {
        let mut all = packages.values();
        all.find(|p| case_insensitive && p.name.eq_ignore_ascii_case(&name))
    });
    let Some(package) = found else {
        return json_error(StatusCode::NOT_FOUND, "Not found");
    };
    let name = package.name.clone();
    let (malformed, corrupted) = {
        let faults = shared.faults.lock().unwrap();
        (faults.malformed.contains(&name), faults.corrupt.clone())
    };
    let registry = shared.common.base_url.as_str();
    match rest {
        [] if malformed => malformed_json(),
        [] if abbreviated => json(
            StatusCode::OK,
            "application/vnd.npm.install-v1+json",
            &package.abbreviated(registry),
        ),
        [] => json(
            StatusCode::OK,
            "application/json",
            &package.packument(registry),
        ),
        [version] => match package.find(version) {
            Some(_) if malformed => malformed_json(),
            Some(found) => json(
                StatusCode::OK,
                "application/json",
                &found.manifest(registry, &name),
            ),
            None => json_error(StatusCode::NOT_FOUND, "version not found"),
        },
        ["-", file] => {
            let found = package.versions.iter().find(|v| {
                let expected = tarball_file(&name, &v.version);
                expected == *file || (case_insensitive && expected.eq_ignore_ascii_case(file))
            });
            let Some(found) = found else {
                return json_error(StatusCode::NOT_FOUND, "tarball not found");
            };
            let bytes = found.tarball.clone();
            let key = (name.clone(), found.version.clone());
            let bytes = if corrupted.contains(&key) {
                corrupt(bytes)
            } else {
                bytes
            };
            respond(StatusCode::OK, "application/octet-stream", bytes)
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn json(status: StatusCode, content_type: &'static str, value: &Value) -> Response {
    respond(
        status,
        content_type,
        serde_json::to_vec(value).expect("serialisable"),
    )
}

fn json_error(status: StatusCode, message: &str) -> Response {
    json(
        status,
        "application/json",
        &serde_json::json!({ "error": message }),
    )
}

fn malformed_json() -> Response {
    respond(
        StatusCode::OK,
        "application/json",
        r#"{"name": "broken", "versions": {"1.0"#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npm::Version;
    use crate::raw_http;

    fn fixture() -> FixtureRegistry {
        FixtureRegistry::start([
            Package::new("minimist").versions(&["1.2.5", "1.2.8"]),
            Package::new("@scope/thing").version(Version::new("1.0.0").file("extra.txt", "hi")),
        ])
    }

    #[test]
    fn serves_packuments_under_both_scope_spellings() {
        let registry = fixture();
        for path in ["/@scope/thing", "/@scope%2fthing", "/@scope%2Fthing"] {
            let response = raw_http::get(registry.url(), path);
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(response.json()["name"], "@scope/thing");
        }
    }

    #[test]
    fn abbreviated_packument_on_install_accept() {
        let registry = fixture();
        let response = raw_http::request(
            registry.url(),
            "GET",
            "/minimist",
            &[("Accept", "application/vnd.npm.install-v1+json")],
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/vnd.npm.install-v1+json")
        );
        let doc = response.json();
        assert!(doc.get("time").is_none());
        assert_eq!(doc["dist-tags"]["latest"], "1.2.8");
    }

    #[test]
    fn tarball_matches_advertised_integrity_until_corrupted() {
        let registry = fixture();
        let doc = raw_http::get(registry.url(), "/minimist/1.2.5").json();
        let tarball_url = doc["dist"]["tarball"].as_str().unwrap().to_owned();
        let path = tarball_url.strip_prefix(registry.url()).unwrap();
        let body = raw_http::get(registry.url(), path).body;
        assert_eq!(
            crate::tarball::integrity(&body),
            doc["dist"]["integrity"].as_str().unwrap()
        );
        registry.set_corrupt_tarball("minimist", "1.2.5", true);
        let corrupt = raw_http::get(registry.url(), path).body;
        assert_eq!(corrupt.len(), body.len());
        assert_ne!(corrupt, body);
    }

    #[test]
    fn faults_switch_at_runtime_and_requests_are_logged() {
        let registry = fixture();
        registry.set_malformed("minimist", true);
        let broken = raw_http::get(registry.url(), "/minimist");
        assert!(serde_json::from_slice::<Value>(&broken.body).is_err());
        registry.set_malformed("minimist", false);
        assert_eq!(raw_http::get(registry.url(), "/minimist").status, 200);

        registry.set_down(true);
        assert!(raw_http::try_request(registry.url(), "GET", "/minimist", &[]).is_err());
        registry.set_down(false);
        assert_eq!(raw_http::get(registry.url(), "/minimist").status, 200);

        assert_eq!(raw_http::get(registry.url(), "/nope").status, 404);
        let paths: Vec<String> = registry.requests().into_iter().map(|r| r.path).collect();
        assert!(paths.contains(&"/nope".to_owned()), "{paths:?}");
    }

    #[test]
    fn serves_static_files() {
        let registry = fixture();
        registry.serve_file("/osv/npm/all.zip", b"zip".to_vec());
        assert_eq!(
            raw_http::get(registry.url(), "/osv/npm/all.zip").body,
            b"zip"
        );
    }

    #[test]
    fn case_insensitive_names_when_asked() {
        let registry = fixture();
        assert_eq!(raw_http::get(registry.url(), "/Minimist").status, 404);
        registry.set_case_insensitive(true);
        let doc = raw_http::get(registry.url(), "/Minimist").json();
        assert_eq!(doc["name"], "minimist");
        let tarball = raw_http::get(registry.url(), "/MiniMist/-/Minimist-1.2.5.tgz");
        assert_eq!(tarball.body, registry.tarball("minimist", "1.2.5"));
    }

    #[test]
    fn unreachable_url_refuses_connections() {
        let url = FixtureRegistry::unreachable_url();
        assert!(raw_http::try_request(&url, "GET", "/", &[]).is_err());
    }
}
