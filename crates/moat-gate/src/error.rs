//! Why the gate could not decide or could not answer. Every variant fails closed.

use http::StatusCode;
use moat_advisories::Ecosystem;
use moat_audit::AuditError;
use moat_registry::{IntegrityError, MetadataError, UpstreamError};

/// Why the gate could not decide (or serve). Each maps to a status and a reason phrase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The upstream registry could not answer.
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// The upstream sent metadata the gate cannot use.
    #[error("upstream sent malformed metadata for {name}: {source}")]
    Metadata {
        /// Package.
        name: String,
        /// What was wrong.
        source: MetadataError,
    },
    /// The upstream tarball did not match (or there was nothing to match it against).
    #[error("upstream tarball for {name}@{version} failed its integrity check: {source}")]
    Integrity {
        /// Package.
        name: String,
        /// Version.
        version: String,
        /// What failed.
        source: IntegrityError,
    },
    /// No such package upstream.
    #[error("package {name} not found")]
    NotFound {
        /// Package.
        name: String,
    },
    /// The package exists but not this version or tag.
    #[error("version {version} of {name} not found")]
    VersionNotFound {
        /// Package.
        name: String,
        /// Version or tag asked for.
        version: String,
    },
    /// The audit log refused the record: no record, no answer.
    #[error("audit log unavailable; refusing to answer")]
    Audit(#[source] AuditError),
    /// The ecosystem has no gate routes yet.
    #[error("the {0} registry is not served by this gate yet")]
    Unsupported(Ecosystem),
    /// The gate could not be set up.
    #[error("cannot start the gate: {0}")]
    Setup(String),
}

impl GateError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GateError::Upstream(UpstreamError::TimedOut(_)) => StatusCode::GATEWAY_TIMEOUT,
            GateError::Upstream(_) | GateError::Metadata { .. } | GateError::Integrity { .. } => {
                StatusCode::BAD_GATEWAY
            }
            GateError::NotFound { .. } | GateError::VersionNotFound { .. } => StatusCode::NOT_FOUND,
            GateError::Audit(_) | GateError::Setup(_) => StatusCode::SERVICE_UNAVAILABLE,
            GateError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The one-line reason (`moat: …`), used as reason phrase and `error` field. The audit
    /// failure's reason is fixed (the store's detail goes to the log, not to the client).
    pub fn reason(&self) -> String {
        match self {
            GateError::Audit(_) => "moat: audit log unavailable; refusing to answer".to_owned(),
            GateError::NotFound { .. } | GateError::VersionNotFound { .. } => {
                "not found".to_owned()
            }
            GateError::Upstream(_)
            | GateError::Metadata { .. }
            | GateError::Integrity { .. }
            | GateError::Unsupported(_)
            | GateError::Setup(_) => format!("moat: {self}"),
        }
    }
}
