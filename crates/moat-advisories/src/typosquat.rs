//! Typosquat checks: is a name a near miss of a popular name it is not?

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
    /// The popular name ("did you mean …").
    pub target: String,
    /// The resemblance.
    pub kind: TyposquatKind,
}

/// The names worth impersonating in one ecosystem, most popular first.
#[derive(Debug, Clone, Default)]
pub struct PopularNames {
    // owner fills in
}

impl PopularNames {
    /// From a list of names (most popular first).
    pub fn from_names<I, S>(ecosystem: Ecosystem, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let _ = (ecosystem, names.into_iter().map(|s| s.as_ref().len()).count());
        todo!()
    }

    /// Read a list file: one name per line, most popular first; blank lines and `#` comments skipped.
    pub fn load(path: &Path, ecosystem: Ecosystem) -> Result<Self, Error> {
        let _ = (path, ecosystem);
        todo!()
    }

    /// Whether `name` is on the list (compared normalised). Names on the list are never flagged.
    pub fn contains(&self, name: &str) -> bool {
        let _ = name;
        todo!()
    }

    /// The popular name `name` is a near miss of, if any (the most popular one when several).
    pub fn check(&self, name: &str) -> Option<Typosquat> {
        let _ = name;
        todo!()
    }

    /// How many names the list holds.
    pub fn len(&self) -> usize {
        todo!()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
