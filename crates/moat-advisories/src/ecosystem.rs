use std::fmt;
use std::str::FromStr;

/// A package ecosystem, spelled as OSV spells it (`npm`, `PyPI`, `crates.io`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Ecosystem {
    /// The npm registry.
    #[serde(rename = "npm")]
    Npm,
    /// The Python Package Index.
    #[serde(rename = "PyPI")]
    PyPI,
    /// crates.io.
    #[serde(rename = "crates.io")]
    CratesIo,
}

impl Ecosystem {
    /// Every ecosystem moat knows, in a stable order.
    pub const ALL: [Ecosystem; 3] = [Ecosystem::Npm, Ecosystem::PyPI, Ecosystem::CratesIo];

    /// The OSV spelling: `npm`, `PyPI`, `crates.io` (also the dump and popular-list file stem).
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Npm => "npm",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::CratesIo => "crates.io",
        }
    }

    /// The name as the ecosystem compares it: npm lowercased (the registry refuses
    /// names that differ only in case) with a URL-encoded scope separator (`@scope%2fname`)
    /// decoded, PyPI PEP 503-normalised, crates.io lowercased with `_` folded to `-`. Used as
    /// the key of every name lookup.
    pub fn normalize_name(self, name: &str) -> String {
        match self {
            Ecosystem::Npm => {
                let lower = name.to_ascii_lowercase();
                if lower.starts_with('@') && lower.contains("%2f") {
                    lower.replacen("%2f", "/", 1)
                } else {
                    lower
                }
            }
            Ecosystem::PyPI => {
                let mut out = String::with_capacity(name.len());
                let mut last_sep = false;
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        if !last_sep {
                            out.push('-');
                        }
                        last_sep = true;
                    } else {
                        out.push(c.to_ascii_lowercase());
                        last_sep = false;
                    }
                }
                out
            }
            Ecosystem::CratesIo => name.to_ascii_lowercase().replace('_', "-"),
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown ecosystem name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ecosystem `{0}` (expected npm, PyPI or crates.io)")]
pub struct UnknownEcosystem(pub String);

impl FromStr for Ecosystem {
    type Err = UnknownEcosystem;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "npm" => Ok(Ecosystem::Npm),
            "pypi" => Ok(Ecosystem::PyPI),
            "crates.io" | "crates" | "cargo" => Ok(Ecosystem::CratesIo),
            _ => Err(UnknownEcosystem(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_names() {
        assert_eq!(Ecosystem::Npm.normalize_name("@Types/Node"), "@types/node");
        assert_eq!(
            Ecosystem::Npm.normalize_name("@types%2Fnode"),
            "@types/node"
        );
        assert_eq!(
            Ecosystem::Npm.normalize_name("@types%2fnode"),
            "@types/node"
        );
        assert_eq!(Ecosystem::Npm.normalize_name("cross_env"), "cross_env");
        assert_eq!(
            Ecosystem::PyPI.normalize_name("Foo__Bar.-baz"),
            "foo-bar-baz"
        );
        assert_eq!(Ecosystem::CratesIo.normalize_name("Foo_Bar"), "foo-bar");
    }

    #[test]
    fn parse_and_display() {
        for ecosystem in Ecosystem::ALL {
            assert_eq!(ecosystem.as_str().parse::<Ecosystem>(), Ok(ecosystem));
            assert_eq!(ecosystem.to_string(), ecosystem.as_str());
        }
        assert!("maven".parse::<Ecosystem>().is_err());
    }
}
