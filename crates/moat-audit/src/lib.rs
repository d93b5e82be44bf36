//! moat's audit store, first version: an append-only SQLite table (WAL, `synchronous=FULL`) of
//! gate decisions, written *before* the gate answers. Appends from concurrent requests are
//! group-committed by one writer thread: one transaction and one fsync per batch.
//!
//! The event types are the stable part: a later version keeps them and changes only the storage
//! (canonical JSON leaves of a Merkle tree with signed checkpoints).
//!
//! INTERFACE CONTRACT (skeleton written by the lead; the crate owner fills in bodies, may add
//! items, and must keep these signatures or tell the lead).

use std::path::Path;

/// One gate decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecisionEvent {
    /// When the decision was made.
    pub time: jiff::Timestamp,
    /// Who asked (`anonymous@127.0.0.1` until tokens and sessions exist).
    pub identity: String,
    /// `npm`, `PyPI`, `crates.io`.
    pub ecosystem: String,
    /// Package name as requested.
    pub package: String,
    /// Version, when the request named one (tarball, version document).
    pub version: Option<String>,
    /// What was asked: `metadata`, `version`, `artifact`, `why`.
    pub request: String,
    /// `allow`, `warn` or `block`.
    pub action: String,
    /// Rule ids that fired (unwaived), e.g. `moat.vulnerable`.
    pub rules: Vec<String>,
    /// Advisory ids involved.
    pub advisories: Vec<String>,
    /// Approved versions offered instead.
    pub approved: Vec<String>,
    /// The block message, when blocked.
    pub message: Option<String>,
}

/// Anything the audit log records.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// A gate decision.
    Decision(DecisionEvent),
}

/// An event as stored: its sequence number (1-based, gapless) and the event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredEvent {
    /// Position in the log.
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// Filters for [`AuditLog::list`]; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Newest N events (default: all).
    pub limit: Option<usize>,
    /// Only this ecosystem.
    pub ecosystem: Option<String>,
    /// Only this package.
    pub package: Option<String>,
    /// Only this action (`allow`, `warn`, `block`).
    pub action: Option<String>,
}

/// Why the audit store failed. The gate turns any of these into a 503: no record, no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// SQLite refused (disk full, read-only, corrupt, locked).
    #[error("audit store error: {0}")]
    Store(String),
    /// The writer thread is gone (shut down or crashed).
    #[error("audit writer is not running")]
    WriterGone,
}

/// A handle on the audit store; cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct AuditLog {
    // owner fills in
}

impl AuditLog {
    /// Open (creating if needed) the store at `path`, start the writer thread.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let _ = path;
        todo!()
    }

    /// Append one event durably (committed and fsynced) and return its sequence number.
    /// Concurrent appends share one transaction.
    pub async fn append(&self, event: Event) -> Result<u64, AuditError> {
        let _ = event;
        todo!()
    }

    /// Events matching `query`, oldest first (with `limit`: the newest N, still oldest first).
    /// Reads through its own connection; works while a gate is writing.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<StoredEvent>, AuditError> {
        let _ = query;
        todo!()
    }
}
