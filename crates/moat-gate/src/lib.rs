//! moat's gate: the HTTP/1.1 server that stands between an agent's package clients and the
//! upstream registries.
//!
//! Every request on a registry route is parsed into one canonical form (so a blocked version is
//! unreachable by any URL spelling), decided by the policy, recorded in the audit log *before* the
//! answer is sent (no record, no answer), and answered either with rewritten metadata (blocked
//! versions deprecated, `latest` moved, tarball URLs pointing at the gate) or with a 403 whose
//! HTTP reason phrase and JSON body carry the one-line block message.
//!
//! - [`Gate`]: shared state (policy, advisories, audit log, upstream client, caches).
//! - [`router`]: the axum router (`/npm/…`, `/pypi/…`, `/crates/…`, `/-/why/…`); [`serve`]: the HTTP/1.1 accept loop.
//! - [`why::render_text`]: the full human explanation of a verdict.
//!
//! Upstream failure fails closed (502/504 with a reason); nothing broken is cached. This crate
//! never reads the environment or prints: the CLI passes configuration in.

mod cache;
mod call;
mod config;
mod crates;
mod error;
mod gate;
mod npm;
mod pypi;
mod respond;
mod serve;
pub mod why;

pub use config::{GateConfig, Limits};
pub use error::GateError;
pub use gate::Gate;
pub use serve::{router, serve};
