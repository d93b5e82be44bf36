//! The npm registry protocol: request paths, packuments and their rewriting.

pub mod packument;
pub mod path;
mod render;

pub use packument::{Dist, Packument, RewritePlan};
pub use path::{NpmRequest, canonical_segments, clean_version, parse_npm_path};
pub use render::ABBREVIATED_CONTENT_TYPE;

#[cfg(test)]
mod tests;
