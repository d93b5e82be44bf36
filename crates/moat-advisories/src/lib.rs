//! OSV advisories for moat: loading `all.zip` dumps into a compact index, per-ecosystem version
//! ordering, "is this version affected", malicious classification, and typosquat checks against
//! a popular-names list.
//!
//! This crate does file I/O (reading dumps and its own index) but never touches the network, the
//! environment or the terminal: callers pass paths in.
//!
//! INTERFACE CONTRACT (skeleton written by the lead; the crate owner fills in bodies, may add
//! items, and must keep these signatures or tell the lead).

mod ecosystem;
pub use ecosystem::Ecosystem;

pub mod version;
pub use version::Version;

mod db;
pub use db::{Advisory, AdvisoryDb, EcosystemStatus, ImportReport, Match, Severity};

pub mod typosquat;
pub use typosquat::{PopularNames, Typosquat, TyposquatKind};

mod error;
pub use error::Error;
