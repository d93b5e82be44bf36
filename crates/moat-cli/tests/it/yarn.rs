//! yarn 1 and yarn 4 through the gate.

use moat_test_support::clients::Client;

use crate::cases;

#[test]
fn yarn1_range_is_steered() {
    cases::range_is_steered(Client::Yarn1);
}

/// yarn 1 prints nothing of a tarball 403 ("Request failed 403 Forbidden"): the reason comes
/// from the deprecation warning on the pinned version.
#[test]
fn yarn1_pin_is_refused_with_reason_and_correction_installs() {
    cases::pin_is_refused_with_reason_and_correction_installs(Client::Yarn1);
}

#[test]
fn yarn1_malicious_is_refused_with_reason() {
    cases::malicious_is_refused_with_reason(Client::Yarn1);
}

#[test]
fn yarn4_range_is_steered() {
    cases::range_is_steered(Client::Yarn4);
}

#[test]
fn yarn4_pin_is_refused_with_reason_and_correction_installs() {
    cases::pin_is_refused_with_reason_and_correction_installs(Client::Yarn4);
}

#[test]
fn yarn4_tarball_refusal_shows_the_reason() {
    cases::tarball_refusal_shows_the_reason(Client::Yarn4, "403");
}

#[test]
fn yarn4_malicious_is_refused_with_reason() {
    cases::malicious_is_refused_with_reason(Client::Yarn4);
}

#[test]
fn yarn1_dependency_range_is_steered() {
    cases::dependency_range_is_steered(Client::Yarn1);
}

#[test]
fn yarn4_dependency_range_is_steered() {
    cases::dependency_range_is_steered(Client::Yarn4);
}
