//! Error types of the registry crate. Each maps onto one kind of refusal at the gate.

use std::time::Duration;

/// Why a request path was refused before routing (the gate answers 400, or 404 for
/// [`PathError::NoRoute`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// `%25` in the raw path: a double-encoded path is never decoded twice.
    #[error("double-encoded path (%25) refused")]
    DoubleEncoded,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in path")]
    BadEncoding,
    /// The decoded path is not UTF-8.
    #[error("path is not valid UTF-8 once decoded")]
    NotUtf8,
    /// `..`, a backslash, NUL or another control character.
    #[error("path contains a forbidden sequence ({0})")]
    Forbidden(&'static str),
    /// Not a valid npm package name.
    #[error("invalid package name `{0}`")]
    InvalidName(String),
    /// Not a valid version, tag or tarball file name.
    #[error("invalid version or tag `{0}`")]
    InvalidSpec(String),
    /// No npm route has this shape.
    #[error("no such route")]
    NoRoute,
}

/// Why upstream metadata could not be used (the gate answers 502: fails closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Not JSON, or not the shape of a packument.
    #[error("{0}")]
    Malformed(String),
    /// The packument names another package than the one asked for.
    #[error("metadata is for `{found}`, not `{requested}`")]
    NameMismatch {
        /// The name the client asked for.
        requested: String,
        /// The name the upstream document carries.
        found: String,
    },
}

/// Why the upstream registry could not answer (the gate answers 502 or 504: fails closed). The
/// messages read after "upstream ECOSYSTEM " (`upstream npm unreachable: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Connection refused, DNS failure, TLS failure, reset.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No complete answer within the configured timeout.
    #[error("timed out after {}s", .0.as_secs_f32())]
    TimedOut(Duration),
    /// An unexpected HTTP status (5xx, 401, 403, …).
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The body exceeded the configured cap.
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    /// A URL (base or `dist.tarball`) that cannot be fetched.
    #[error("has an invalid url `{0}`")]
    InvalidUrl(String),
    /// The HTTP client could not be built (bad proxy URL, TLS backend failure).
    #[error("cannot configure the upstream client: {0}")]
    Config(String),
}
