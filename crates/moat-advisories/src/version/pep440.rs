//! PEP 440 versions (PyPI), parsed and ordered by the `pep440_rs` crate (uv's implementation).
//!
//! The wrapper keeps `pep440_rs` out of moat's public API: callers see [`Pep440`] only.

use std::fmt;
use std::str::FromStr;

/// A PEP 440 version: `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with the specification's
/// alternative spellings (`alpha`, `c`, `pre`, `-1` for post, `_`/`-` separators, a leading
/// `v`, any case) accepted.
///
/// Equality follows the ordering, so `1.0` equals `1.0.0` and `1.0ALPHA1` equals `1.0a1`; a
/// local version (`1.0+ubuntu1`) sorts after, and differs from, its public version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pep440(pep440_rs::Version);

impl Pep440 {
    /// Parse a version (surrounding whitespace ignored); `None` when it is not PEP 440.
    pub fn parse(text: &str) -> Option<Pep440> {
        pep440_rs::Version::from_str(text.trim()).ok().map(Pep440)
    }

    /// Whether this is a pre-release or a development release (`1.0rc1`, `1.0.dev1`,
    /// `1.0.post1.dev1`).
    pub fn is_prerelease(&self) -> bool {
        self.0.any_prerelease()
    }

    /// The first release segment.
    pub fn major(&self) -> u64 {
        self.0.release().first().copied().unwrap_or(0)
    }
}

/// The normalised form (`1.0ALPHA1` shows as `1.0a1`).
impl fmt::Display for Pep440 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::*;

    fn v(text: &str) -> Pep440 {
        Pep440::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    fn assert_ascending(chain: &[&str]) {
        for pair in chain.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn ordering_follows_pep_440_examples() {
        // The ordering example from PEP 440's "Summary of permitted suffixes and relative
        // ordering", with local versions added.
        assert_ascending(&[
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ]);
    }

    #[test]
    fn pre_post_and_dev_releases() {
        assert_ascending(&["1.0.dev0", "1.0a1", "1.0b1", "1.0rc1", "1.0", "1.0.post1"]);
        // A dev release of a post release sits between the release and the post release.
        assert_ascending(&["1.0", "1.0.post1.dev0", "1.0.post1", "1.0.1.dev0", "1.0.1"]);
        // Pre-release numbers compare numerically.
        assert_ascending(&["2.0a2", "2.0a10", "2.0b1"]);
    }

    #[test]
    fn epochs_outrank_release_numbers() {
        assert!(v("1!1.0") > v("2.0"));
        assert!(v("1!1.0") > v("2024.10.1"));
        assert!(v("1!0.1") < v("1!1.0"));
        assert!(v("2!0.0.dev0") > v("1!999"));
        assert_eq!(v("0!1.0"), v("1.0"), "epoch 0 is the default");
    }

    #[test]
    fn local_versions_follow_their_public_version() {
        assert!(v("1.0") < v("1.0+local"));
        assert_ne!(v("1.0"), v("1.0+local"));
        assert!(v("1.0+local") < v("1.0.post1"));
        assert!(v("1.0+local") < v("1.0.1"));
        assert!(v("1.0rc1+local") < v("1.0"));
        // Numeric local segments compare numerically and above alphanumeric ones.
        assert_ascending(&["1.0+abc", "1.0+abc.2", "1.0+abc.10", "1.0+1", "1.0+2"]);
        // `-` and `_` in local versions normalise to `.`.
        assert_eq!(v("1.0+ubuntu-1"), v("1.0+ubuntu.1"));
        assert_eq!(v("1.0+Ubuntu_1"), v("1.0+ubuntu.1"));
    }

    #[test]
    fn normalised_spellings_are_equal() {
        assert_eq!(v("1.0").cmp(&v("1.0.0")), Ordering::Equal);
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1.0ALPHA1"), v("1.0a1"));
        assert_eq!(v("1.0-c1"), v("1.0rc1"));
        assert_eq!(v("1.0pre1"), v("1.0rc1"));
        assert_eq!(v("1.0-1"), v("1.0.post1"));
        assert_eq!(v("1.0rev1"), v("1.0.post1"));
        assert_eq!(v("v2.0"), v("2.0"));
        assert_eq!(v("1.0.post"), v("1.0.post0"));
        assert_eq!(v("1.3.1dev"), v("1.3.1.dev0"));
        assert_eq!(v("0.8.0-alpha2"), v("0.8.0a2"));
        assert_eq!(v("  1.0\n"), v("1.0"));
        assert_eq!(v("1.0ALPHA1").to_string(), "1.0a1");
        assert_eq!(v("1.0-1").to_string(), "1.0.post1");
        // SemVer-looking text is read as PEP 440 where the grammar allows.
        assert_eq!(v("1.0.0-rc.1+build.5"), v("1.0.0rc1+build.5"));
    }

    #[test]
    fn rejects_non_pep440() {
        for text in [
            "",
            "abc",
            "1.0-foo",
            "1..0",
            "1.0+",
            "1.0+a..b",
            "1.0 beta x",
            "1.0.*",
            "==1.0",
            "1!",
            "1.0a1a2",
        ] {
            assert!(Pep440::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn prerelease_and_major() {
        assert!(v("1.0rc1").is_prerelease());
        assert!(v("1.0a1").is_prerelease());
        assert!(v("1.0.dev1").is_prerelease());
        assert!(v("1.0.post1.dev1").is_prerelease());
        assert!(!v("1.0.post1").is_prerelease());
        assert!(!v("1.0+local").is_prerelease());
        assert_eq!(v("3.2.1").major(), 3);
        assert_eq!(
            v("1!3.2.1").major(),
            3,
            "the epoch is not the major version"
        );
    }
}
