//! moat's policy: a TOML file shaped like cargo-deny's, evaluated into a [`Verdict`] with stable
//! rule ids. Pure and synchronous: no I/O, no clock (the caller passes `now`).
//!
//! INTERFACE CONTRACT (skeleton written by the lead; the crate owner fills in bodies, may add
//! items, and must keep these signatures or tell the lead).
//!
//! Layout: `config` parses the TOML into a [`Policy`] (`policy`), `spec` reads `ECO:NAME@VERSION`,
//! `rules` holds one function per rule, `evaluate` runs them and applies waivers, `approved`
//! picks alternatives for blocked versions, `message` writes the one-line block message.

mod policy;
pub use policy::{DEFAULT_POLICY_TOML, Policy, PolicyError, PolicyWarning};

mod verdict;
pub use verdict::{Action, AdvisoryRef, Finding, RuleId, Verdict, WaiverRef};

mod evaluate;
pub use evaluate::{Context, PackageEvaluation, VersionInfo};

mod egress;
pub use egress::{
    DEFAULT_EGRESS_PORTS, EgressEntry, EgressHost, EgressRules, egress_denied_message,
    egress_message,
};

mod approved;
mod config;
mod message;
mod rules;
mod spec;
