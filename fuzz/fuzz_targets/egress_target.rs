//! Untrusted egress input: the request target an agent sends the gate's forward proxy
//! (`CONNECT host:port`, or `GET http://…`). Nothing may panic; what the policy decides on must
//! be what the proxy connects to and names in the `Host` header; and an admitted host must be
//! one the allow list names, by a check written apart from the policy's.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use moat_gate::ProxyTarget;
use moat_policy::{EgressHost, Policy};

/// Names, a domain, addresses, and two entries that allow one port only.
const ALLOW: [&str; 5] = [
    "example.org",
    "*.example.net",
    "10.0.0.1",
    "[::1]:8080",
    "git.example.com:8443",
];

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    let quoted: Vec<String> = ALLOW.iter().map(|entry| format!("\"{entry}\"")).collect();
    Policy::from_toml(&format!("[egress]\nallow = [{}]\n", quoted.join(", ")))
        .expect("the fuzz policy parses")
});

/// The allow list read again, by string comparison on the host's printed form.
fn named_by_allow_list(host: &str, port: u16) -> bool {
    let default_port = port == 443 || port == 80;
    match host {
        "example.org" => default_port,
        "10.0.0.1" => default_port,
        "[::1]" => port == 8080,
        "git.example.com" => port == 8443,
        _ => default_port && host.ends_with(".example.net") && host.len() > ".example.net".len(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = http::Uri::try_from(data) else {
        return;
    };
    for connect in [true, false] {
        let Ok(target) = ProxyTarget::of(&uri, connect) else {
            continue;
        };
        let printed = target.host().to_string();
        assert_eq!(
            EgressHost::parse(&printed).as_ref(),
            Ok(target.host()),
            "a host prints to itself"
        );
        // The Host header names the host and port that were decided on, never user info.
        let authority = target.authority();
        assert!(!authority.contains('@'), "user info in {authority:?}");
        let named = authority
            .parse::<http::uri::Authority>()
            .expect("the Host authority parses");
        assert_eq!(
            EgressHost::parse(named.host()).as_ref(),
            Ok(target.host()),
            "the Host header names another host than was decided on: {authority:?}"
        );
        assert_eq!(
            named.port_u16().unwrap_or(80),
            target.port(),
            "another port: {authority:?}"
        );
        let admitted = POLICY
            .egress()
            .admit(target.host(), target.port())
            .is_some();
        assert_eq!(
            admitted,
            named_by_allow_list(&printed, target.port()),
            "{printed}:{} admitted: {admitted}",
            target.port()
        );
    }
});
