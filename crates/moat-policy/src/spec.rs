//! Package specs as the policy file writes them: `ECO:NAME` or `ECO:NAME@VERSION`.

use std::fmt;

use moat_advisories::{Ecosystem, Version};

/// One package, or one exact version of it, named by a `[[deny]]` or `[[waiver]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PackageSpec {
    /// The ecosystem.
    pub(crate) ecosystem: Ecosystem,
    /// The name as written (shown back to people).
    pub(crate) name: String,
    /// The name normalised by the ecosystem's rules (compared).
    pub(crate) key: String,
    /// An exact version, or `None` for every version.
    pub(crate) version: Option<String>,
}

impl PackageSpec {
    /// Parse `ECO:NAME` or `ECO:NAME@VERSION` (npm scopes allowed: `npm:@scope/name@1.0.0`).
    pub(crate) fn parse(text: &str) -> Result<PackageSpec, String> {
        let text = text.trim();
        let Some((ecosystem, rest)) = text.split_once(':') else {
            return Err(format!(
                "package `{text}` has no ecosystem (expected ECO:NAME or ECO:NAME@VERSION, ECO one of npm, PyPI, crates.io)"
            ));
        };
        let ecosystem: Ecosystem = ecosystem
            .parse()
            .map_err(|error| format!("package `{text}`: {error}"))?;
        // The version separator is the last `@` that is not the first character (npm scopes).
        let (name, version) = match rest.rfind('@') {
            Some(at) if at > 0 => (&rest[..at], Some(&rest[at + 1..])),
            Some(_) | None => (rest, None),
        };
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("package `{text}` has an empty or malformed name"));
        }
        let bad_scope = name.strip_prefix('@').is_some_and(|scoped| {
            !scoped
                .split_once('/')
                .is_some_and(|(scope, base)| !scope.is_empty() && !base.is_empty())
        });
        if ecosystem == Ecosystem::Npm && bad_scope {
            return Err(format!(
                "package `{text}` has a malformed npm scope (expected @scope/name)"
            ));
        }
        let version = match version {
            None => None,
            Some("") => return Err(format!("package `{text}` has an empty version after `@`")),
            Some(version) => {
                Version::parse(ecosystem, version)
                    .map_err(|error| format!("package `{text}`: {error}"))?;
                Some(version.to_owned())
            }
        };
        Ok(PackageSpec {
            ecosystem,
            name: name.to_owned(),
            key: ecosystem.normalize_name(name),
            version,
        })
    }

    /// Whether this spec names the package `key` (already normalised) of `ecosystem`.
    pub(crate) fn names_package(&self, ecosystem: Ecosystem, key: &str) -> bool {
        self.ecosystem == ecosystem && self.key == key
    }

    /// Whether this spec covers `version` (`None`: the whole package, which only a spec
    /// without version covers).
    pub(crate) fn covers_version(&self, version: Option<&VersionKey<'_>>) -> bool {
        match (&self.version, version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.equals(self.ecosystem, mine),
        }
    }
}

impl fmt::Display for PackageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ecosystem, self.key)?;
        match &self.version {
            Some(version) => write!(f, "@{version}"),
            None => Ok(()),
        }
    }
}

/// A version being evaluated: its text and, when it parses, its parsed form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VersionKey<'a> {
    /// As the registry spells it.
    pub(crate) text: &'a str,
    /// Parsed, when the ecosystem's rules accept it.
    pub(crate) parsed: Option<&'a Version>,
}

impl VersionKey<'_> {
    /// Equal to `other` (a spec's version): as versions when both parse (`3.2` = `3.2.0` on
    /// PyPI), else as text.
    fn equals(&self, ecosystem: Ecosystem, other: &str) -> bool {
        if self.text == other {
            return true;
        }
        match (self.parsed, Version::parse(ecosystem, other)) {
            (Some(mine), Ok(theirs)) => *mine == theirs,
            (Some(_), Err(_)) | (None, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_version() {
        let spec = PackageSpec::parse("PyPI:Django@3.2.0").unwrap();
        assert_eq!(spec.ecosystem, Ecosystem::PyPI);
        assert_eq!(spec.name, "Django");
        assert_eq!(spec.key, "django");
        assert_eq!(spec.version.as_deref(), Some("3.2.0"));
        assert_eq!(spec.to_string(), "PyPI:django@3.2.0");
    }

    #[test]
    fn parses_npm_scopes() {
        let spec = PackageSpec::parse("npm:@types/node").unwrap();
        assert_eq!(spec.name, "@types/node");
        assert_eq!(spec.version, None);
        let spec = PackageSpec::parse("npm:@types/node@20.1.0").unwrap();
        assert_eq!(spec.name, "@types/node");
        assert_eq!(spec.version.as_deref(), Some("20.1.0"));
    }

    #[test]
    fn refuses_bad_specs() {
        for bad in [
            "event-stream",
            "maven:foo",
            "npm:",
            "npm:@1.0.0",
            "npm:foo@",
            "npm:foo bar",
            "npm:foo@not a version",
        ] {
            assert!(PackageSpec::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn crates_names_compare_normalised() {
        let spec = PackageSpec::parse("crates.io:Serde_JSON").unwrap();
        assert!(spec.names_package(
            Ecosystem::CratesIo,
            &Ecosystem::CratesIo.normalize_name("serde-json")
        ));
        assert!(!spec.names_package(Ecosystem::Npm, "serde-json"));
    }
}
