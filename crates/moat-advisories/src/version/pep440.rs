//! PEP 440 versions (PyPI): parsing of the normalisable forms and the specification's ordering.

use std::cmp::Ordering;

/// A PEP 440 version: `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, alternative spellings
/// (`alpha`, `c`, `pre`, `-1` for post, `_`/`-` separators, a leading `v`, any case) accepted.
///
/// Equality follows the ordering, so `1.0` equals `1.0.0` and `1.0ALPHA1` equals `1.0a1`.
#[derive(Debug, Clone)]
pub struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    pre: Option<(PreKind, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalSegment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PreKind {
    Alpha,
    Beta,
    Candidate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalSegment {
    Text(String),
    Number(u64),
}

impl Ord for LocalSegment {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (LocalSegment::Number(a), LocalSegment::Number(b)) => a.cmp(b),
            (LocalSegment::Text(a), LocalSegment::Text(b)) => a.cmp(b),
            // PEP 440: numeric local segments sort after alphanumeric ones.
            (LocalSegment::Number(_), LocalSegment::Text(_)) => Ordering::Greater,
            (LocalSegment::Text(_), LocalSegment::Number(_)) => Ordering::Less,
        }
    }
}

impl PartialOrd for LocalSegment {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A cursor over the lowercased version text.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn number(&mut self) -> Option<u64> {
        let end = self
            .rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (digits, rest) = self.rest.split_at(end);
        let value = digits.parse().ok()?;
        self.rest = rest;
        Some(value)
    }

    fn eat(&mut self, prefix: &str) -> bool {
        match self.rest.strip_prefix(prefix) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn separator(&mut self) -> bool {
        self.eat(".") || self.eat("-") || self.eat("_")
    }

    /// Try `[sep]word[sep][N]` for one of `words`; on success return the number (0 if absent).
    fn tagged(&mut self, words: &[&str]) -> Option<(usize, u64)> {
        let saved = self.rest;
        self.separator();
        for (index, word) in words.iter().enumerate() {
            if self.eat(word) {
                let before_sep = self.rest;
                self.separator();
                let number = match self.number() {
                    Some(number) => number,
                    None => {
                        self.rest = before_sep;
                        0
                    }
                };
                return Some((index, number));
            }
        }
        self.rest = saved;
        None
    }
}

impl Pep440 {
    /// Parse a version; `None` when it is not PEP 440.
    pub fn parse(text: &str) -> Option<Pep440> {
        let lower = text.trim().to_ascii_lowercase();
        let mut cursor = Cursor {
            rest: lower.strip_prefix('v').unwrap_or(&lower),
        };
        let first = cursor.number()?;
        let (epoch, mut release) = if cursor.eat("!") {
            (first, vec![cursor.number()?])
        } else {
            (0, vec![first])
        };
        loop {
            let saved = cursor.rest;
            if cursor.eat(".") {
                if let Some(number) = cursor.number() {
                    release.push(number);
                    continue;
                }
            }
            cursor.rest = saved;
            break;
        }
        let pre = cursor
            .tagged(&["alpha", "a", "beta", "b", "rc", "c", "preview", "pre"])
            .map(|(index, number)| {
                let kind = match index {
                    0 | 1 => PreKind::Alpha,
                    2 | 3 => PreKind::Beta,
                    _ => PreKind::Candidate,
                };
                (kind, number)
            });
        let post = match cursor.tagged(&["post", "rev", "r"]) {
            Some((_, number)) => Some(number),
            None => {
                let saved = cursor.rest;
                if cursor.eat("-") {
                    match cursor.number() {
                        Some(number) => Some(number),
                        None => {
                            cursor.rest = saved;
                            None
                        }
                    }
                } else {
                    None
                }
            }
        };
        let dev = cursor.tagged(&["dev"]).map(|(_, number)| number);
        let mut local = Vec::new();
        if cursor.eat("+") {
            for part in cursor.rest.split(['.', '-', '_']) {
                if part.is_empty() || !part.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return None;
                }
                local.push(match part.parse() {
                    Ok(number) if part.chars().all(|c| c.is_ascii_digit()) => {
                        LocalSegment::Number(number)
                    }
                    _ => LocalSegment::Text(part.to_owned()),
                });
            }
            cursor.rest = "";
        }
        if !cursor.rest.is_empty() {
            return None;
        }
        Some(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    /// Whether this is a pre-release or a development release.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// The first release segment.
    pub fn major(&self) -> u64 {
        self.release.first().copied().unwrap_or(0)
    }

    /// The release segments without trailing zeros (`1.0.0` ≡ `1`).
    fn trimmed_release(&self) -> &[u64] {
        let end = self
            .release
            .iter()
            .rposition(|&n| n != 0)
            .map_or(0, |index| index + 1);
        &self.release[..end]
    }
}

/// A key slot that can sit below or above every real value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot<T> {
    Bottom,
    Value(T),
    Top,
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| self.trimmed_release().cmp(other.trimmed_release()))
            .then_with(|| pre_key(self).cmp(&pre_key(other)))
            .then_with(|| post_key(self).cmp(&post_key(other)))
            .then_with(|| dev_key(self).cmp(&dev_key(other)))
            .then_with(|| local_key(self).cmp(&local_key(other)))
    }
}

impl PartialEq for Pep440 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pep440 {}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn pre_key(version: &Pep440) -> Slot<(PreKind, u64)> {
    match (version.pre, version.post, version.dev) {
        // `1.0.dev1` sorts before `1.0a1`.
        (None, None, Some(_)) => Slot::Bottom,
        (None, _, _) => Slot::Top,
        (Some(pre), _, _) => Slot::Value(pre),
    }
}

fn post_key(version: &Pep440) -> Slot<u64> {
    version.post.map_or(Slot::Bottom, Slot::Value)
}

fn dev_key(version: &Pep440) -> Slot<u64> {
    version.dev.map_or(Slot::Top, Slot::Value)
}

fn local_key(version: &Pep440) -> Slot<&[LocalSegment]> {
    if version.local.is_empty() {
        Slot::Bottom
    } else {
        Slot::Value(&version.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Pep440 {
        Pep440::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn ordering_follows_pep_440_examples() {
        // The ordering example from PEP 440's "Summary of permitted suffixes and relative ordering".
        let chain = [
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
        ];
        for pair in chain.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn normalised_spellings_are_equal() {
        assert_eq!(v("1.0").cmp(&v("1.0.0")), Ordering::Equal);
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_ne!(v("1.0"), v("1.0+local"));
        assert_eq!(v("1.0ALPHA1").cmp(&v("1.0a1")), Ordering::Equal);
        assert_eq!(v("1.0-c1").cmp(&v("1.0rc1")), Ordering::Equal);
        assert_eq!(v("1.0-1").cmp(&v("1.0.post1")), Ordering::Equal);
        assert_eq!(v("v2.0").cmp(&v("2.0")), Ordering::Equal);
        assert_eq!(v("1.0.post").cmp(&v("1.0.post0")), Ordering::Equal);
        assert!(v("1!0.1") > v("2.0"));
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
        ] {
            assert!(Pep440::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn prerelease_and_major() {
        assert!(v("1.0rc1").is_prerelease());
        assert!(v("1.0.dev1").is_prerelease());
        assert!(!v("1.0.post1").is_prerelease());
        assert_eq!(v("3.2.1").major(), 3);
    }
}
