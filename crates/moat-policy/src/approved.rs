//! Approved alternatives for blocked versions: the versions an agent can retry with.
//!
//! Built once per package (sorting the approved versions), then each blocked version is
//! answered in O(log n), so a packument with thousands of versions stays cheap.

use std::collections::HashMap;

use moat_advisories::Version;

use crate::{Action, Verdict};

/// At most this many alternatives per blocked version.
const MAX_ALTERNATIVES: usize = 3;

/// One approved version.
struct Candidate<'a> {
    version: &'a Version,
    text: String,
}

/// Approved versions sorted ascending, with the newest of each major.
struct Pool<'a> {
    sorted: Vec<Candidate<'a>>,
    newest_by_major: HashMap<u64, usize>,
}

impl<'a> Pool<'a> {
    fn new(mut sorted: Vec<Candidate<'a>>) -> Self {
        sorted.sort_by(|a, b| a.version.cmp(b.version));
        let mut newest_by_major = HashMap::new();
        for (position, candidate) in sorted.iter().enumerate() {
            // Ascending order: the last one seen per major is the newest.
            newest_by_major.insert(candidate.version.major(), position);
        }
        Pool {
            sorted,
            newest_by_major,
        }
    }

    fn newest(&self) -> Option<&str> {
        self.sorted.last().map(|candidate| candidate.text.as_str())
    }

    fn newest_in_major(&self, major: u64) -> Option<&str> {
        let position = *self.newest_by_major.get(&major)?;
        self.sorted
            .get(position)
            .map(|candidate| candidate.text.as_str())
    }

    fn lowest_at_least(&self, floor: &Version) -> Option<&str> {
        let position = self
            .sorted
            .partition_point(|candidate| candidate.version < floor);
        self.sorted
            .get(position)
            .map(|candidate| candidate.text.as_str())
    }
}

/// The approved (not blocked, parseable) versions of one package.
pub(crate) struct Approved<'a> {
    /// Prereleases included.
    all: Pool<'a>,
    /// Prereleases excluded.
    stable: Pool<'a>,
}

impl<'a> Approved<'a> {
    /// From the verdicts of a package's versions and the same versions parsed (same order).
    pub(crate) fn new(verdicts: &[Verdict], parsed: &'a [Option<Version>]) -> Self {
        let mut all = Vec::new();
        let mut stable = Vec::new();
        for (verdict, version) in verdicts.iter().zip(parsed) {
            let (Some(version), Some(text)) = (version, &verdict.version) else {
                continue;
            };
            match verdict.action {
                Action::Block => continue,
                Action::Allow | Action::Warn => {}
            }
            if !version.is_prerelease() {
                stable.push(Candidate {
                    version,
                    text: text.clone(),
                });
            }
            all.push(Candidate {
                version,
                text: text.clone(),
            });
        }
        Approved {
            all: Pool::new(all),
            stable: Pool::new(stable),
        }
    }

    /// The newest approved non-prerelease version, else the newest approved one.
    pub(crate) fn newest(&self) -> Option<String> {
        self.stable
            .newest()
            .or_else(|| self.all.newest())
            .map(str::to_owned)
    }

    /// Up to three alternatives for the blocked version at `index`, in order: the newest of
    /// the same major, the lowest at or above the advisory's next fix version, the newest.
    /// Prereleases are offered only for a prerelease.
    pub(crate) fn alternatives(
        &self,
        index: usize,
        verdict: &Verdict,
        parsed: &[Option<Version>],
    ) -> Vec<String> {
        let Some(blocked) = parsed.get(index).and_then(Option::as_ref) else {
            return self
                .stable
                .newest()
                .into_iter()
                .map(str::to_owned)
                .collect();
        };
        let pool = if blocked.is_prerelease() {
            &self.all
        } else {
            &self.stable
        };
        let fix = next_fix(verdict, blocked);
        let picks = [
            pool.newest_in_major(blocked.major()),
            fix.as_ref().and_then(|fix| pool.lowest_at_least(fix)),
            pool.newest(),
        ];
        let mut chosen: Vec<String> = Vec::with_capacity(MAX_ALTERNATIVES);
        for pick in picks.into_iter().flatten() {
            if chosen.len() < MAX_ALTERNATIVES && !chosen.iter().any(|seen| seen == pick) {
                chosen.push(pick.to_owned());
            }
        }
        chosen
    }
}

/// The lowest fix version above `blocked` named by the advisories of the verdict's unwaived
/// blocking findings.
fn next_fix(verdict: &Verdict, blocked: &Version) -> Option<Version> {
    verdict
        .findings
        .iter()
        .filter(|finding| finding.waived.is_none() && finding.action == Action::Block)
        .flat_map(|finding| &finding.advisories)
        .flat_map(|advisory| &advisory.fixed)
        .filter_map(|fixed| Version::parse(verdict.ecosystem, fixed).ok())
        .filter(|fixed| fixed > blocked)
        .min()
}
