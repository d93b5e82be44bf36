//! The HTTP side of the fixture crates registry.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::{BuiltCrate, BuiltCrateVersion, Crate, canonical_name, index_path};
use crate::fixture_server::{self, Common, corrupt, respond, switch, text};
use crate::raw_http::percent_decode;

#[derive(Default)]
struct Faults {
    /// Canonical names.
    malformed: HashSet<String>,
    /// (canonical name, version).
    corrupt: HashSet<(String, String)>,
}

struct Shared {
    common: Common,
    omit_pubtime: AtomicBool,
    /// By canonical name.
    crates: Mutex<BTreeMap<String, BuiltCrate>>,
    faults: Mutex<Faults>,
}

/// A running fixture sparse registry; stopped when dropped.
pub struct FixtureCrates {
    shared: Arc<Shared>,
    _running: fixture_server::Running,
}

impl FixtureCrates {
    fixture_server::common_controls!();

    /// Builds the crates (`.crate` files, checksums) and starts serving them on
    /// `127.0.0.1:0`.
    pub fn start(crates: impl IntoIterator<Item = Crate>) -> Self {
        let state = |common| Shared {
            common,
            omit_pubtime: AtomicBool::new(false),
            crates: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Faults::default()),
        };
        let (shared, running) = fixture_server::start("crates", state, handle);
        let fixture = Self {
            shared,
            _running: running,
        };
        for krate in crates {
            fixture.publish(krate);
        }
        fixture
    }

    /// `{url}/index/` — the sparse index root; cargo takes it as `sparse+{index_url}`.
    pub fn index_url(&self) -> String {
        format!("{}/index/", self.url())
    }

    /// Adds or replaces (by crates.io name identity) a crate while running.
    pub fn publish(&self, krate: Crate) {
        let built = krate.build();
        self.shared
            .crates
            .lock()
            .unwrap()
            .insert(built.canonical.clone(), built);
    }

    /// Malformed: the crate's index file is served as a broken JSON line (status 200).
    pub fn set_malformed(&self, name: &str, malformed: bool) {
        let mut faults = self.shared.faults.lock().unwrap();
        switch(&mut faults.malformed, canonical_name(name), malformed);
    }

    /// Corrupt: the version's `.crate` is served with one byte changed, so it no longer
    /// matches `cksum`.
    pub fn set_corrupt_crate(&self, name: &str, version: &str, corrupt: bool) {
        let key = (canonical_name(name), version.to_owned());
        let mut faults = self.shared.faults.lock().unwrap();
        switch(&mut faults.corrupt, key, corrupt);
    }

    /// Index lines without `pubtime` (as older registries and mirrors serve them): the
    /// gate's "age unknown" case.
    pub fn set_omit_pubtime(&self, omit: bool) {
        self.shared.omit_pubtime.store(omit, Ordering::SeqCst);
    }

    /// The `.crate` bytes of a version, as served when not corrupted.
    pub fn crate_bytes(&self, name: &str, version: &str) -> Vec<u8> {
        self.with_version(name, version, |v| v.bytes.clone())
    }

    /// The version's `cksum` (lowercase hex sha256 of the `.crate`).
    pub fn cksum(&self, name: &str, version: &str) -> String {
        self.with_version(name, version, |v| v.cksum.clone())
    }

    /// The crate's index file, as served now.
    pub fn index_file(&self, name: &str) -> String {
        let crates = self.shared.crates.lock().unwrap();
        let found = crates
            .get(&canonical_name(name))
            .unwrap_or_else(|| panic!("no fixture crate {name}"));
        found.index_file(!self.shared.omit_pubtime.load(Ordering::SeqCst))
    }

    /// `{url}/dl/<name>/<version>/download`.
    pub fn download_url(&self, name: &str, version: &str) -> String {
        format!("{}/dl/{name}/{version}/download", self.url())
    }

    fn with_version<T>(
        &self,
        name: &str,
        version: &str,
        f: impl FnOnce(&BuiltCrateVersion) -> T,
    ) -> T {
        let crates = self.shared.crates.lock().unwrap();
        let found = crates
            .get(&canonical_name(name))
            .and_then(|c| c.find(version));
        f(found.unwrap_or_else(|| panic!("no fixture crate version {name}@{version}")))
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.common.record(&request);
    shared.common.wait_for_delay().await;
    let path = percent_decode(request.uri().path());
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let base = shared.common.base_url.as_str();
    match segments.as_slice() {
        ["index", "config.json"] => respond(
            StatusCode::OK,
            "application/json",
            json!({ "dl": format!("{base}/dl") }).to_string(),
        ),
        ["index", prefix @ .., name] if !prefix.is_empty() => {
            let requested = prefix.join("/").to_ascii_lowercase();
            let expected = index_path(name);
            if expected.rsplit_once('/').map(|(p, _)| p) != Some(requested.as_str()) {
                return text(StatusCode::NOT_FOUND, "not found");
            }
            let key = canonical_name(name);
            let malformed = shared.faults.lock().unwrap().malformed.contains(&key);
            let crates = shared.crates.lock().unwrap();
            let Some(krate) = crates.get(&key) else {
                return text(StatusCode::NOT_FOUND, "not found");
            };
            if malformed {
                return respond(
                    StatusCode::OK,
                    "text/plain",
                    format!("{{\"name\":\"{}\",\"vers\":\"1.0\n", krate.name),
                );
            }
            let pubtime = !shared.omit_pubtime.load(Ordering::SeqCst);
            respond(StatusCode::OK, "text/plain", krate.index_file(pubtime))
        }
        ["dl", name, version, "download"] => {
            let key = canonical_name(name);
            let bytes = {
                let crates = shared.crates.lock().unwrap();
                crates
                    .get(&key)
                    .and_then(|c| c.find(version))
                    .map(|v| v.bytes.clone())
            };
            let Some(bytes) = bytes else {
                return text(StatusCode::NOT_FOUND, "not found");
            };
            let corrupted = shared
                .faults
                .lock()
                .unwrap()
                .corrupt
                .contains(&(key, (*version).to_owned()));
            let bytes = if corrupted { corrupt(bytes) } else { bytes };
            respond(StatusCode::OK, "application/gzip", bytes)
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crates::CrateVersion;
    use crate::fixture_server::sha256_hex;
    use crate::raw_http;

    fn fixture() -> FixtureCrates {
        FixtureCrates::start([
            Crate::new("tiny_pad").versions(&["1.0.0", "1.1.0"]),
            Crate::new("ab").version(CrateVersion::new("0.1.0")),
        ])
    }

    #[test]
    fn config_and_index_files_at_sparse_paths() {
        let registry = fixture();
        let config = raw_http::get(registry.url(), "/index/config.json").json();
        assert_eq!(config["dl"], format!("{}/dl", registry.url()));
        for path in [
            "/index/ti/ny/tiny_pad",
            "/index/ti/ny/tiny-pad",
            "/index/TI/ny/Tiny-Pad",
        ] {
            let response = raw_http::get(registry.url(), path);
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(response.text(), registry.index_file("tiny_pad"));
        }
        assert_eq!(raw_http::get(registry.url(), "/index/2/ab").status, 200);
        assert_eq!(
            raw_http::get(registry.url(), "/index/xx/yy/tiny_pad").status,
            404
        );
        assert_eq!(
            raw_http::get(registry.url(), "/index/no/pe/nope").status,
            404
        );
    }

    #[test]
    fn downloads_match_cksum_until_corrupted() {
        let registry = fixture();
        let path = "/dl/tiny-pad/1.1.0/download";
        let bytes = raw_http::get(registry.url(), path).body;
        assert_eq!(sha256_hex(&bytes), registry.cksum("tiny_pad", "1.1.0"));
        registry.set_corrupt_crate("Tiny_Pad", "1.1.0", true);
        let corrupt = raw_http::get(registry.url(), path).body;
        assert_eq!(corrupt.len(), bytes.len());
        assert_ne!(corrupt, bytes);
        assert_eq!(
            raw_http::get(registry.url(), "/dl/tiny_pad/9.9.9/download").status,
            404
        );
    }

    #[test]
    fn faults_switch_at_runtime() {
        let registry = fixture();
        registry.set_omit_pubtime(true);
        let file = raw_http::get(registry.url(), "/index/2/ab").text();
        assert!(!file.contains("pubtime"), "{file}");
        registry.set_omit_pubtime(false);
        assert!(
            raw_http::get(registry.url(), "/index/2/ab")
                .text()
                .contains("pubtime")
        );

        registry.set_malformed("ab", true);
        let broken = raw_http::get(registry.url(), "/index/2/ab").text();
        assert!(serde_json::from_str::<serde_json::Value>(broken.trim()).is_err());
        registry.set_malformed("ab", false);

        registry.set_down(true);
        assert!(raw_http::try_request(registry.url(), "GET", "/index/2/ab", &[]).is_err());
        registry.set_down(false);

        registry.publish(Crate::new("AB").versions(&["0.2.0"]));
        assert!(registry.index_file("ab").contains("\"vers\":\"0.2.0\""));
        assert!(registry.requests().iter().any(|r| r.path == "/index/2/ab"));
    }
}
