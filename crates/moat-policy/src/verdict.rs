use moat_advisories::{Ecosystem, Severity};

/// What the gate does with a package or version.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Serve it.
    Allow,
    /// Serve it, and say why it is risky.
    Warn,
    /// Refuse it (403 with the reason).
    Block,
}

/// A stable rule id. The spelling (`moat.vulnerable`, …) appears unchanged in block messages,
/// HTTP bodies, audit records and docs: never rename one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum RuleId {
    /// A malicious-package advisory covers it. Never waivable.
    #[serde(rename = "moat.malicious")]
    Malicious,
    /// A vulnerability advisory at or above the policy threshold covers it.
    #[serde(rename = "moat.vulnerable")]
    Vulnerable,
    /// Published fewer than `[age] min-days` days ago, or (per `[age] unknown`) with no publish
    /// time at all.
    #[serde(rename = "moat.too-new")]
    TooNew,
    /// A near miss of a popular name.
    #[serde(rename = "moat.typosquat")]
    Typosquat,
    /// Named in a `[[deny]]` entry.
    #[serde(rename = "moat.denied")]
    Denied,
    /// The policy could not decide (an evaluation error): fails closed.
    #[serde(rename = "moat.error")]
    Error,
    /// A sandbox's forward-proxy request to a host the `[egress] allow` list does not admit.
    /// Not a package rule: it never appears in a package verdict and cannot be waived.
    #[serde(rename = "moat.egress")]
    Egress,
}

impl RuleId {
    /// The stable spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::Malicious => "moat.malicious",
            RuleId::Vulnerable => "moat.vulnerable",
            RuleId::TooNew => "moat.too-new",
            RuleId::Typosquat => "moat.typosquat",
            RuleId::Denied => "moat.denied",
            RuleId::Error => "moat.error",
            RuleId::Egress => "moat.egress",
        }
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An advisory as a verdict reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdvisoryRef {
    /// OSV id.
    pub id: String,
    /// Aliases (CVE, GHSA, …).
    pub aliases: Vec<String>,
    /// Summary line.
    pub summary: String,
    /// Severity, `None` when unknown.
    pub severity: Option<Severity>,
    /// Whether it is a malicious-package record.
    pub malicious: bool,
    /// Versions that fix it, in order.
    pub fixed: Vec<String>,
}

/// The waiver that skipped a finding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WaiverRef {
    /// The waiver's `until` date (`YYYY-MM-DD`).
    pub until: String,
    /// The waiver's reason.
    pub reason: String,
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// Which rule.
    pub rule: RuleId,
    /// What this finding asks for (a waived finding still says what it would have done).
    pub action: Action,
    /// One human line, lowercase, no trailing period (e.g. `critical: prototype pollution in minimist`).
    pub message: String,
    /// Advisories involved (empty for name rules).
    pub advisories: Vec<AdvisoryRef>,
    /// For `moat.typosquat`: the popular name meant.
    pub did_you_mean: Option<String>,
    /// Set when a waiver skipped this finding; a waived finding does not count towards the action.
    pub waived: Option<WaiverRef>,
}

/// The decision on one package (version `None`: name-level rules only) or one version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// Ecosystem.
    pub ecosystem: Ecosystem,
    /// Package name as requested.
    pub package: String,
    /// The version, or `None` for a whole-package verdict.
    pub version: Option<String>,
    /// The strongest action among findings that were not waived (`Allow` when none).
    pub action: Action,
    /// Every rule that fired, waived ones included, strongest first.
    pub findings: Vec<Finding>,
    /// Up to three approved versions to use instead (filled when blocked and a package's
    /// versions are known).
    pub approved: Vec<String>,
}

impl Verdict {
    /// The rule ids of unwaived findings, strongest first.
    pub fn rule_ids(&self) -> Vec<RuleId> {
        self.unwaived().map(|finding| finding.rule).collect()
    }

    /// Advisory ids of unwaived findings.
    pub fn advisory_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for advisory in self.unwaived().flat_map(|finding| &finding.advisories) {
            if !ids.contains(&advisory.id) {
                ids.push(advisory.id.clone());
            }
        }
        ids
    }

    /// The one-line block message: printable ASCII, at most 300 bytes, starting `moat: blocked `.
    /// Example:
    /// `moat: blocked minimist@1.2.5 (moat.vulnerable): GHSA-xvch-5gv4-984h (critical, prototype pollution in minimist); approved: minimist@1.2.8; why: http://127.0.0.1:7070/-/why/npm/minimist/1.2.5`
    /// `why_url` is appended as given; the rest is shortened first when over the limit.
    pub fn block_message(&self, why_url: &str) -> String {
        crate::message::block_message(self, why_url)
    }

    /// Findings no waiver skipped, strongest first.
    pub(crate) fn unwaived(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|finding| finding.waived.is_none())
    }
}
