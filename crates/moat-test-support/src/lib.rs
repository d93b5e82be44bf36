//! Test support for moat's end-to-end tests: fixture upstream registries serving generated
//! packages on `127.0.0.1:0` (npm in [`npm`], PyPI in [`pypi`], a cargo sparse registry in
//! [`crates`]), OSV advisory dumps and popular-name lists written to temp dirs, a handle on a
//! running `moat gate`, a TLS front for a fixture ([`tls`]), and real package clients (npm, pnpm, yarn 1, yarn 4, pip, uv, cargo)
//! run with isolated configuration and caches.
//!
//! Dev-only: panics are the error handling here, with messages that say what to fix.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

pub mod clients;
pub mod crates;
mod fixture_server;
pub mod gate;
pub mod npm;
pub mod osv;
pub mod postgres;
pub mod process;
pub mod pypi;
pub mod raw_http;
pub mod tarball;
pub mod tls;

use std::path::PathBuf;

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The shared third-party data beside the project: `$MOAT_SHARED_DATA`, else
/// `<workspace>/../shared/data`.
pub fn shared_data_dir() -> PathBuf {
    match std::env::var_os("MOAT_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")),
    }
}

/// The small hand-picked OSV sample dumps (`npm.zip`, `PyPI.zip`, `crates.io.zip`).
pub fn sample_advisories_dir() -> PathBuf {
    let dir = shared_data_dir().join("advisories/samples");
    assert!(
        dir.join("npm.zip").is_file(),
        "missing {}: set MOAT_SHARED_DATA to the shared data directory",
        dir.display()
    );
    dir
}

/// The shared popular-name lists (`npm.txt` holds 5,000 names, most popular first).
pub fn shared_popular_dir() -> PathBuf {
    shared_data_dir().join("popular")
}
