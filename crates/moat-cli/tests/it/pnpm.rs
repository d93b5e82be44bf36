//! pnpm 10 through the gate.

use moat_test_support::clients::Client;

use crate::cases;

#[test]
fn range_is_steered() {
    cases::range_is_steered(Client::Pnpm);
}

#[test]
fn pin_is_refused_with_reason_and_correction_installs() {
    cases::pin_is_refused_with_reason_and_correction_installs(Client::Pnpm);
}

#[test]
fn tarball_refusal_shows_the_reason() {
    cases::tarball_refusal_shows_the_reason(Client::Pnpm, "403");
}

#[test]
fn malicious_is_refused_with_reason() {
    cases::malicious_is_refused_with_reason(Client::Pnpm);
}

#[test]
fn dependency_range_is_steered() {
    cases::dependency_range_is_steered(Client::Pnpm);
}
