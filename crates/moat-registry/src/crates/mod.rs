//! The cargo sparse registry protocol, served at `/crates/` (clients use
//! `sparse+http://ADDR/crates/index/`).
//!
//! - [`path`]: request paths ([`CratesRequest`]), crate-name rules and the index layout
//!   (`1/a`, `2/ab`, `3/a/abc`, `se/rd/serde`).
//! - [`config`]: the upstream and served `config.json`, and cargo's `dl` template rules.
//! - [`index`]: one crate's index file ([`IndexFile`]): its versions for policy, and the file
//!   served back with blocked versions marked `"yanked": true`.

pub mod config;
pub mod index;
pub mod path;

pub use config::{
    RegistryConfig, download_url, parse_config, render_config, render_config_auth_required,
};
pub use index::{IndexEntry, IndexFile};
pub use path::{CratesRequest, index_path, is_valid_name, parse_segments, prefix, same_name};

#[cfg(test)]
mod tests;
