//! `moat policy check` warnings.

use moat_policy::Policy;

use crate::support::{db, policy};

#[test]
fn builtin_policy_has_nothing_to_report() {
    assert!(
        Policy::builtin()
            .check(&db(), jiff::civil::date(2026, 5, 10))
            .is_empty()
    );
}

#[test]
fn expired_and_unused_waivers_are_reported() {
    let policy = policy(
        r#"
[[waiver]]
rule = "moat.vulnerable"
package = "npm:minimist@1.2.5"
until = "2026-05-09"
reason = "expired"
[[waiver]]
rule = "moat.vulnerable"
package = "npm:minimist@1.2.8"
until = "2027-01-01"
reason = "nothing to waive"
[[waiver]]
rule = "moat.vulnerable"
package = "npm:minimist@1.2.4"
until = "2026-05-10"
reason = "in use, last day"
[[waiver]]
rule = "moat.too-new"
package = "npm:left-pad"
until = "2027-01-01"
reason = "not an advisory rule"
"#,
    );
    let warnings = policy.check(&db(), jiff::civil::date(2026, 5, 10));
    insta::assert_json_snapshot!(warnings);
}
