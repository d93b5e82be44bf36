//! Evaluation: a name, or a package with its versions, against the policy.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use moat_advisories::{AdvisoryDb, Ecosystem, Match, PopularNames, Version};

use crate::approved::Approved;
use crate::policy::Waiver;
use crate::rules;
use crate::spec::VersionKey;
use crate::{Action, Finding, Policy, RuleId, Verdict, WaiverRef};

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
    /// When it was published, if the registry says. Without it the age rule cannot be
    /// satisfied: `[age] unknown` decides (warn by default).
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
        let key = ecosystem.normalize_name(name);
        let waivers = self.active_waivers(ctx, ecosystem, &key);
        let mut findings = self.name_findings(ctx, ecosystem, name, &key);
        apply_waivers(&mut findings, &waivers, None);
        verdict(ecosystem, name, None, findings)
    }

    /// Every rule for every version of a package, plus approved alternatives for blocked ones.
    pub fn evaluate_package(
        &self,
        ctx: &Context<'_>,
        ecosystem: Ecosystem,
        name: &str,
        versions: &[VersionInfo],
    ) -> PackageEvaluation {
        let key = ecosystem.normalize_name(name);
        let waivers = self.active_waivers(ctx, ecosystem, &key);
        let name_findings = self.name_findings(ctx, ecosystem, name, &key);
        let mut package_findings = name_findings.clone();
        apply_waivers(&mut package_findings, &waivers, None);
        let package = verdict(ecosystem, name, None, package_findings);

        // One pass for the data of every version, so the error rule can see the whole package.
        let parsed: Vec<Option<Version>> = versions
            .iter()
            .map(|info| Version::parse(ecosystem, &info.version).ok())
            .collect();
        let matches: Vec<Vec<Match<'_>>> = versions
            .iter()
            .map(|info| ctx.advisories.matches(ecosystem, name, &info.version))
            .collect();
        // A version that cannot be ordered cannot be checked against ranges: if the package has
        // any advisory at all, refusing is the only safe answer.
        let has_advisories =
            parsed.iter().any(Option::is_none) && ctx.advisories.has_advisories(ecosystem, name);

        let mut verdicts: Vec<Verdict> = Vec::with_capacity(versions.len());
        for ((info, parsed), matches) in versions.iter().zip(&parsed).zip(&matches) {
            let version = VersionKey {
                text: &info.version,
                parsed: parsed.as_ref(),
            };
            let mut findings = name_findings.clone();
            self.version_findings(ecosystem, &key, &version, matches, &mut findings);
            findings.extend(rules::too_new(&self.settings, ctx.now, info.published));
            if parsed.is_none() && has_advisories {
                findings.push(rules::unorderable(&info.version));
            }
            apply_waivers(&mut findings, &waivers, Some(&version));
            verdicts.push(verdict(ecosystem, name, Some(&info.version), findings));
        }

        let approved = Approved::new(&verdicts, &parsed);
        for (index, verdict) in verdicts.iter_mut().enumerate() {
            if verdict.action == Action::Block {
                verdict.approved = approved.alternatives(index, verdict, &parsed);
            }
        }
        PackageEvaluation {
            package,
            newest_approved: approved.newest(),
            versions: verdicts
                .into_iter()
                .filter_map(|verdict| Some((verdict.version.clone()?, verdict)))
                .collect(),
        }
    }

    /// Findings decided by the name alone (not yet waived).
    fn name_findings(
        &self,
        ctx: &Context<'_>,
        ecosystem: Ecosystem,
        name: &str,
        key: &str,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        findings.extend(self.denied(ecosystem, key, None));
        let malicious = ctx.advisories.malicious_package(ecosystem, name);
        findings.extend(rules::malicious(
            malicious.map(|advisory| (advisory, Vec::new())),
        ));
        findings.extend(self.typosquat(ctx, ecosystem, name));
        findings
    }

    /// Add the advisory and deny findings of one version to `findings` (which holds the
    /// name-level ones): one finding per rule.
    fn version_findings(
        &self,
        ecosystem: Ecosystem,
        key: &str,
        version: &VersionKey<'_>,
        matches: &[Match<'_>],
        findings: &mut Vec<Finding>,
    ) {
        if !has_rule(findings, RuleId::Denied) {
            findings.extend(self.denied(ecosystem, key, Some(version)));
        }
        let (malicious, vulnerable): (Vec<&Match<'_>>, Vec<&Match<'_>>) =
            matches.iter().partition(|found| found.advisory.malicious);
        let known_malicious = findings
            .iter()
            .find(|finding| finding.rule == RuleId::Malicious)
            .map(|finding| {
                finding
                    .advisories
                    .iter()
                    .map(|advisory| advisory.id.clone())
                    .collect::<Vec<_>>()
            });
        let malicious = malicious
            .into_iter()
            .filter(|found| {
                known_malicious
                    .as_ref()
                    .is_none_or(|ids| !ids.contains(&found.advisory.id))
            })
            .map(|found| (found.advisory, found.fixed.clone()));
        if let Some(finding) = rules::malicious(malicious) {
            match findings
                .iter_mut()
                .find(|existing| existing.rule == RuleId::Malicious)
            {
                Some(existing) => existing.advisories.extend(finding.advisories),
                None => findings.push(finding),
            }
        }
        findings.extend(rules::vulnerable(&self.settings, &vulnerable));
    }

    /// The waivers naming this package that still apply on the UTC date of `ctx.now`.
    fn active_waivers(&self, ctx: &Context<'_>, ecosystem: Ecosystem, key: &str) -> Vec<&Waiver> {
        let today = ctx.now.to_zoned(jiff::tz::TimeZone::UTC).date();
        self.waivers
            .iter()
            .filter(|waiver| waiver.spec.names_package(ecosystem, key) && today <= waiver.until)
            .collect()
    }
}

/// Whether `findings` has one of `rule`.
fn has_rule(findings: &[Finding], rule: RuleId) -> bool {
    findings.iter().any(|finding| finding.rule == rule)
}

/// Mark findings a waiver skips. Malicious, denied and error findings are never waived.
fn apply_waivers(findings: &mut [Finding], waivers: &[&Waiver], version: Option<&VersionKey<'_>>) {
    for finding in findings.iter_mut() {
        match finding.rule {
            RuleId::Malicious | RuleId::Denied | RuleId::Error | RuleId::Egress => continue,
            RuleId::Vulnerable | RuleId::TooNew | RuleId::Typosquat => {}
        }
        let waiver = waivers
            .iter()
            .filter(|waiver| waiver.rule == finding.rule && waiver.spec.covers_version(version))
            .max_by(|a, b| (a.until, &a.reason).cmp(&(b.until, &b.reason)));
        finding.waived = waiver.map(|waiver| WaiverRef {
            until: waiver.until.to_string(),
            reason: waiver.reason.clone(),
        });
    }
}

/// Tie-break order among findings of the same action.
fn rule_rank(rule: RuleId) -> u8 {
    match rule {
        RuleId::Denied => 0,
        RuleId::Malicious => 1,
        RuleId::Typosquat => 2,
        RuleId::Vulnerable => 3,
        RuleId::TooNew => 4,
        RuleId::Error => 5,
        RuleId::Egress => 6,
    }
}

/// Sort the findings (unwaived first, strongest first) and take the strongest unwaived action.
fn verdict(
    ecosystem: Ecosystem,
    name: &str,
    version: Option<&str>,
    mut findings: Vec<Finding>,
) -> Verdict {
    findings.sort_by_key(|finding| {
        (
            finding.waived.is_some(),
            Reverse(finding.action),
            rule_rank(finding.rule),
        )
    });
    let action = findings
        .iter()
        .filter(|finding| finding.waived.is_none())
        .map(|finding| finding.action)
        .max()
        .unwrap_or(Action::Allow);
    Verdict {
        ecosystem,
        package: name.to_owned(),
        version: version.map(str::to_owned),
        action,
        findings,
        approved: Vec::new(),
    }
}
