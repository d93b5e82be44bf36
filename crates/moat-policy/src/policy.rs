//! The validated policy, its revision hash, and `moat policy check` warnings.

use moat_advisories::{AdvisoryDb, Severity};
use sha2::{Digest, Sha256};

use crate::spec::PackageSpec;
use crate::{EgressRules, RuleId};

/// The built-in default policy, printed by `moat policy show-default`.
pub const DEFAULT_POLICY_TOML: &str = include_str!("default-policy.toml");

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Everything but the revision.
    pub(crate) settings: Settings,
    /// `[[deny]]` entries, sorted (order carries no meaning).
    pub(crate) deny: Vec<Deny>,
    /// `[[waiver]]` entries, sorted (order carries no meaning).
    pub(crate) waivers: Vec<Waiver>,
    /// `[egress] allow`.
    pub(crate) egress: EgressRules,
    /// Hash of the above.
    revision: String,
}

/// The scalar settings of a policy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// `[advisories] block-vulnerable`.
    pub(crate) vulnerable: Threshold,
    /// `[advisories] unknown-severity`.
    pub(crate) unknown_severity: UnknownSeverity,
    /// `[advisories] require-fix`.
    pub(crate) require_fix: bool,
    /// `[age] min-days` (0 = off).
    pub(crate) min_days: u32,
    /// `[age] unknown`: what a version without a publish time does while `min-days` > 0.
    pub(crate) unknown_age: UnknownAge,
    /// `[names] typosquat`.
    pub(crate) typosquat: NameRule,
}

impl Default for Settings {
    /// The defaults written in [`DEFAULT_POLICY_TOML`].
    fn default() -> Self {
        Settings {
            vulnerable: Threshold::High,
            unknown_severity: UnknownSeverity::Block,
            require_fix: true,
            min_days: 3,
            unknown_age: UnknownAge::Warn,
            typosquat: NameRule::Block,
        }
    }
}

/// `block-vulnerable`: the lowest severity that blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Threshold {
    /// Low and above.
    Low,
    /// Moderate and above.
    Moderate,
    /// High and above.
    High,
    /// Critical only.
    Critical,
    /// Every advisory, unknown severity included.
    Any,
    /// Never block (advisories only warn).
    Off,
}

impl Threshold {
    /// The spelling in the policy file.
    fn as_str(self) -> &'static str {
        match self {
            Threshold::Low => "low",
            Threshold::Moderate => "moderate",
            Threshold::High => "high",
            Threshold::Critical => "critical",
            Threshold::Any => "any",
            Threshold::Off => "off",
        }
    }
}

/// `unknown-severity`: what an advisory without severity does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UnknownSeverity {
    /// Block (subject to `require-fix`).
    Block,
    /// Warn.
    Warn,
    /// Say nothing.
    Allow,
}

/// `[age] unknown`: what a version the registry gives no publish time for does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UnknownAge {
    /// Block it (`moat.too-new`).
    Block,
    /// Serve it with a `moat.too-new` warning.
    Warn,
    /// Serve it; no finding.
    Allow,
}

/// `[names] typosquat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NameRule {
    /// Block the name.
    Block,
    /// Warn about the name.
    Warn,
    /// Do not check.
    Off,
}

/// A `[[deny]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deny {
    /// What it denies.
    pub(crate) spec: PackageSpec,
    /// Why (shown in the block message).
    pub(crate) reason: String,
}

/// A `[[waiver]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Waiver {
    /// The one rule it skips (never malicious, denied or error: refused at parse time).
    pub(crate) rule: RuleId,
    /// What it covers.
    pub(crate) spec: PackageSpec,
    /// Last day it applies (inclusive, UTC).
    pub(crate) until: jiff::civil::Date,
    /// Why.
    pub(crate) reason: String,
}

/// Why a policy file was refused (with the TOML location where there is one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not valid TOML, or a field of the wrong type / unknown field.
    #[error("{0}")]
    Parse(String),
    /// A value is well-formed TOML but not allowed (bad package spec, bad date, …).
    #[error("{0}")]
    Invalid(String),
}

/// Something `moat policy check` reports without refusing the policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyWarning {
    /// Short kebab-case kind: `waiver-expired`, `waiver-unused`, `waiver-not-waivable`, …
    pub kind: String,
    /// The human line.
    pub message: String,
}

impl Policy {
    /// Parse and validate a policy file's text.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        crate::config::parse(text)
    }

    /// The built-in default ([`DEFAULT_POLICY_TOML`]).
    pub fn builtin() -> Policy {
        Policy::new(
            Settings::default(),
            Vec::new(),
            Vec::new(),
            EgressRules::default(),
        )
    }

    /// Assemble a validated policy: sorts the entries and computes the revision.
    pub(crate) fn new(
        settings: Settings,
        mut deny: Vec<Deny>,
        mut waivers: Vec<Waiver>,
        egress: EgressRules,
    ) -> Policy {
        deny.sort();
        deny.dedup();
        waivers.sort();
        waivers.dedup();
        let revision = revision_of(&settings, &deny, &waivers, &egress);
        Policy {
            settings,
            deny,
            waivers,
            egress,
            revision,
        }
    }

    /// `[egress] allow`: the hosts a sandbox's forward proxy admits (rule `moat.egress`).
    pub fn egress(&self) -> &EgressRules {
        &self.egress
    }

    /// A short stable hash of the policy's meaning; changes whenever the policy does (ETags, audit).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// Warnings for `moat policy check`: waivers past their date (relative to `today`, `YYYY-MM-DD`
    /// compared as a date), waivers that match nothing in `db`, waivers of `moat.malicious`.
    ///
    /// Waivers of `moat.malicious`, `moat.denied` and `moat.error` are refused when the policy
    /// is parsed, so they never reach this point. `waiver-unused` is only decided for
    /// `moat.vulnerable` waivers naming a version (does any advisory match that version?);
    /// without a version `db` cannot list a package's advisories, so the waiver counts as used.
    pub fn check(&self, db: &AdvisoryDb, today: jiff::civil::Date) -> Vec<PolicyWarning> {
        let mut warnings = Vec::new();
        for waiver in &self.waivers {
            let label = format!("waiver of {} for {}", waiver.rule, waiver.spec);
            if waiver.until < today {
                warnings.push(PolicyWarning {
                    kind: "waiver-expired".to_owned(),
                    message: format!("{label} expired on {} and no longer applies", waiver.until),
                });
            }
            if !waiver_may_be_used(waiver, db) {
                warnings.push(PolicyWarning {
                    kind: "waiver-unused".to_owned(),
                    message: format!("{label} matches no advisory in the database"),
                });
            }
        }
        warnings
    }
}

/// Whether a waiver of an advisory rule names something the database has an advisory for.
/// Rules not decided by advisories are assumed used.
fn waiver_may_be_used(waiver: &Waiver, db: &AdvisoryDb) -> bool {
    let wants_malicious = match waiver.rule {
        RuleId::Vulnerable => false,
        RuleId::Malicious => true,
        RuleId::TooNew | RuleId::Typosquat | RuleId::Denied | RuleId::Error | RuleId::Egress => {
            return true;
        }
    };
    let spec = &waiver.spec;
    let Some(version) = &spec.version else {
        // Without a version the database can only answer for name-wide malicious records.
        return !wants_malicious || db.malicious_package(spec.ecosystem, &spec.name).is_some();
    };
    db.matches(spec.ecosystem, &spec.name, version)
        .iter()
        .any(|found| found.advisory.malicious == wants_malicious)
}

/// Hash a canonical text of the policy's meaning: 16 hex characters of SHA-256.
fn revision_of(
    settings: &Settings,
    deny: &[Deny],
    waivers: &[Waiver],
    egress: &EgressRules,
) -> String {
    let mut text = format!(
        "moat-policy/1\nblock-vulnerable={}\nunknown-severity={:?}\nrequire-fix={}\nmin-days={}\nunknown-age={:?}\ntyposquat={:?}\n",
        settings.vulnerable.as_str(),
        settings.unknown_severity,
        settings.require_fix,
        settings.min_days,
        settings.unknown_age,
        settings.typosquat,
    );
    for entry in deny {
        text.push_str(&format!("deny={}\u{0}{}\n", entry.spec, entry.reason));
    }
    for waiver in waivers {
        text.push_str(&format!(
            "waiver={}\u{0}{}\u{0}{}\u{0}{}\n",
            waiver.rule, waiver.spec, waiver.until, waiver.reason
        ));
    }
    for entry in egress.entries() {
        text.push_str(&format!("egress-allow={entry}\n"));
    }
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

/// The severity a threshold starts at (`None` for `any` and `off`).
pub(crate) fn threshold_severity(threshold: Threshold) -> Option<Severity> {
    match threshold {
        Threshold::Low => Some(Severity::Low),
        Threshold::Moderate => Some(Severity::Moderate),
        Threshold::High => Some(Severity::High),
        Threshold::Critical => Some(Severity::Critical),
        Threshold::Any | Threshold::Off => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_is_the_builtin_policy() {
        assert_eq!(
            Policy::from_toml(DEFAULT_POLICY_TOML).unwrap(),
            Policy::builtin()
        );
        assert_eq!(Policy::from_toml("").unwrap(), Policy::builtin());
    }

    #[test]
    fn revision_is_short_hex_and_tracks_meaning() {
        let builtin = Policy::builtin();
        assert_eq!(builtin.revision().len(), 16);
        assert!(builtin.revision().chars().all(|c| c.is_ascii_hexdigit()));
        let stricter =
            Policy::from_toml("[advisories]\nblock-vulnerable = \"moderate\"\n").unwrap();
        assert_ne!(stricter.revision(), builtin.revision());
        let unknown_age_blocks = Policy::from_toml("[age]\nunknown = \"block\"\n").unwrap();
        assert_ne!(unknown_age_blocks.revision(), builtin.revision());
        let egress = Policy::from_toml("[egress]\nallow = [\"api.github.com\"]\n").unwrap();
        assert_ne!(egress.revision(), builtin.revision());
        let unknown_age_default = Policy::from_toml("[age]\nunknown = \"warn\"\n").unwrap();
        assert_eq!(unknown_age_default.revision(), builtin.revision());
        // Comments, order and spelling of equivalent names do not change the meaning.
        let a = Policy::from_toml(
            "[[deny]]\npackage = \"npm:a\"\nreason = \"r\"\n[[deny]]\npackage = \"PyPI:Foo_Bar\"\nreason = \"s\"\n",
        )
        .unwrap();
        let b = Policy::from_toml(
            "# same\n[[deny]]\npackage = \"pypi:foo-bar\"\nreason = \"s\"\n[[deny]]\npackage = \"npm:a\"\nreason = \"r\"\n",
        )
        .unwrap();
        assert_eq!(a.revision(), b.revision());
    }
}
