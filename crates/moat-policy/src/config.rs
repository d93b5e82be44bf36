//! The policy file as TOML: raw serde types, then validation into a [`Policy`].

use crate::policy::{
    Deny, NameRule, Policy, PolicyError, Settings, Threshold, UnknownAge, UnknownSeverity, Waiver,
};
use crate::spec::PackageSpec;
use crate::{EgressRules, RuleId};

/// The file as written; every section and value optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    #[serde(default)]
    advisories: RawAdvisories,
    #[serde(default)]
    age: RawAge,
    #[serde(default)]
    names: RawNames,
    #[serde(default)]
    deny: Vec<RawDeny>,
    #[serde(default)]
    waiver: Vec<RawWaiver>,
    #[serde(default)]
    egress: RawEgress,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEgress {
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAdvisories {
    block_malicious: Option<bool>,
    block_vulnerable: Option<Threshold>,
    unknown_severity: Option<UnknownSeverity>,
    require_fix: Option<bool>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAge {
    min_days: Option<u32>,
    unknown: Option<UnknownAge>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNames {
    typosquat: Option<NameRule>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDeny {
    package: String,
    reason: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWaiver {
    rule: RuleId,
    package: String,
    /// A string `"2027-01-31"` or a TOML date literal `2027-01-31`.
    until: toml::Value,
    reason: Option<String>,
}

/// Parse and validate a policy file's text.
pub(crate) fn parse(text: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = toml::from_str(text)
        .map_err(|error| PolicyError::Parse(error.to_string().trim_end().to_owned()))?;
    let defaults = Settings::default();
    if raw.advisories.block_malicious == Some(false) {
        return Err(PolicyError::Invalid(
            "[advisories] block-malicious = false is not allowed: malicious packages are always blocked".to_owned(),
        ));
    }
    let settings = Settings {
        vulnerable: raw
            .advisories
            .block_vulnerable
            .unwrap_or(defaults.vulnerable),
        unknown_severity: raw
            .advisories
            .unknown_severity
            .unwrap_or(defaults.unknown_severity),
        require_fix: raw.advisories.require_fix.unwrap_or(defaults.require_fix),
        min_days: raw.age.min_days.unwrap_or(defaults.min_days),
        unknown_age: raw.age.unknown.unwrap_or(defaults.unknown_age),
        typosquat: raw.names.typosquat.unwrap_or(defaults.typosquat),
    };
    let deny = raw
        .deny
        .into_iter()
        .enumerate()
        .map(|(index, entry)| deny_entry(index + 1, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let waivers = raw
        .waiver
        .into_iter()
        .enumerate()
        .map(|(index, entry)| waiver_entry(index + 1, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let egress = EgressRules::parse(&raw.egress.allow)
        .map_err(|error| PolicyError::Invalid(format!("[egress] allow {error}")))?;
    Ok(Policy::new(settings, deny, waivers, egress))
}

/// Validate one `[[deny]]` entry (`number` counts from 1, for messages).
fn deny_entry(number: usize, raw: RawDeny) -> Result<Deny, PolicyError> {
    let label = format!("[[deny]] entry {number} (package \"{}\")", raw.package);
    let spec = PackageSpec::parse(&raw.package).map_err(|error| invalid(&label, &error))?;
    let reason = required_reason(&label, raw.reason)?;
    Ok(Deny { spec, reason })
}

/// Validate one `[[waiver]]` entry (`number` counts from 1, for messages).
fn waiver_entry(number: usize, raw: RawWaiver) -> Result<Waiver, PolicyError> {
    let label = format!(
        "[[waiver]] entry {number} (rule {}, package \"{}\")",
        raw.rule, raw.package
    );
    match raw.rule {
        RuleId::Malicious => return Err(invalid(&label, "malicious packages cannot be waived")),
        RuleId::Denied => {
            return Err(invalid(
                &label,
                "moat.denied cannot be waived: deny wins; remove the [[deny]] entry instead",
            ));
        }
        RuleId::Error => {
            return Err(invalid(
                &label,
                "moat.error cannot be waived: an evaluation error is always a block",
            ));
        }
        RuleId::Egress => {
            return Err(invalid(
                &label,
                "moat.egress is not a package rule: add the host to [egress] allow instead",
            ));
        }
        RuleId::Vulnerable | RuleId::TooNew | RuleId::Typosquat => {}
    }
    let spec = PackageSpec::parse(&raw.package).map_err(|error| invalid(&label, &error))?;
    if raw.rule == RuleId::Typosquat && spec.version.is_some() {
        return Err(invalid(
            &label,
            "moat.typosquat is decided by name: waive the package without a version",
        ));
    }
    let until = date(&raw.until).map_err(|error| invalid(&label, &error))?;
    let reason = required_reason(&label, raw.reason)?;
    Ok(Waiver {
        rule: raw.rule,
        spec,
        until,
        reason,
    })
}

/// A `reason` that is present and not blank.
fn required_reason(label: &str, reason: Option<String>) -> Result<String, PolicyError> {
    match reason.map(|reason| reason.trim().to_owned()) {
        Some(reason) if !reason.is_empty() => Ok(reason),
        Some(_) | None => Err(invalid(label, "a non-empty `reason` is required")),
    }
}

/// `until` as a calendar date.
fn date(value: &toml::Value) -> Result<jiff::civil::Date, String> {
    let text = match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Datetime(datetime) if datetime.time.is_none() && datetime.offset.is_none() => {
            datetime.to_string()
        }
        toml::Value::Datetime(_)
        | toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Array(_)
        | toml::Value::Table(_) => {
            return Err(format!(
                "`until` must be a date like \"2027-01-31\", not {value}"
            ));
        }
    };
    text.parse::<jiff::civil::Date>()
        .map_err(|_| format!("`until` = \"{text}\" is not a date like \"2027-01-31\""))
}

/// A [`PolicyError::Invalid`] naming the entry.
fn invalid(label: &str, message: &str) -> PolicyError {
    PolicyError::Invalid(format!("{label}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_message(text: &str) -> String {
        match Policy::from_toml(text) {
            Err(PolicyError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn parse_message(text: &str) -> String {
        match Policy::from_toml(text) {
            Err(PolicyError::Parse(message)) => message,
            other => panic!("expected Parse, got {other:?}"),
        }
    }

    #[test]
    fn full_example_parses() {
        let policy = Policy::from_toml(
            r#"
[advisories]
block-malicious = true
block-vulnerable = "critical"
unknown-severity = "warn"
require-fix = false
[age]
min-days = 0
unknown = "block"
[names]
typosquat = "warn"
[[deny]]
package = "npm:event-stream"
reason = "abandoned, once hijacked"
[[waiver]]
rule = "moat.vulnerable"
package = "PyPI:django@3.2.0"
until = "2027-01-31"
reason = "pinned by legacy service; ticket SEC-142"
[[waiver]]
rule = "moat.too-new"
package = "crates.io:serde"
until = 2027-02-01
reason = "trusted publisher"
"#,
        )
        .unwrap();
        assert_eq!(policy.settings.vulnerable, Threshold::Critical);
        assert_eq!(policy.settings.unknown_severity, UnknownSeverity::Warn);
        assert!(!policy.settings.require_fix);
        assert_eq!(policy.settings.min_days, 0);
        assert_eq!(policy.settings.unknown_age, UnknownAge::Block);
        assert_eq!(policy.settings.typosquat, NameRule::Warn);
        assert_eq!(policy.deny.len(), 1);
        assert_eq!(policy.waivers.len(), 2);
        assert_eq!(policy.waivers[1].until, jiff::civil::date(2027, 2, 1));
    }

    #[test]
    fn unknown_fields_are_refused_with_their_location() {
        let message =
            parse_message("[advisories]\nblock-vulnerable = \"high\"\nblock-everything = true\n");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("block-everything"), "{message}");
        let message = parse_message("[ages]\nmin-days = 1\n");
        assert!(message.contains("ages"), "{message}");
    }

    #[test]
    fn bad_enum_values_are_refused() {
        let message = parse_message("[advisories]\nblock-vulnerable = \"medium\"\n");
        assert!(message.contains("medium"), "{message}");
        let message = parse_message(
            "[[waiver]]\nrule = \"moat.nope\"\npackage = \"npm:a\"\nuntil = \"2027-01-01\"\nreason = \"r\"\n",
        );
        assert!(message.contains("moat.nope"), "{message}");
        let message = parse_message("[age]\nmin-days = 3\nunknown = \"maybe\"\n");
        assert!(
            message.contains("line 3")
                && message.contains("maybe")
                && message.contains("`block`, `warn`, `allow`"),
            "{message}"
        );
        let message = parse_message("[age]\nunknown = true\n");
        assert!(message.contains("unknown"), "{message}");
    }

    #[test]
    fn unknown_age_settings() {
        for (value, expected) in [
            ("allow", UnknownAge::Allow),
            ("warn", UnknownAge::Warn),
            ("block", UnknownAge::Block),
        ] {
            let policy = Policy::from_toml(&format!("[age]\nunknown = \"{value}\"\n")).unwrap();
            assert_eq!(policy.settings.unknown_age, expected, "{value}");
        }
        assert_eq!(
            Policy::from_toml("[age]\nmin-days = 7\n")
                .unwrap()
                .settings
                .unknown_age,
            UnknownAge::Warn,
            "the default"
        );
    }

    #[test]
    fn block_malicious_false_is_refused() {
        let message = invalid_message("[advisories]\nblock-malicious = false\n");
        assert!(message.contains("always blocked"), "{message}");
    }

    #[test]
    fn unwaivable_rules_are_refused() {
        let waiver = |rule: &str| {
            format!(
                "[[waiver]]\nrule = \"{rule}\"\npackage = \"npm:a\"\nuntil = \"2027-01-01\"\nreason = \"r\"\n"
            )
        };
        assert!(
            invalid_message(&waiver("moat.malicious"))
                .contains("malicious packages cannot be waived")
        );
        assert!(invalid_message(&waiver("moat.denied")).contains("remove the [[deny]] entry"));
        assert!(invalid_message(&waiver("moat.error")).contains("cannot be waived"));
        assert!(invalid_message(&waiver("moat.egress")).contains("[egress] allow"));
    }

    #[test]
    fn reasons_are_required() {
        let message = invalid_message("[[deny]]\npackage = \"npm:a\"\n");
        assert!(
            message.contains("[[deny]] entry 1") && message.contains("reason"),
            "{message}"
        );
        let message = invalid_message("[[deny]]\npackage = \"npm:a\"\nreason = \"  \"\n");
        assert!(message.contains("reason"), "{message}");
        let message = invalid_message(
            "[[waiver]]\nrule = \"moat.vulnerable\"\npackage = \"npm:a\"\nuntil = \"2027-01-01\"\n",
        );
        assert!(
            message.contains("[[waiver]] entry 1") && message.contains("reason"),
            "{message}"
        );
    }

    #[test]
    fn bad_packages_and_dates_are_refused() {
        let message = invalid_message("[[deny]]\npackage = \"maven:a\"\nreason = \"r\"\n");
        assert!(message.contains("maven"), "{message}");
        let message = invalid_message("[[deny]]\npackage = \"npm:\"\nreason = \"r\"\n");
        assert!(message.contains("empty"), "{message}");
        let message = invalid_message(
            "[[waiver]]\nrule = \"moat.vulnerable\"\npackage = \"npm:a\"\nuntil = \"2027-02-30\"\nreason = \"r\"\n",
        );
        assert!(message.contains("2027-02-30"), "{message}");
        let message = invalid_message(
            "[[waiver]]\nrule = \"moat.vulnerable\"\npackage = \"npm:a\"\nuntil = 20270101\nreason = \"r\"\n",
        );
        assert!(message.contains("until"), "{message}");
    }

    #[test]
    fn egress_allow_list() {
        let policy = Policy::from_toml(
            "[egress]\nallow = [\"api.github.com\", \"*.example.org\", \"127.0.0.1:8080\"]\n",
        )
        .unwrap();
        assert_eq!(policy.egress().entries().len(), 3);
        let github = crate::EgressHost::parse("API.GitHub.com").unwrap();
        assert!(policy.egress().admit(&github, 443).is_some());
        assert!(policy.egress().admit(&github, 22).is_none());
        assert!(Policy::builtin().egress().is_empty());
        let message = invalid_message("[egress]\nallow = [\"ok.example\", \"*\"]\n");
        assert!(
            message.contains("[egress] allow entry 2") && message.contains("every host"),
            "{message}"
        );
        let message = parse_message("[egress]\ndeny = []\n");
        assert!(message.contains("deny"), "{message}");
    }

    #[test]
    fn typosquat_waivers_name_no_version() {
        let message = invalid_message(
            "[[waiver]]\nrule = \"moat.typosquat\"\npackage = \"npm:lodahs@1.0.0\"\nuntil = \"2027-01-01\"\nreason = \"r\"\n",
        );
        assert!(message.contains("without a version"), "{message}");
    }
}
