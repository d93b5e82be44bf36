//! moat's policy: a TOML file shaped like cargo-deny's, evaluated into a [`Verdict`] with stable
//! rule ids. Pure and synchronous: no I/O, no clock (the caller passes `now`).
//!
//! INTERFACE CONTRACT (skeleton written by the lead; the crate owner fills in bodies, may add
//! items, and must keep these signatures or tell the lead).

mod policy;
pub use policy::{Policy, PolicyError, PolicyWarning, DEFAULT_POLICY_TOML};

mod verdict;
pub use verdict::{Action, AdvisoryRef, Finding, RuleId, Verdict, WaiverRef};

mod evaluate;
pub use evaluate::{Context, PackageEvaluation, VersionInfo};
