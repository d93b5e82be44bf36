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
    #[error("upstream {ecosystem} {source}")]
    Upstream {
        /// Whose upstream.
        ecosystem: Ecosystem,
        /// What went wrong.
        source: UpstreamError,
    },
    /// The upstream sent metadata the gate cannot use.
    #[error("upstream sent malformed metadata for {name}: {source}")]
    Metadata {
        /// Package.
        name: String,
        /// What was wrong.
        source: MetadataError,
    },
    /// The upstream artifact did not match (or there was nothing to match it against).
    #[error("upstream {artifact} for {name}@{version} failed its integrity check: {source}")]
    Integrity {
        /// What kind of artifact (`tarball`, `file`, `crate`).
        artifact: &'static str,
        /// Package.
        name: String,
        /// Version.
        version: String,
        /// What failed (boxed: it is the largest variant).
        source: Box<IntegrityError>,
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
    /// The gate could not be set up.
    #[error("cannot start the gate: {0}")]
    Setup(String),
}

impl GateError {
    /// A mapper from an [`UpstreamError`] of `ecosystem`'s upstream.
    pub(crate) fn upstream(ecosystem: Ecosystem) -> impl Fn(UpstreamError) -> GateError {
        move |source| GateError::Upstream { ecosystem, source }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GateError::Upstream {
                source: UpstreamError::TimedOut(_),
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            GateError::Upstream { .. }
            | GateError::Metadata { .. }
            | GateError::Integrity { .. } => StatusCode::BAD_GATEWAY,
            GateError::NotFound { .. } | GateError::VersionNotFound { .. } => StatusCode::NOT_FOUND,
            GateError::Audit(_) | GateError::Setup(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            GateError::Upstream { .. }
            | GateError::Metadata { .. }
            | GateError::Integrity { .. }
            | GateError::Setup(_) => format!("moat: {self}"),
        }
    }
}
