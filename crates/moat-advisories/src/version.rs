//! Version ordering per ecosystem: SemVer 2.0 for npm and crates.io (prerelease rules included),
//! PEP 440 for PyPI.

use std::cmp::Ordering;

use crate::Ecosystem;

/// A parsed version of one ecosystem. Ordering is only meaningful within one ecosystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// npm and crates.io.
    Semver(semver::Version),
    // PyPI: owner adds a PEP 440 variant.
}

/// A version string the ecosystem's rules cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid version")]
pub struct InvalidVersion(pub String);

impl Version {
    /// Parse `text` by the rules of `ecosystem`.
    pub fn parse(ecosystem: Ecosystem, text: &str) -> Result<Version, InvalidVersion> {
        let _ = (ecosystem, text);
        todo!()
    }

    /// Whether this is a prerelease (`1.0.0-rc.1`, PEP 440 `a`/`b`/`rc`/`.dev`).
    pub fn is_prerelease(&self) -> bool {
        todo!()
    }

    /// The major component (semver major; PEP 440 first release segment).
    pub fn major(&self) -> u64 {
        todo!()
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let _ = other;
        todo!()
    }
}
