//! Registry wire protocols for moat's gate, as pure functions plus two small I/O pieces.
//!
//! - [`npm::path`]: canonicalise and parse a request path (`/npm/…`) into a typed
//!   [`npm::NpmRequest`]; every URL spelling of one package or version parses to the same value.
//! - [`npm::Packument`]: read an upstream packument, list its versions for policy, and render the
//!   rewritten full, abbreviated, version and dist-tags documents ([`npm::RewritePlan`]).
//! - [`integrity`]: subresource-integrity parsing and verification (`sha512`, `sha1` shasum).
//! - [`upstream`]: the upstream HTTP client (HTTP/1.1, system roots, explicit proxies, timeouts,
//!   size caps).
//! - [`store`]: the content-addressed, verified on-disk artifact cache.
//!
//! Nothing here reads the environment or prints; configuration is passed in.

pub mod crates;
pub mod error;
pub mod integrity;
pub mod npm;
pub mod pypi;
pub mod store;
pub mod upstream;

pub use error::{MetadataError, PathError, UpstreamError};
pub use integrity::{Algorithm, Integrity, IntegrityError};
pub use store::ArtifactStore;
pub use upstream::{MetaResponse, PackumentResponse, ProxyConfig, Upstream, UpstreamConfig};
