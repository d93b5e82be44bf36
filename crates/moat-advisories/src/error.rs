use std::path::PathBuf;

/// Why advisory data could not be loaded or imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A dump is not a readable zip archive.
    #[error("{path} is not a readable OSV zip dump: {message}")]
    Zip {
        /// The file.
        path: PathBuf,
        /// What the zip reader said.
        message: String,
    },
    /// The stored index is unreadable or from another format version.
    #[error(
        "advisory index {path} is unreadable ({message}); run `moat db import` or `moat db sync` again"
    )]
    Index {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// No dump was found where one was expected.
    #[error(
        "no OSV dumps found in {path} (expected npm.zip or npm/all.zip, PyPI.zip, crates.io.zip)"
    )]
    NoDumps {
        /// The directory searched.
        path: PathBuf,
    },
}
