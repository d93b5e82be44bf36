//! Gate configuration, with secure defaults.

use std::path::PathBuf;
use std::time::Duration;

use moat_registry::UpstreamConfig;

/// How the gate is reached and where it keeps its cache.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Base URL clients reach the gate at, e.g. `http://127.0.0.1:7070` (no trailing slash);
    /// used in rewritten tarball URLs and `why` links.
    pub public_url: String,
    /// The cache lives under `<data_dir>/cache/`.
    pub data_dir: PathBuf,
    /// Upstream registries.
    pub upstream: UpstreamConfig,
    /// How long a fetched packument is served before it is revalidated upstream.
    pub metadata_ttl: Duration,
    /// Request and response limits.
    pub limits: Limits,
}

impl GateConfig {
    /// A configuration with default upstreams, TTL and limits.
    pub fn new(public_url: impl Into<String>, data_dir: impl Into<PathBuf>) -> GateConfig {
        GateConfig {
            public_url: public_url.into(),
            data_dir: data_dir.into(),
            upstream: UpstreamConfig::default(),
            metadata_ttl: Duration::from_secs(300),
            limits: Limits::default(),
        }
    }
}

/// Size and time limits. The defaults are the secure ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted (registry routes are read-only: GET and HEAD carry none;
    /// a request announcing more is refused with 413).
    pub max_request_body: u64,
    /// Largest request head (request line and headers); at least 8 KiB.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Largest upstream packument accepted.
    pub max_packument_bytes: u64,
    /// Largest upstream tarball accepted.
    pub max_tarball_bytes: u64,
    /// Memory for verified tarballs kept in memory (the warm path), in bytes.
    pub memory_cache_bytes: u64,
    /// Largest tarball kept in memory.
    pub memory_cache_item_bytes: u64,
    /// Most packuments kept in memory.
    pub max_cached_packuments: usize,
    /// How long graceful shutdown waits for open connections.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body: 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_packument_bytes: 64 * 1024 * 1024,
            max_tarball_bytes: 256 * 1024 * 1024,
            memory_cache_bytes: 256 * 1024 * 1024,
            memory_cache_item_bytes: 8 * 1024 * 1024,
            max_cached_packuments: 20_000,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}
