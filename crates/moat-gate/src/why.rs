//! The "why" explanation: every rule that fired (waived ones marked), advisories with severity,
//! summary and fixed versions, the approved versions, and how to ask for a waiver.

use std::fmt::Write as _;

use moat_policy::{Action, Finding, RuleId, Verdict};

/// The full human explanation of `verdict`, plain text, ending in a newline.
pub fn render_text(verdict: &Verdict, why_url: &str) -> String {
    let mut out = String::new();
    let subject = subject(verdict);
    let _ = writeln!(
        out,
        "{} {subject}: {}",
        verdict.ecosystem,
        action_word(verdict.action)
    );
    if verdict.findings.is_empty() {
        let _ = writeln!(out, "\nno rule fired: the policy allows it");
    } else {
        let _ = writeln!(out, "\nrules that fired:");
        for finding in &verdict.findings {
            finding_lines(&mut out, finding);
        }
    }
    if !verdict.approved.is_empty() {
        let _ = writeln!(out, "\napproved versions instead:");
        for version in &verdict.approved {
            let _ = writeln!(out, "  {}@{version}", verdict.package);
        }
    }
    if verdict.action == Action::Block {
        waiver_hint(&mut out, verdict);
    }
    let _ = writeln!(out, "\nwhy: {why_url}");
    out
}

fn subject(verdict: &Verdict) -> String {
    match &verdict.version {
        Some(version) => format!("{}@{version}", verdict.package),
        None => format!("{} (every version)", verdict.package),
    }
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Allow => "allowed",
        Action::Warn => "allowed with a warning",
        Action::Block => "blocked",
    }
}

fn finding_lines(out: &mut String, finding: &Finding) {
    let action = action_word(finding.action);
    let _ = write!(out, "  - {} ({action}): {}", finding.rule, finding.message);
    match &finding.waived {
        Some(waiver) => {
            let _ = writeln!(out, " [waived until {}: {}]", waiver.until, waiver.reason);
        }
        None => out.push('\n'),
    }
    if let Some(name) = &finding.did_you_mean {
        let _ = writeln!(out, "      did you mean {name}?");
    }
    for advisory in &finding.advisories {
        let severity = advisory.severity.map_or("unknown severity", |s| s.as_str());
        let malicious = if advisory.malicious {
            ", malicious"
        } else {
            ""
        };
        let _ = write!(out, "      {} ({severity}{malicious})", advisory.id);
        if !advisory.aliases.is_empty() {
            let _ = write!(out, " aka {}", advisory.aliases.join(", "));
        }
        if !advisory.summary.is_empty() {
            let _ = write!(out, ": {}", advisory.summary);
        }
        out.push('\n');
        match advisory.fixed.is_empty() {
            true => out.push_str("        no fixed version published\n"),
            false => {
                let _ = writeln!(out, "        fixed in: {}", advisory.fixed.join(", "));
            }
        }
    }
}

/// Whether a policy `[[waiver]]` can skip `rule`.
fn waivable(rule: RuleId) -> bool {
    match rule {
        RuleId::Vulnerable | RuleId::TooNew | RuleId::Typosquat => true,
        RuleId::Malicious | RuleId::Denied | RuleId::Error | RuleId::Egress => false,
    }
}

fn waiver_hint(out: &mut String, verdict: &Verdict) {
    let blocking: Vec<RuleId> = verdict
        .findings
        .iter()
        .filter(|f| f.waived.is_none() && f.action == Action::Block)
        .map(|f| f.rule)
        .collect();
    let package = match &verdict.version {
        Some(version) => format!("{}:{}@{version}", verdict.ecosystem, verdict.package),
        None => format!("{}:{}", verdict.ecosystem, verdict.package),
    };
    let mut asked = false;
    for rule in blocking.iter().copied().filter(|rule| waivable(*rule)) {
        if !asked {
            out.push_str(
                "\nto use it anyway, ask a policy owner to add a waiver to the policy file:\n",
            );
            asked = true;
        }
        let _ = writeln!(
            out,
            "\n  [[waiver]]\n  rule = \"{rule}\"\n  package = \"{package}\"\n  until = \"YYYY-MM-DD\"\n  reason = \"why it is needed, ticket\""
        );
    }
    for rule in blocking.iter().copied().filter(|rule| !waivable(*rule)) {
        let note = match rule {
            RuleId::Malicious => {
                "moat.malicious cannot be waived: malicious packages are never allowed"
            }
            RuleId::Denied => "moat.denied cannot be waived: remove the [[deny]] entry instead",
            RuleId::Error => "moat.error cannot be waived: the policy could not decide; report it",
            RuleId::Egress => "moat.egress is not waivable: add the host to [egress] allow instead",
            RuleId::Vulnerable | RuleId::TooNew | RuleId::Typosquat => continue,
        };
        let _ = writeln!(out, "\n{note}");
    }
}

#[cfg(test)]
mod tests {
    use moat_advisories::{Ecosystem, Severity};
    use moat_policy::{AdvisoryRef, WaiverRef};

    use super::*;

    fn finding(rule: RuleId, waived: bool) -> Finding {
        Finding {
            rule,
            action: Action::Block,
            message: format!("{rule} fired"),
            advisories: match rule {
                RuleId::Vulnerable => vec![AdvisoryRef {
                    id: "GHSA-xvch-5gv4-984h".into(),
                    aliases: vec!["CVE-2021-44906".into()],
                    summary: "prototype pollution".into(),
                    severity: Some(Severity::Critical),
                    malicious: false,
                    fixed: vec!["1.2.6".into()],
                }],
                RuleId::Malicious
                | RuleId::TooNew
                | RuleId::Typosquat
                | RuleId::Denied
                | RuleId::Error
                | RuleId::Egress => vec![],
            },
            did_you_mean: None,
            waived: waived.then(|| WaiverRef {
                until: "2027-01-31".into(),
                reason: "SEC-1".into(),
            }),
        }
    }

    #[test]
    fn explains_rules_advisories_approved_and_waivers() {
        let verdict = Verdict {
            ecosystem: Ecosystem::Npm,
            package: "minimist".into(),
            version: Some("1.2.5".into()),
            action: Action::Block,
            findings: vec![
                finding(RuleId::Malicious, false),
                finding(RuleId::Vulnerable, false),
                finding(RuleId::TooNew, true),
            ],
            approved: vec!["1.2.8".into()],
        };
        let text = render_text(&verdict, "http://gate/-/why/npm/minimist/1.2.5");
        for needle in [
            "npm minimist@1.2.5: blocked",
            "moat.vulnerable (blocked): moat.vulnerable fired",
            "GHSA-xvch-5gv4-984h (critical) aka CVE-2021-44906: prototype pollution",
            "fixed in: 1.2.6",
            "[waived until 2027-01-31: SEC-1]",
            "minimist@1.2.8",
            "rule = \"moat.vulnerable\"",
            "package = \"npm:minimist@1.2.5\"",
            "moat.malicious cannot be waived",
            "why: http://gate/-/why/npm/minimist/1.2.5",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(
            !text.contains("rule = \"moat.too-new\""),
            "waived rules need no waiver:\n{text}"
        );
    }
}
