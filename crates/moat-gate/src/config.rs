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
    /// Where the LLM pass-through routes (`/llm/anthropic/…`, `/llm/openai/…`) forward.
    pub llm_upstream: LlmUpstream,
    /// The API keys the pass-through routes add on the host side. A route whose key is absent
    /// answers 503.
    pub llm_keys: LlmKeys,
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
            llm_upstream: LlmUpstream::default(),
            llm_keys: LlmKeys::default(),
        }
    }
}

/// Base URLs of the LLM providers the pass-through routes forward to (no trailing slash
/// needed; tests point them at a loopback server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmUpstream {
    /// `/llm/anthropic/<rest>` goes to `<anthropic>/<rest>`; default `https://api.anthropic.com`.
    pub anthropic: String,
    /// `/llm/openai/<rest>` goes to `<openai>/<rest>`; default `https://api.openai.com`.
    pub openai: String,
}

impl Default for LlmUpstream {
    fn default() -> Self {
        LlmUpstream {
            anthropic: "https://api.anthropic.com".to_owned(),
            openai: "https://api.openai.com".to_owned(),
        }
    }
}

/// The real API keys, held on the host side only. `Debug` shows whether each is set, never
/// its value.
#[derive(Debug, Clone, Default)]
pub struct LlmKeys {
    /// Sent as `x-api-key` on `/llm/anthropic/…`.
    pub anthropic: Option<Secret>,
    /// Sent as `Authorization: Bearer …` on `/llm/openai/…`.
    pub openai: Option<Secret>,
}

/// A secret value: `Debug` and `Display` print `<redacted>`, the memory is zeroed on drop.
/// Read it only where it is sent ([`Secret::expose`]).
#[derive(Clone)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// Wrap a secret (surrounding whitespace, such as a trailing newline from a file, is
    /// removed).
    pub fn new(value: impl Into<String>) -> Secret {
        let mut value: String = value.into();
        let trimmed = value.trim();
        if trimmed.len() != value.len() {
            let copy = trimmed.to_owned();
            zeroize::Zeroize::zeroize(&mut value);
            value = copy;
        }
        Secret(zeroize::Zeroizing::new(value))
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
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
    /// How long graceful shutdown waits for open connections (and proxy tunnels).
    pub shutdown_timeout: Duration,
    /// Largest request body the LLM pass-through routes forward (it is read whole before the
    /// call is recorded and sent; responses stream).
    pub max_llm_request_body: u64,
    /// How long an LLM upstream may stay silent (between response chunks) before the call is
    /// cut; there is no whole-call timeout, so long streams keep going.
    pub llm_idle_timeout: Duration,
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
            max_llm_request_body: 32 * 1024 * 1024,
            llm_idle_timeout: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let keys = LlmKeys {
            anthropic: Some(Secret::new("sk-ant-real-key\n")),
            openai: None,
        };
        insta::assert_snapshot!(format!("{keys:?}"), @"LlmKeys { anthropic: Some(Secret(<redacted>)), openai: None }");
        let secret = keys.anthropic.as_ref().map(ToString::to_string);
        assert_eq!(secret.as_deref(), Some("<redacted>"));
        assert_eq!(
            keys.anthropic.as_ref().map(Secret::expose),
            Some("sk-ant-real-key")
        );
        let config = GateConfig {
            llm_keys: keys,
            ..GateConfig::new("http://127.0.0.1:7070", "/tmp/moat")
        };
        assert!(!format!("{config:?}").contains("real-key"));
    }
}
