use std::io;
use std::path::PathBuf;

use crate::spec::Property;

/// Why a sandbox could not run. An agent that ran and failed is not an error: see
/// [`Outcome::status`](crate::Outcome::status).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The spec cannot describe a sandbox (relative paths, empty command, `..` in a home file).
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// The host cannot give an isolation property the spec requires, and it was not waived.
    #[error("{what}\nhint: {hint}")]
    Unavailable {
        /// The property that cannot hold.
        property: Property,
        /// What is missing, in one line.
        what: String,
        /// How to fix it, or which flag waives it.
        hint: String,
    },
    /// The host cannot build the sandbox at all (no user namespaces); this cannot be waived.
    #[error("{what}\nhint: {hint}")]
    Unsupported {
        /// What is missing, in one line.
        what: String,
        /// How to fix it.
        hint: String,
    },
    /// Creating or configuring the session's cgroup failed.
    #[error("could not set up the session cgroup at {path}: {source}")]
    Cgroup {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Starting or talking to the sandbox init failed.
    #[error("could not start the sandbox init: {0}")]
    Spawn(#[source] io::Error),
    /// The caller did not let the session start (see [`Door`](crate::Door)); nothing of the
    /// agent ran.
    #[error("the session did not start: {0}")]
    NotAdmitted(String),
    /// The init reported a failure while building the sandbox; nothing of the agent ran.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// The agent's command could not be executed in the sandbox: no such file on the sandbox's
    /// `PATH`, or one that cannot be executed there. The sandbox was built; nothing of the agent
    /// ran. `code` is what a shell exits with for it: 127 (not found) or 126 (not executable).
    #[error("could not start {program:?} in the sandbox: {error}")]
    CommandNotStarted {
        /// The command's first word, as given.
        program: String,
        /// Why `execve` failed.
        error: String,
        /// 127 or 126.
        code: i32,
    },
}
