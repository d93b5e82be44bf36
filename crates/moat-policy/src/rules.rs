//! The rules, one function each: from what is known about a name or a version to a [`Finding`].

use moat_advisories::{Advisory, Ecosystem, Match, Severity, TyposquatKind};

use crate::evaluate::Context;
use crate::policy::{
    NameRule, Settings, Threshold, UnknownAge, UnknownSeverity, threshold_severity,
};
use crate::spec::VersionKey;
use crate::{Action, AdvisoryRef, Finding, Policy, RuleId};

/// Longest advisory summary quoted in a finding message.
const SUMMARY_LIMIT: usize = 100;

impl Finding {
    /// A finding with no advisories, no suggestion, not waived.
    fn plain(rule: RuleId, action: Action, message: String) -> Finding {
        Finding {
            rule,
            action,
            message,
            advisories: Vec::new(),
            did_you_mean: None,
            waived: None,
        }
    }
}

impl Policy {
    /// `[[deny]]` entries naming `key` that cover `version` (`None`: entries without a version).
    pub(crate) fn denied(
        &self,
        ecosystem: Ecosystem,
        key: &str,
        version: Option<&VersionKey<'_>>,
    ) -> Option<Finding> {
        self.deny
            .iter()
            .filter(|entry| entry.spec.names_package(ecosystem, key))
            .find(|entry| match version {
                None => entry.spec.version.is_none(),
                Some(_) => entry.spec.version.is_some() && entry.spec.covers_version(version),
            })
            .map(|entry| Finding::plain(RuleId::Denied, Action::Block, entry.reason.clone()))
    }

    /// `[names] typosquat`: a near miss of a popular name that is not itself on the list.
    pub(crate) fn typosquat(
        &self,
        ctx: &Context<'_>,
        ecosystem: Ecosystem,
        name: &str,
    ) -> Option<Finding> {
        let action = match self.settings.typosquat {
            NameRule::Block => Action::Block,
            NameRule::Warn => Action::Warn,
            NameRule::Off => return None,
        };
        // A list for another ecosystem says nothing about this name.
        let popular = ctx
            .popular
            .filter(|popular| popular.ecosystem() == ecosystem)?;
        if popular.contains(name) {
            return None;
        }
        let squat = popular.check(name)?;
        let message = format!(
            "name resembles popular package {} ({})",
            squat.target,
            kind_name(squat.kind)
        );
        Some(Finding {
            did_you_mean: Some(squat.target),
            ..Finding::plain(RuleId::Typosquat, action, message)
        })
    }
}

/// The kebab-case name of a typosquat kind.
fn kind_name(kind: TyposquatKind) -> &'static str {
    match kind {
        TyposquatKind::AdjacentSwap => "adjacent-swap",
        TyposquatKind::OneEdit => "one-edit",
        TyposquatKind::Separator => "separator",
        TyposquatKind::Scope => "scope",
        TyposquatKind::PyPrefix => "py-prefix",
    }
}

/// `moat.malicious` for the given malicious advisories (with their fix versions, if any).
pub(crate) fn malicious<'a>(
    advisories: impl IntoIterator<Item = (&'a Advisory, Vec<String>)>,
) -> Option<Finding> {
    let advisories: Vec<AdvisoryRef> = advisories
        .into_iter()
        .map(|(advisory, fixed)| advisory_ref(advisory, fixed))
        .collect();
    let first = advisories.first()?;
    let message = match first.summary.trim() {
        "" => "malicious package".to_owned(),
        summary => short_summary(summary),
    };
    Some(Finding {
        advisories,
        ..Finding::plain(RuleId::Malicious, Action::Block, message)
    })
}

/// `moat.vulnerable` for the non-malicious advisories matching a version: one finding with
/// every advisory that warns or blocks, strongest first.
pub(crate) fn vulnerable(settings: &Settings, matches: &[&Match<'_>]) -> Option<Finding> {
    let mut rated: Vec<(Action, bool, &Match<'_>)> = matches
        .iter()
        .filter_map(|found| {
            let (action, lacks_fix) =
                advisory_action(settings, found.advisory.severity, !found.fixed.is_empty())?;
            Some((action, lacks_fix, *found))
        })
        .collect();
    rated.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| b.2.advisory.severity.cmp(&a.2.advisory.severity))
            .then_with(|| a.2.advisory.id.cmp(&b.2.advisory.id))
    });
    let (action, lacks_fix, top) = *rated.first()?;
    let severity = top
        .advisory
        .severity
        .map_or("unknown severity", Severity::as_str);
    let summary = match top.advisory.summary.trim() {
        "" => top.advisory.id.clone(),
        summary => short_summary(summary),
    };
    let mut message = format!("{severity}: {summary}");
    if lacks_fix {
        message.push_str(" (no fixed version)");
    }
    if rated.len() > 1 {
        message.push_str(&format!(" (+{} more)", rated.len() - 1));
    }
    let advisories = rated
        .iter()
        .map(|(_, _, found)| advisory_ref(found.advisory, found.fixed.clone()))
        .collect();
    Some(Finding {
        advisories,
        ..Finding::plain(RuleId::Vulnerable, action, message)
    })
}

/// What one vulnerability asks for under the policy, and whether `require-fix` lowered a
/// block to a warning. `None`: nothing (unknown severity allowed).
fn advisory_action(
    settings: &Settings,
    severity: Option<Severity>,
    has_fix: bool,
) -> Option<(Action, bool)> {
    let wanted = match (settings.vulnerable, severity) {
        (Threshold::Off, _) => Action::Warn,
        (Threshold::Any, _) => Action::Block,
        (
            Threshold::Low | Threshold::Moderate | Threshold::High | Threshold::Critical,
            Some(severity),
        ) => match threshold_severity(settings.vulnerable) {
            Some(minimum) if severity >= minimum => Action::Block,
            Some(_) | None => Action::Warn,
        },
        (Threshold::Low | Threshold::Moderate | Threshold::High | Threshold::Critical, None) => {
            match settings.unknown_severity {
                UnknownSeverity::Block => Action::Block,
                UnknownSeverity::Warn => Action::Warn,
                UnknownSeverity::Allow => return None,
            }
        }
    };
    match wanted {
        Action::Block if settings.require_fix && !has_fix => Some((Action::Warn, true)),
        Action::Allow | Action::Warn | Action::Block => Some((wanted, false)),
    }
}

/// `[age] min-days`: a version published less than `min-days` days before `now`. A version
/// without a publish time cannot be shown old enough: `[age] unknown` decides what it does.
pub(crate) fn too_new(
    settings: &Settings,
    now: jiff::Timestamp,
    published: Option<jiff::Timestamp>,
) -> Option<Finding> {
    let min_days = settings.min_days;
    if min_days == 0 {
        return None;
    }
    let required = match min_days {
        1 => "1 day".to_owned(),
        min_days => format!("{min_days} days"),
    };
    let Some(published) = published else {
        let action = match settings.unknown_age {
            UnknownAge::Block => Action::Block,
            UnknownAge::Warn => Action::Warn,
            UnknownAge::Allow => return None,
        };
        let message =
            format!("age unknown: the registry gives no publish time; policy requires {required}");
        return Some(Finding::plain(RuleId::TooNew, action, message));
    };
    let age_seconds = now.as_second().saturating_sub(published.as_second());
    if age_seconds >= i64::from(min_days) * 86_400 {
        return None;
    }
    let days = age_seconds.max(0) / 86_400;
    let age = match days {
        0 => "less than a day".to_owned(),
        1 => "1 day".to_owned(),
        days => format!("{days} days"),
    };
    let message = format!("published {age} ago; policy requires {required}");
    Some(Finding::plain(RuleId::TooNew, Action::Block, message))
}

/// `moat.error`: a version that cannot be ordered against the package's advisory ranges.
pub(crate) fn unorderable(version: &str) -> Finding {
    let message = format!("cannot order version {version}; refusing to guess");
    Finding::plain(RuleId::Error, Action::Block, message)
}

/// An advisory as a verdict reports it.
fn advisory_ref(advisory: &Advisory, fixed: Vec<String>) -> AdvisoryRef {
    AdvisoryRef {
        id: advisory.id.clone(),
        aliases: advisory.aliases.clone(),
        summary: advisory.summary.clone(),
        severity: advisory.severity,
        malicious: advisory.malicious,
        fixed,
    }
}

/// A summary for a one-line message: lowercase, whitespace collapsed, at most
/// [`SUMMARY_LIMIT`] characters, no trailing period.
pub(crate) fn short_summary(summary: &str) -> String {
    let text = summary
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let mut text = text.trim_end_matches('.').to_owned();
    if let Some((cut, _)) = text.char_indices().nth(SUMMARY_LIMIT) {
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings with `[age] min-days` and `[age] unknown`, everything else default.
    fn age(min_days: u32, unknown_age: UnknownAge) -> Settings {
        Settings {
            min_days,
            unknown_age,
            ..Settings::default()
        }
    }

    #[test]
    fn too_new_boundary_is_exclusive() {
        let now: jiff::Timestamp = "2026-05-10T12:00:00Z".parse().unwrap();
        let at = |text: &str| Some(text.parse::<jiff::Timestamp>().unwrap());
        let too_new =
            |min_days, now, published| too_new(&age(min_days, UnknownAge::Allow), now, published);
        let finding = too_new(3, now, at("2026-05-09T12:00:00Z")).unwrap();
        assert_eq!(
            finding.message,
            "published 1 day ago; policy requires 3 days"
        );
        let finding = too_new(3, now, at("2026-05-07T12:00:01Z")).unwrap();
        assert_eq!(
            finding.message,
            "published 2 days ago; policy requires 3 days"
        );
        assert_eq!(too_new(3, now, at("2026-05-07T12:00:00Z")), None);
        let finding = too_new(1, now, at("2026-05-10T13:00:00Z")).unwrap();
        assert_eq!(
            finding.message,
            "published less than a day ago; policy requires 1 day"
        );
        assert_eq!(too_new(0, now, at("2026-05-10T12:00:00Z")), None);
        assert_eq!(too_new(3, now, None), None);
    }

    #[test]
    fn unknown_age_allows_warns_or_blocks() {
        let now: jiff::Timestamp = "2026-05-10T12:00:00Z".parse().unwrap();
        assert_eq!(too_new(&age(3, UnknownAge::Allow), now, None), None);
        for (unknown, action) in [
            (UnknownAge::Warn, Action::Warn),
            (UnknownAge::Block, Action::Block),
        ] {
            let finding = too_new(&age(3, unknown), now, None).expect("a finding");
            assert_eq!(finding.rule, RuleId::TooNew);
            assert_eq!(finding.action, action);
            assert_eq!(
                finding.message,
                "age unknown: the registry gives no publish time; policy requires 3 days"
            );
            assert!(finding.advisories.is_empty() && finding.waived.is_none());
            // With the age rule off, nothing is asked of the publish time.
            assert_eq!(too_new(&age(0, unknown), now, None), None);
        }
        let one_day = too_new(&age(1, UnknownAge::Block), now, None).expect("a finding");
        assert!(
            one_day.message.ends_with("policy requires 1 day"),
            "{one_day:?}"
        );
        // A known publish time is judged by min-days alone, whatever `unknown` says.
        let old = Some("2020-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(too_new(&age(3, UnknownAge::Block), now, old), None);
    }

    #[test]
    fn summaries_are_short_and_lowercase() {
        assert_eq!(
            short_summary("Prototype  Pollution in minimist."),
            "prototype pollution in minimist"
        );
        let long = "A".repeat(300);
        assert_eq!(short_summary(&long).len(), SUMMARY_LIMIT + 3);
    }

    #[test]
    fn severity_threshold_table() {
        let settings = |vulnerable, unknown_severity, require_fix| Settings {
            vulnerable,
            unknown_severity,
            require_fix,
            ..Settings::default()
        };
        let high = settings(Threshold::High, UnknownSeverity::Block, true);
        assert_eq!(
            advisory_action(&high, Some(Severity::Critical), true),
            Some((Action::Block, false))
        );
        assert_eq!(
            advisory_action(&high, Some(Severity::High), true),
            Some((Action::Block, false))
        );
        assert_eq!(
            advisory_action(&high, Some(Severity::Moderate), true),
            Some((Action::Warn, false))
        );
        assert_eq!(
            advisory_action(&high, Some(Severity::Critical), false),
            Some((Action::Warn, true))
        );
        assert_eq!(
            advisory_action(&high, None, true),
            Some((Action::Block, false))
        );
        let warn_unknown = settings(Threshold::High, UnknownSeverity::Warn, false);
        assert_eq!(
            advisory_action(&warn_unknown, None, false),
            Some((Action::Warn, false))
        );
        assert_eq!(
            advisory_action(&warn_unknown, Some(Severity::High), false),
            Some((Action::Block, false))
        );
        let allow_unknown = settings(Threshold::High, UnknownSeverity::Allow, true);
        assert_eq!(advisory_action(&allow_unknown, None, true), None);
        let any = settings(Threshold::Any, UnknownSeverity::Allow, true);
        assert_eq!(
            advisory_action(&any, None, true),
            Some((Action::Block, false))
        );
        assert_eq!(
            advisory_action(&any, Some(Severity::Low), true),
            Some((Action::Block, false))
        );
        let off = settings(Threshold::Off, UnknownSeverity::Block, true);
        assert_eq!(
            advisory_action(&off, Some(Severity::Critical), true),
            Some((Action::Warn, false))
        );
    }
}
