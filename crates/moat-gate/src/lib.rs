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
//! - [`serve`] and [`serve_loops`]: the HTTP/1.1 server on TCP (anonymous clients), on one
//!   runtime or one event loop per core; [`serve_unix`]: the same on a `moat run` session's
//!   unix socket, every request attributed to the [`SessionContext`]. Each request goes
//!   straight to one handler with the gate's own canonical routing (`/npm/…`, `/pypi/…`,
//!   `/crates/…`, `/-/why/…`, `/-/audit/…`, `/llm/…`, and the egress forward proxy).
//! - The egress proxy (absolute-form requests and `CONNECT`) admits only the hosts of the
//!   policy's `[egress] allow` list; everything else is a 403 by rule `moat.egress`. The LLM
//!   pass-through routes add the real API key ([`LlmKeys`]) on the host side.
//! - [`serve_control`]: the control socket (`<data-dir>/gate.ctl`) through which `moat run`
//!   has a running gate serve its session (record its start and end, serve its socket);
//!   [`ControlClient`] is the `moat run` side.
//! - [`why::render_text`]: the full human explanation of a verdict.
//!
//! Upstream failure fails closed (502/504 with a reason); nothing broken is cached. This crate
//! never reads the environment or prints: the CLI passes configuration in.

mod audit_routes;
mod cache;
mod call;
mod caller;
mod config;
pub mod control;
mod crates;
mod egress;
mod error;
mod gate;
mod llm;
mod npm;
mod pypi;
mod respond;
mod sealed;
mod serve;
pub mod session_file;
pub mod why;

pub use caller::SessionContext;
pub use config::{GateConfig, Limits, LlmKeys, LlmUpstream, Secret};
pub use control::{CONTROL_SOCKET, ControlClient, ControlError, bind_control, serve_control};
pub use egress::ProxyTarget;
pub use error::GateError;
pub use gate::Gate;
pub use serve::{serve, serve_loops, serve_unix};
