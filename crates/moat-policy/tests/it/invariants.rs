//! The policy's security invariants (DESIGN.md "Security invariants"), one named test each.

use moat_advisories::Ecosystem;
use moat_policy::{Action, Context, Policy, PolicyError, RuleId};

use crate::support::{at, ctx, db, policy, popular, versions};

#[test]
fn deny_wins_over_everything() {
    // lodash is on the popular list, minimist has waivers for every waivable rule.
    let policy = policy(
        r#"
[[deny]]
package = "npm:lodash"
reason = "use lodash-es"
[[deny]]
package = "npm:minimist"
reason = "replaced by yargs-parser"
[[waiver]]
rule = "moat.vulnerable"
package = "npm:minimist"
until = "2099-01-01"
reason = "legacy"
[[waiver]]
rule = "moat.too-new"
package = "npm:minimist"
until = "2099-01-01"
reason = "legacy"
[[waiver]]
rule = "moat.typosquat"
package = "npm:minimist"
until = "2099-01-01"
reason = "legacy"
"#,
    );
    let db = db();
    let popular = popular();
    let ctx = ctx(&db, Some(&popular));

    let lodash = policy.evaluate_name(&ctx, Ecosystem::Npm, "lodash");
    assert_eq!(lodash.action, Action::Block);
    assert_eq!(lodash.rule_ids(), vec![RuleId::Denied]);
    assert_eq!(lodash.findings[0].message, "use lodash-es");

    // Names are compared normalised: case does not get around a deny.
    let shouted = policy.evaluate_name(&ctx, Ecosystem::Npm, "LoDash");
    assert_eq!(shouted.action, Action::Block);

    let evaluation = policy.evaluate_package(
        &ctx,
        Ecosystem::Npm,
        "minimist",
        &versions(&["1.2.5", "1.2.8"]),
    );
    assert_eq!(evaluation.package.action, Action::Block);
    for verdict in evaluation.versions.values() {
        assert_eq!(verdict.action, Action::Block, "{verdict:?}");
        assert_eq!(verdict.rule_ids()[0], RuleId::Denied);
        assert!(verdict.approved.is_empty());
    }
    assert_eq!(evaluation.newest_approved, None);

    // A waiver of moat.denied is refused outright.
    let refused = Policy::from_toml(
        "[[deny]]\npackage = \"npm:a\"\nreason = \"r\"\n[[waiver]]\nrule = \"moat.denied\"\npackage = \"npm:a\"\nuntil = \"2099-01-01\"\nreason = \"r\"\n",
    );
    assert!(
        matches!(refused, Err(PolicyError::Invalid(message)) if message.contains("remove the [[deny]] entry"))
    );
}

#[test]
fn malicious_cannot_be_waived() {
    let refused = Policy::from_toml(
        "[[waiver]]\nrule = \"moat.malicious\"\npackage = \"npm:cxp-jquery\"\nuntil = \"2099-01-01\"\nreason = \"trust me\"\n",
    );
    let Err(PolicyError::Invalid(message)) = refused else {
        panic!("waiver of moat.malicious accepted: {refused:?}");
    };
    assert!(
        message.contains("malicious packages cannot be waived"),
        "{message}"
    );
    assert!(message.contains("[[waiver]] entry 1"), "{message}");

    let refused = Policy::from_toml("[advisories]\nblock-malicious = false\n");
    assert!(matches!(refused, Err(PolicyError::Invalid(_))));

    // Every waivable rule waived, and typosquat off: malicious still blocks.
    let mut text =
        String::from("[names]\ntyposquat = \"off\"\n[advisories]\nblock-vulnerable = \"off\"\n");
    for package in ["npm:cxp-jquery", "npm:fsevents"] {
        for rule in ["moat.vulnerable", "moat.too-new", "moat.typosquat"] {
            text.push_str(&format!(
                "[[waiver]]\nrule = \"{rule}\"\npackage = \"{package}\"\nuntil = \"2099-01-01\"\nreason = \"r\"\n"
            ));
        }
    }
    let policy = policy(&text);
    let db = db();
    let ctx = ctx(&db, None);

    let whole = policy.evaluate_name(&ctx, Ecosystem::Npm, "cxp-jquery");
    assert_eq!(whole.action, Action::Block);
    assert_eq!(whole.rule_ids(), vec![RuleId::Malicious]);
    assert_eq!(whole.advisory_ids(), vec!["MAL-2021-1".to_owned()]);
    assert!(
        whole
            .findings
            .iter()
            .all(|finding| finding.waived.is_none())
    );

    let evaluation = policy.evaluate_package(
        &ctx,
        Ecosystem::Npm,
        "fsevents",
        &versions(&["1.2.9", "1.2.11", "2.3.3"]),
    );
    let bad = &evaluation.versions["1.2.9"];
    assert_eq!(bad.action, Action::Block);
    assert_eq!(bad.rule_ids(), vec![RuleId::Malicious]);
    assert!(bad.findings.iter().all(|finding| finding.waived.is_none()));
    assert_eq!(bad.approved, vec!["1.2.11".to_owned(), "2.3.3".to_owned()]);
    assert_eq!(evaluation.versions["1.2.11"].action, Action::Allow);
    assert_eq!(evaluation.package.action, Action::Allow);
}

#[test]
fn evaluation_error_is_a_deny() {
    let policy = Policy::builtin();
    let db = db();
    let ctx = ctx(&db, None);
    let evaluation = policy.evaluate_package(
        &ctx,
        Ecosystem::Npm,
        "minimist",
        &versions(&["1.2.5", "1.2.8", "1.2.x-weird"]),
    );
    let weird = &evaluation.versions["1.2.x-weird"];
    assert_eq!(weird.action, Action::Block);
    assert_eq!(weird.rule_ids(), vec![RuleId::Error]);
    assert_eq!(
        weird.findings[0].message,
        "cannot order version 1.2.x-weird; refusing to guess"
    );
    // An unparseable version is never offered as an alternative.
    assert_eq!(
        evaluation.versions["1.2.5"].approved,
        vec!["1.2.8".to_owned()]
    );
    assert_eq!(evaluation.newest_approved.as_deref(), Some("1.2.8"));

    // Also when no listed version is affected (PyPI, a range from 0 to 2.0).
    let evaluation = policy.evaluate_package(
        &ctx,
        Ecosystem::PyPI,
        "legacy-lib",
        &versions(&["2.0", "not a version!"]),
    );
    assert_eq!(
        evaluation.versions["not a version!"].rule_ids(),
        vec![RuleId::Error]
    );
    assert_eq!(evaluation.versions["2.0"].action, Action::Allow);
    // A package with no advisories has nothing to order against.
    let evaluation = policy.evaluate_package(
        &ctx,
        Ecosystem::PyPI,
        "quiet-lib",
        &versions(&["not a version!"]),
    );
    assert_eq!(evaluation.versions["not a version!"].action, Action::Allow);

    // moat.error cannot be waived.
    let refused = Policy::from_toml(
        "[[waiver]]\nrule = \"moat.error\"\npackage = \"npm:minimist\"\nuntil = \"2099-01-01\"\nreason = \"r\"\n",
    );
    assert!(matches!(refused, Err(PolicyError::Invalid(_))));
}

#[test]
fn waiver_admits_until_its_date_and_not_after() {
    let policy = policy(
        r#"
[[waiver]]
rule = "moat.vulnerable"
package = "npm:minimist@1.2.5"
until = "2026-05-10"
reason = "pinned by legacy service; ticket SEC-142"
"#,
    );
    let db = crate::support::minimist_db();
    let list = versions(&["1.2.4", "1.2.5", "1.2.6"]);
    let on = |now: &str| {
        let ctx = Context {
            advisories: &db,
            popular: None,
            now: at(now),
        };
        policy.evaluate_package(&ctx, Ecosystem::Npm, "minimist", &list)
    };

    // The last second of the `until` day (UTC): admitted, the finding kept and marked.
    let last_day = on("2026-05-10T23:59:59Z");
    let admitted = &last_day.versions["1.2.5"];
    assert_eq!(admitted.action, Action::Allow);
    assert!(admitted.rule_ids().is_empty());
    assert!(admitted.advisory_ids().is_empty());
    let waived = admitted.findings[0].waived.as_ref().expect("waived");
    assert_eq!(waived.until, "2026-05-10");
    assert_eq!(waived.reason, "pinned by legacy service; ticket SEC-142");
    assert_eq!(
        admitted.findings[0].action,
        Action::Block,
        "a waived finding still says what it would do"
    );
    // Only the version named.
    assert_eq!(last_day.versions["1.2.4"].action, Action::Block);

    // The next day it does nothing.
    let day_after = on("2026-05-11T00:00:00Z");
    let blocked = &day_after.versions["1.2.5"];
    assert_eq!(blocked.action, Action::Block);
    assert_eq!(blocked.rule_ids(), vec![RuleId::Vulnerable]);
    assert!(
        blocked
            .findings
            .iter()
            .all(|finding| finding.waived.is_none())
    );
}
