//! Typosquat checks: is a name a near miss of a popular name it is not?

use std::collections::HashMap;
use std::path::Path;

use crate::{Ecosystem, Error};

/// How a name resembles a popular one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TyposquatKind {
    /// Two adjacent characters swapped (`lodahs` for `lodash`).
    AdjacentSwap,
    /// One character inserted, deleted or replaced (`expresss` for `express`).
    OneEdit,
    /// Same name but for separators `-`, `_`, `.` (`cross_env` for `cross-env`).
    Separator,
    /// Scope dropped, added or misspelt (`types-node` for `@types/node`).
    Scope,
    /// A `py`/`python` prefix or suffix added or dropped (PyPI).
    PyPrefix,
}

/// A near miss: the popular name it resembles and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Typosquat {
    /// The popular name ("did you mean …"), spelt as the list spells it (`serde_json`, not the
    /// normalised `serde-json`).
    pub target: String,
    /// The resemblance.
    pub kind: TyposquatKind,
}

/// The names worth impersonating in one ecosystem, most popular first.
///
/// Built once; [`PopularNames::check`] then costs a few hash lookups per call: every popular
/// name's single-character deletions are indexed (SymSpell style), so one-edit and
/// adjacent-swap candidates are found without scanning the list.
#[derive(Debug, Clone)]
pub struct PopularNames {
    ecosystem: Ecosystem,
    /// Names normalised with [`Ecosystem::normalize_name`], duplicates dropped, most popular
    /// first.
    names: Vec<String>,
    /// The same names spelt as listed (what "did you mean" shows).
    listed: Vec<String>,
    /// Normalised name → rank (index into `names`).
    rank: HashMap<String, u32>,
    /// A name or one of its single-character deletions → ranks of names producing it.
    deletions: HashMap<String, Vec<u32>>,
    /// Name without `-`, `_`, `.` → best rank.
    squashed: HashMap<String, u32>,
    /// npm: a scoped name without `@`, `/` and separators → best rank.
    scope_squashed: HashMap<String, u32>,
    /// npm: package part of a scoped name → (scope, rank) pairs.
    scoped_by_package: HashMap<String, Vec<(String, u32)>>,
}

impl Default for PopularNames {
    fn default() -> Self {
        PopularNames::from_names(Ecosystem::Npm, std::iter::empty::<&str>())
    }
}

/// Shortest popular name that adjacent swaps are checked against.
const MIN_SWAP_LEN: usize = 4;
/// Shortest popular name that single edits are checked against.
const MIN_EDIT_LEN: usize = 5;
/// Shortest popular scope that misspelt scopes are checked against (swap, then edit).
const MIN_SCOPE_SWAP_LEN: usize = 3;
const MIN_SCOPE_EDIT_LEN: usize = 4;
/// Shortest base name a `py`/`python` affix may be added to or dropped from.
const MIN_PY_BASE_LEN: usize = 3;

const PY_PREFIXES: [&str; 4] = ["python-", "python", "py-", "py"];
const PY_SUFFIXES: [&str; 4] = ["-python", "python", "-py", "py"];

fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .collect()
}

fn squash_scope(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | '@' | '/'))
        .collect()
}

/// `@scope/package` → (`scope`, `package`).
fn split_scope(name: &str) -> Option<(&str, &str)> {
    let (scope, package) = name.strip_prefix('@')?.split_once('/')?;
    (!scope.is_empty() && !package.is_empty()).then_some((scope, package))
}

/// Every string obtained by deleting one character of `chars`.
fn deletions(chars: &[char]) -> impl Iterator<Item = String> + '_ {
    (0..chars.len()).map(move |skip| {
        chars
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != skip)
            .map(|(_, c)| *c)
            .collect()
    })
}

/// Same length, identical but for two adjacent characters swapped.
fn is_adjacent_swap(a: &[char], b: &[char]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    matches!(differ.as_slice(), [i, j] if *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i])
}

/// Levenshtein distance exactly 1.
fn is_one_edit(a: &[char], b: &[char]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => (0..a.len()).filter(|&i| a[i] != b[i]).count() == 1,
        1 => {
            let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
            short[prefix..] == long[prefix + 1..]
        }
        _ => false,
    }
}

/// The best (lowest-rank) candidate seen so far; earlier kinds win ties.
#[derive(Default)]
struct Best(Option<(u32, TyposquatKind)>);

impl Best {
    fn offer(&mut self, rank: u32, kind: TyposquatKind) {
        if self.0.is_none_or(|(best, _)| rank < best) {
            self.0 = Some((rank, kind));
        }
    }
}

impl PopularNames {
    /// From a list of names (most popular first).
    pub fn from_names<I, S>(ecosystem: Ecosystem, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut popular = PopularNames {
            ecosystem,
            names: Vec::new(),
            listed: Vec::new(),
            rank: HashMap::new(),
            deletions: HashMap::new(),
            squashed: HashMap::new(),
            scope_squashed: HashMap::new(),
            scoped_by_package: HashMap::new(),
        };
        for listed in names {
            let listed = listed.as_ref().trim();
            let name = ecosystem.normalize_name(listed);
            if name.is_empty() || popular.rank.contains_key(&name) {
                continue;
            }
            let rank = popular.names.len() as u32;
            popular.index(&name, rank);
            popular.rank.insert(name.clone(), rank);
            popular.names.push(name);
            popular.listed.push(listed.to_owned());
        }
        popular
    }

    fn index(&mut self, name: &str, rank: u32) {
        let chars: Vec<char> = name.chars().collect();
        if chars.len() >= MIN_SWAP_LEN {
            for key in std::iter::once(name.to_owned()).chain(deletions(&chars)) {
                let ranks = self.deletions.entry(key).or_default();
                if ranks.last() != Some(&rank) {
                    ranks.push(rank);
                }
            }
        }
        self.squashed.entry(squash(name)).or_insert(rank);
        if let Some((scope, package)) = split_scope(name) {
            self.scope_squashed
                .entry(squash_scope(name))
                .or_insert(rank);
            self.scoped_by_package
                .entry(package.to_owned())
                .or_default()
                .push((scope.to_owned(), rank));
        }
    }

    /// Read a list file: one name per line, most popular first; blank lines and `#` comments skipped.
    pub fn load(path: &Path, ecosystem: Ecosystem) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let names = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'));
        Ok(PopularNames::from_names(ecosystem, names))
    }

    /// The ecosystem whose names these are.
    pub fn ecosystem(&self) -> Ecosystem {
        self.ecosystem
    }

    /// Whether `name` is on the list (compared normalised). Names on the list are never flagged.
    pub fn contains(&self, name: &str) -> bool {
        self.rank
            .contains_key(&self.ecosystem.normalize_name(name.trim()))
    }

    /// The popular name `name` is a near miss of, if any (the most popular one when several).
    pub fn check(&self, name: &str) -> Option<Typosquat> {
        let name = self.ecosystem.normalize_name(name.trim());
        if name.is_empty() || self.rank.contains_key(&name) {
            return None;
        }
        let mut best = Best::default();
        if let Some(&rank) = self.squashed.get(&squash(&name)) {
            best.offer(rank, TyposquatKind::Separator);
        }
        match self.ecosystem {
            Ecosystem::Npm => self.check_scope(&name, &mut best),
            Ecosystem::PyPI => self.check_py_affix(&name, &mut best),
            Ecosystem::CratesIo => {}
        }
        self.check_edits(&name, &mut best);
        let (rank, kind) = best.0?;
        Some(Typosquat {
            target: self.listed.get(rank as usize)?.clone(),
            kind,
        })
    }

    /// Adjacent swaps and single edits, through the deletion index.
    fn check_edits(&self, name: &str, best: &mut Best) {
        let chars: Vec<char> = name.chars().collect();
        let mut candidates: Vec<u32> = Vec::new();
        for key in std::iter::once(name.to_owned()).chain(deletions(&chars)) {
            if let Some(ranks) = self.deletions.get(&key) {
                candidates.extend(ranks);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        for rank in candidates {
            let Some(popular) = self.names.get(rank as usize) else {
                continue;
            };
            let popular: Vec<char> = popular.chars().collect();
            if popular.len() >= MIN_SWAP_LEN && is_adjacent_swap(&chars, &popular) {
                best.offer(rank, TyposquatKind::AdjacentSwap);
            } else if popular.len() >= MIN_EDIT_LEN && is_one_edit(&chars, &popular) {
                best.offer(rank, TyposquatKind::OneEdit);
            }
        }
    }

    /// npm scope confusion: a dropped scope (`types-node` for `@types/node`) or a misspelt one
    /// (`@typse/node`).
    fn check_scope(&self, name: &str, best: &mut Best) {
        let Some((scope, package)) = split_scope(name) else {
            if let Some(&rank) = self.scope_squashed.get(&squash_scope(name)) {
                best.offer(rank, TyposquatKind::Scope);
            }
            return;
        };
        let Some(scoped) = self.scoped_by_package.get(package) else {
            return;
        };
        let scope: Vec<char> = scope.chars().collect();
        for (popular_scope, rank) in scoped {
            let popular_scope: Vec<char> = popular_scope.chars().collect();
            let swap = popular_scope.len() >= MIN_SCOPE_SWAP_LEN
                && is_adjacent_swap(&scope, &popular_scope);
            let edit =
                popular_scope.len() >= MIN_SCOPE_EDIT_LEN && is_one_edit(&scope, &popular_scope);
            if swap || edit {
                best.offer(*rank, TyposquatKind::Scope);
            }
        }
    }

    /// PyPI: a `py`/`python` prefix or suffix added to or dropped from a popular name.
    fn check_py_affix(&self, name: &str, best: &mut Best) {
        let mut variants: Vec<String> = Vec::new();
        for prefix in PY_PREFIXES {
            if let Some(base) = name.strip_prefix(prefix) {
                variants.push(base.to_owned());
            }
            if name.len() >= MIN_PY_BASE_LEN {
                variants.push(format!("{prefix}{name}"));
            }
        }
        for suffix in PY_SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix) {
                variants.push(base.to_owned());
            }
            if name.len() >= MIN_PY_BASE_LEN {
                variants.push(format!("{name}{suffix}"));
            }
        }
        for variant in variants {
            let base_len = variant.len().min(name.len());
            if base_len < MIN_PY_BASE_LEN {
                continue;
            }
            if let Some(&rank) = self.rank.get(&variant) {
                best.offer(rank, TyposquatKind::PyPrefix);
            }
        }
    }

    /// How many names the list holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_data() -> std::path::PathBuf {
        std::env::var_os("MOAT_SHARED_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).to_owned()
            })
    }

    fn popular(ecosystem: Ecosystem) -> PopularNames {
        let path = shared_data()
            .join("popular")
            .join(format!("{}.txt", ecosystem.as_str()));
        PopularNames::load(&path, ecosystem).expect("popular list readable")
    }

    fn squat(target: &str, kind: TyposquatKind) -> Option<Typosquat> {
        Some(Typosquat {
            target: target.to_owned(),
            kind,
        })
    }

    #[test]
    fn npm_near_misses() {
        let npm = popular(Ecosystem::Npm);
        assert_eq!(npm.len(), 5000);
        assert_eq!(
            npm.check("lodahs"),
            squat("lodash", TyposquatKind::AdjacentSwap)
        );
        assert_eq!(
            npm.check("expresss"),
            squat("express", TyposquatKind::OneEdit)
        );
        assert_eq!(
            npm.check("exprss"),
            squat("express", TyposquatKind::OneEdit)
        );
        assert_eq!(
            npm.check("cross_env"),
            squat("cross-env", TyposquatKind::Separator)
        );
        assert_eq!(
            npm.check("crossenv"),
            squat("cross-env", TyposquatKind::Separator)
        );
        assert_eq!(
            npm.check("types-node"),
            squat("@types/node", TyposquatKind::Scope)
        );
        assert_eq!(
            npm.check("typesnode"),
            squat("@types/node", TyposquatKind::Scope)
        );
        assert_eq!(
            npm.check("types_node"),
            squat("@types/node", TyposquatKind::Scope)
        );
        assert_eq!(
            npm.check("@typse/node"),
            squat("@types/node", TyposquatKind::Scope)
        );
        assert_eq!(
            npm.check("@tpyes/node"),
            squat("@types/node", TyposquatKind::Scope)
        );
    }

    #[test]
    fn popular_names_are_never_flagged() {
        for ecosystem in Ecosystem::ALL {
            let list = popular(ecosystem);
            for name in &list.names {
                assert!(list.contains(name), "{name}");
                assert_eq!(list.check(name), None, "{ecosystem} {name}");
            }
        }
        let npm = popular(Ecosystem::Npm);
        assert_eq!(npm.check("LODASH"), None, "npm compares names lowercased");
    }

    #[test]
    fn short_or_unrelated_names_are_not_flagged() {
        let npm = popular(Ecosystem::Npm);
        for name in ["mz", "qx", "zzzq", "moat-internal-tool", "", "   "] {
            assert_eq!(npm.check(name), None, "{name}");
        }
    }

    #[test]
    fn the_most_popular_target_wins() {
        let list = PopularNames::from_names(Ecosystem::Npm, ["abcde", "abcdf", "abcdg"]);
        // `abcdx` is one edit from all three.
        assert_eq!(list.check("abcdx"), squat("abcde", TyposquatKind::OneEdit));
        let reversed = PopularNames::from_names(Ecosystem::Npm, ["abcdg", "abcdf", "abcde"]);
        assert_eq!(
            reversed.check("abcdx"),
            squat("abcdg", TyposquatKind::OneEdit)
        );
    }

    #[test]
    fn length_thresholds() {
        let list = PopularNames::from_names(Ecosystem::Npm, ["ms", "abc", "abcd", "abcde"]);
        assert_eq!(list.check("sm"), None, "no swaps below four characters");
        assert_eq!(list.check("mss"), None, "no edits below five characters");
        assert_eq!(list.check("acb"), None);
        assert_eq!(
            list.check("abdc"),
            squat("abcd", TyposquatKind::AdjacentSwap)
        );
        assert_eq!(list.check("abcdd"), squat("abcde", TyposquatKind::OneEdit));
        assert_eq!(
            list.check("abxd"),
            None,
            "substitution needs five characters"
        );
        assert_eq!(list.check("a-b-c"), squat("abc", TyposquatKind::Separator));
    }

    #[test]
    fn pypi_affixes() {
        let pypi = popular(Ecosystem::PyPI);
        assert_eq!(
            pypi.check("pyrequests"),
            squat("requests", TyposquatKind::PyPrefix)
        );
        assert_eq!(
            pypi.check("python-requests"),
            squat("requests", TyposquatKind::PyPrefix)
        );
        assert_eq!(
            pypi.check("requests-py"),
            squat("requests", TyposquatKind::PyPrefix)
        );
        assert_eq!(pypi.check("Requests"), None, "PEP 503 normalised");
        assert_eq!(
            pypi.check("reqeusts"),
            squat("requests", TyposquatKind::AdjacentSwap)
        );
    }

    #[test]
    fn pypi_pep503_spellings_are_the_same_project() {
        let pypi = popular(Ecosystem::PyPI);
        for same in [
            "python-dateutil",
            "python_dateutil",
            "Python.Dateutil",
            "python__dateutil",
            "Python-DateUtil",
            " requests ",
        ] {
            assert!(pypi.contains(same), "{same}");
            assert_eq!(pypi.check(same), None, "{same} is the same project");
        }
        assert_eq!(
            pypi.check("pythondateutil"),
            squat("python-dateutil", TyposquatKind::Separator)
        );
        assert_eq!(
            pypi.check("python-dateutl"),
            squat("python-dateutil", TyposquatKind::OneEdit)
        );
        assert_eq!(
            pypi.check("reqests"),
            squat("requests", TyposquatKind::OneEdit)
        );
        assert_eq!(
            pypi.check("Reqeusts"),
            squat("requests", TyposquatKind::AdjacentSwap),
            "compared after PEP 503 normalisation"
        );
    }

    #[test]
    fn crates_dash_and_underscore_are_the_same_crate() {
        let crates = popular(Ecosystem::CratesIo);
        for same in ["serde_json", "serde-json", "Serde_Json", "SERDE-JSON"] {
            assert!(crates.contains(same), "{same}");
            assert_eq!(crates.check(same), None, "{same} is the same crate");
        }
        assert_eq!(
            crates.check("serdejson"),
            squat("serde_json", TyposquatKind::Separator)
        );
        assert_eq!(
            crates.check("serde_jsonn"),
            squat("serde_json", TyposquatKind::OneEdit)
        );
        assert_eq!(
            crates.check("serde-jsno"),
            squat("serde_json", TyposquatKind::AdjacentSwap)
        );
        assert_eq!(
            crates.check("serde.json"),
            squat("serde_json", TyposquatKind::Separator),
            "`.` is not a separator crates.io folds"
        );
    }

    #[test]
    fn crates_fold_separators() {
        let crates = popular(Ecosystem::CratesIo);
        assert_eq!(
            crates.check("cfg_if"),
            None,
            "`_` and `-` are the same crate"
        );
        assert_eq!(
            crates.check("cfgif"),
            squat("cfg-if", TyposquatKind::Separator)
        );
    }

    #[test]
    fn one_edit_and_swap_helpers() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(is_one_edit(&c("abc"), &c("abd")));
        assert!(is_one_edit(&c("abc"), &c("abxc")));
        assert!(is_one_edit(&c("abxc"), &c("abc")));
        assert!(!is_one_edit(&c("abc"), &c("abc")));
        assert!(!is_one_edit(&c("abc"), &c("bca")));
        assert!(is_adjacent_swap(&c("abcd"), &c("abdc")));
        assert!(!is_adjacent_swap(&c("abcd"), &c("dbca")));
        assert!(!is_adjacent_swap(&c("abcd"), &c("abcd")));
    }
}
