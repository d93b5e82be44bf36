//! Integration tests: the sample and full OSV dumps from the shared data directory.

mod full;
mod samples;

use std::path::PathBuf;

/// `$MOAT_SHARED_DATA`, else `../shared/data` beside the project.
pub fn shared_data() -> PathBuf {
    std::env::var_os("MOAT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        })
}

/// A sample dump: `samples/<ecosystem>.zip`.
pub fn sample(ecosystem: &str) -> PathBuf {
    shared_data()
        .join("advisories/samples")
        .join(format!("{ecosystem}.zip"))
}
