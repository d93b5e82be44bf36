//! Version ordering per ecosystem: SemVer 2.0 for npm and crates.io (prerelease rules included),
//! PEP 440 for PyPI (the `pep440_rs` crate).

use std::cmp::Ordering;

use crate::Ecosystem;

mod pep440;

pub use pep440::Pep440;

/// A parsed version of one ecosystem. Ordering is only meaningful within one ecosystem.
///
/// Equality follows the ordering: SemVer build metadata (`1.0.0+build`) is ignored by both, as
/// SemVer 2.0 §10 requires for precedence.
#[derive(Debug, Clone)]
pub enum Version {
    /// npm and crates.io.
    Semver(semver::Version),
    /// PyPI (PEP 440).
    Pep440(Pep440),
}

/// A version string the ecosystem's rules cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid version")]
pub struct InvalidVersion(pub String);

impl Version {
    /// Parse `text` by the rules of `ecosystem`.
    ///
    /// npm versions may carry a leading `v` or `=` (as npm's loose parser accepts); surrounding
    /// whitespace is ignored everywhere.
    pub fn parse(ecosystem: Ecosystem, text: &str) -> Result<Version, InvalidVersion> {
        let trimmed = text.trim();
        match ecosystem {
            Ecosystem::Npm => {
                let stripped = trimmed
                    .strip_prefix('=')
                    .unwrap_or(trimmed)
                    .trim_start()
                    .trim_start_matches(['v', 'V']);
                semver::Version::parse(stripped)
                    .map(Version::Semver)
                    .map_err(|_| InvalidVersion(text.to_owned()))
            }
            Ecosystem::CratesIo => semver::Version::parse(trimmed)
                .map(Version::Semver)
                .map_err(|_| InvalidVersion(text.to_owned())),
            Ecosystem::PyPI => Pep440::parse(trimmed)
                .map(Version::Pep440)
                .ok_or_else(|| InvalidVersion(text.to_owned())),
        }
    }

    /// Whether this is a prerelease (`1.0.0-rc.1`, PEP 440 `a`/`b`/`rc`/`.dev`).
    pub fn is_prerelease(&self) -> bool {
        match self {
            Version::Semver(version) => !version.pre.is_empty(),
            Version::Pep440(version) => version.is_prerelease(),
        }
    }

    /// The major component (semver major; PEP 440 first release segment).
    pub fn major(&self) -> u64 {
        match self {
            Version::Semver(version) => version.major,
            Version::Pep440(version) => version.major(),
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Version::Semver(a), Version::Semver(b)) => a
                .major
                .cmp(&b.major)
                .then(a.minor.cmp(&b.minor))
                .then(a.patch.cmp(&b.patch))
                // `semver::Prerelease` orders the empty prerelease (a release) above any other,
                // per SemVer 2.0 §11; build metadata is deliberately left out.
                .then_with(|| a.pre.cmp(&b.pre)),
            (Version::Pep440(a), Version::Pep440(b)) => a.cmp(b),
            // Different ecosystems never meet in practice; order them deterministically anyway.
            (Version::Semver(_), Version::Pep440(_)) => Ordering::Less,
            (Version::Pep440(_), Version::Semver(_)) => Ordering::Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npm(text: &str) -> Version {
        Version::parse(Ecosystem::Npm, text).expect("valid version")
    }

    #[test]
    fn prerelease_precedence_follows_semver_spec() {
        // The example chain from SemVer 2.0 §11.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for pair in chain.windows(2) {
            assert!(npm(pair[0]) < npm(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert!(npm("1.2.6-beta") < npm("1.2.6"));
        assert!(npm("1.2.5") < npm("1.2.6-beta"));
    }

    #[test]
    fn build_metadata_is_ignored_for_precedence_and_equality() {
        assert_eq!(
            npm("1.0.0+build.1").cmp(&npm("1.0.0+build.2")),
            Ordering::Equal
        );
        assert_eq!(npm("1.0.0+zzz"), npm("1.0.0"));
        assert!(npm("1.0.0-rc.1+b") < npm("1.0.0+a"));
    }

    #[test]
    fn numeric_components_compare_numerically() {
        assert!(npm("1.10.0") > npm("1.9.0"));
        assert!(npm("10.0.0") > npm("9.99.99"));
    }

    #[test]
    fn npm_accepts_loose_prefixes_crates_does_not() {
        assert_eq!(npm("v1.2.3"), npm("1.2.3"));
        assert_eq!(npm("=1.2.3"), npm("1.2.3"));
        assert!(Version::parse(Ecosystem::CratesIo, "v1.2.3").is_err());
        assert!(Version::parse(Ecosystem::CratesIo, "1.2.3").is_ok());
    }

    #[test]
    fn invalid_versions_are_errors() {
        for text in ["", "0", "1.2", "latest", "1.2.3.4", "*"] {
            assert_eq!(
                Version::parse(Ecosystem::Npm, text),
                Err(InvalidVersion(text.to_owned())),
                "{text}"
            );
        }
    }

    #[test]
    fn crates_versions_are_strict_semver() {
        let crates = |text: &str| Version::parse(Ecosystem::CratesIo, text);
        for text in [
            "v1.2.3", "=1.2.3", "1.2", "1", "1.2.3.4", "01.2.3", "1.0.0-", "*",
        ] {
            assert_eq!(crates(text), Err(InvalidVersion(text.to_owned())), "{text}");
        }
        let ok = |text: &str| crates(text).expect("valid crate version");
        // RustSec's `0.0.0-0` is the lowest version there is.
        assert!(ok("0.0.0-0") < ok("0.0.0-alpha"));
        assert!(ok("0.0.0-0") < ok("0.0.0"));
        assert!(ok("1.0.0-alpha.2") < ok("1.0.0-alpha.10"));
        assert!(ok("1.0.0-alpha.10") < ok("1.0.0-alpha.beta"));
        assert_eq!(ok("1.0.0+build.1"), ok("1.0.0"));
        assert_eq!(ok(" 1.0.0 "), ok("1.0.0"));
        assert!(ok("1.0.0-rc.1").is_prerelease());
        assert_eq!(ok("0.9.3").major(), 0);
    }

    #[test]
    fn pypi_versions_are_pep_440() {
        let pypi = |text: &str| Version::parse(Ecosystem::PyPI, text).expect("valid PEP 440");
        assert!(pypi("1.0.dev0") < pypi("1.0a1"));
        assert!(pypi("1.0rc1") < pypi("1.0"));
        assert!(pypi("1.0") < pypi("1.0+local"));
        assert!(pypi("1.0+local") < pypi("1.0.post1"));
        assert!(pypi("1!1.0") > pypi("2.0"));
        assert_eq!(pypi("1.0"), pypi("1.0.0"));
        assert_eq!(pypi("1"), pypi("1.0"));
        assert!(pypi("2.0b3").is_prerelease());
        assert!(!pypi("2.0.post3").is_prerelease());
        assert_eq!(pypi("2!4.5").major(), 4);
        assert_eq!(
            Version::parse(Ecosystem::PyPI, "1.0-foo"),
            Err(InvalidVersion("1.0-foo".to_owned()))
        );
    }

    #[test]
    fn accessors() {
        assert!(npm("2.0.0-rc.1").is_prerelease());
        assert!(!npm("2.0.0+build").is_prerelease());
        assert_eq!(npm("7.1.2").major(), 7);
    }
}
