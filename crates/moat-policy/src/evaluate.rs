use std::collections::BTreeMap;

use moat_advisories::{AdvisoryDb, Ecosystem, PopularNames};

use crate::{Policy, Verdict};

/// What evaluation reads besides the policy. No I/O: the caller owns the data and the clock.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Advisories.
    pub advisories: &'a AdvisoryDb,
    /// The ecosystem's popular names, when typosquat checks are possible.
    pub popular: Option<&'a PopularNames>,
    /// The current time (age rule, waiver dates).
    pub now: jiff::Timestamp,
}

/// One published version, as the registry lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    /// The version string exactly as the registry spells it.
    pub version: String,
    /// When it was published, if the registry says.
    pub published: Option<jiff::Timestamp>,
}

/// The verdicts for a package and each of its versions.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageEvaluation {
    /// Name-level verdict (denied, typosquat, malicious by name). When it blocks, every
    /// version is blocked too.
    pub package: Verdict,
    /// One verdict per version given, keyed by the version string; blocked ones carry
    /// `approved` alternatives.
    pub versions: BTreeMap<String, Verdict>,
    /// The newest approved (not blocked), non-prerelease version, else the newest approved one.
    pub newest_approved: Option<String>,
}

impl Policy {
    /// Name-level rules only: `[[deny]]`, typosquat, malicious-by-name. Decides from the name
    /// alone, whether or not the upstream has the package.
    pub fn evaluate_name(&self, ctx: &Context<'_>, ecosystem: Ecosystem, name: &str) -> Verdict {
        let _ = (ctx, ecosystem, name);
        todo!()
    }

    /// Every rule for every version of a package, plus approved alternatives for blocked ones.
    pub fn evaluate_package(
        &self,
        ctx: &Context<'_>,
        ecosystem: Ecosystem,
        name: &str,
        versions: &[VersionInfo],
    ) -> PackageEvaluation {
        let _ = (ctx, ecosystem, name, versions);
        todo!()
    }
}
