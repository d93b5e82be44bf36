//! Upstream failures fail closed with a reason, nothing bad is cached, and a blocked version
//! cannot be fetched under any spelling of its URL.

use std::time::Duration;

use moat_test_support::clients::{Client, Workspace};
use moat_test_support::npm::FixtureRegistry;
use moat_test_support::raw_http::{self, RawResponse};

use crate::{Env, POLICY};

const NPM: Client = Client::Npm;
/// No retries with back-off on 5xx: one answer is what these tests look at.
const NO_RETRIES: &str = "--fetch-retries=0";

fn assert_fails_closed(response: &RawResponse, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.status_line);
    assert!(
        !response.reason.trim().is_empty()
            && response.reason != "Bad Gateway"
            && response.reason != "Gateway Timeout",
        "{what}: the reason phrase should say what failed: {}",
        response.status_line
    );
}

#[test]
fn upstream_down_fails_closed_with_502_and_a_reason() {
    let upstream = FixtureRegistry::start(crate::world());
    let env = Env::start_upstream(upstream, &FixtureRegistry::unreachable_url(), POLICY, &[]);
    let response = raw_http::get(env.gate.url(), "/npm/minimist");
    assert_fails_closed(&response, 502, "packument with the upstream down");
    let workspace = Workspace::new();
    NPM.run(
        &workspace,
        &env.registry(),
        &["install", "minimist@^1.2.0", NO_RETRIES],
    )
    .assert_failure()
    .assert_contains("502");
    assert_eq!(workspace.installed_version("minimist"), None);
}

#[test]
fn upstream_going_down_and_back_up() {
    let env = Env::start();
    env.upstream.set_down(true);
    let response = raw_http::get(env.gate.url(), "/npm/lodash");
    assert_fails_closed(&response, 502, "packument with the upstream down");
    env.upstream.set_down(false);
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["lodash"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("lodash").as_deref(),
        Some("4.17.21")
    );
}

#[test]
fn slow_upstream_times_out_with_504() {
    let env = Env::start_with(POLICY, &["--upstream-timeout", "1"]);
    // Far longer than the gate's timeout; cleared below, which releases the waiting request.
    env.upstream.set_delay(Duration::from_secs(600));
    let response = raw_http::get(env.gate.url(), "/npm/minimist");
    assert_fails_closed(&response, 504, "packument with a slow upstream");
    let workspace = Workspace::new();
    NPM.run(
        &workspace,
        &env.registry(),
        &["install", "lodash", NO_RETRIES],
    )
    .assert_failure()
    .assert_contains("504");
    env.upstream.set_delay(Duration::ZERO);
    NPM.add(&workspace, &env.registry(), &["lodash"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("lodash").as_deref(),
        Some("4.17.21")
    );
}

#[test]
fn integrity_mismatch_is_refused_and_not_cached() {
    let env = Env::start();
    env.upstream.set_corrupt_tarball("minimist", "1.2.8", true);
    let path = "/npm/minimist/-/minimist-1.2.8.tgz";
    let response = raw_http::get(env.gate.url(), path);
    assert!(
        response.status >= 500,
        "a tarball that does not match its integrity must not be served: {}",
        response.status_line
    );
    assert_ne!(response.body, env.upstream.tarball("minimist", "1.2.8"));
    let workspace = Workspace::new();
    NPM.run(
        &workspace,
        &env.registry(),
        &["install", "minimist@1.2.8", NO_RETRIES],
    )
    .assert_failure();
    assert_eq!(workspace.installed_version("minimist"), None);

    // Fixed upstream: the next request fetches again and serves the right bytes.
    env.upstream.set_corrupt_tarball("minimist", "1.2.8", false);
    env.upstream.clear_requests();
    let response = raw_http::get(env.gate.url(), path);
    assert_eq!(response.status, 200, "{}", response.status_line);
    assert_eq!(response.body, env.upstream.tarball("minimist", "1.2.8"));
    let refetched = env
        .upstream
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/minimist-1.2.8.tgz"));
    assert!(
        refetched,
        "the gate did not fetch the tarball again: {:?}",
        env.upstream.requests()
    );
    let workspace = Workspace::new();
    NPM.add(&workspace, &env.registry(), &["minimist@1.2.8"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("minimist").as_deref(),
        Some("1.2.8")
    );
}

#[test]
fn malformed_upstream_json_fails_closed_with_502() {
    let env = Env::start();
    env.upstream.set_malformed("minimist", true);
    let response = raw_http::get(env.gate.url(), "/npm/minimist");
    assert_fails_closed(&response, 502, "malformed packument");
    let workspace = Workspace::new();
    NPM.run(
        &workspace,
        &env.registry(),
        &["install", "minimist@^1.2.0", NO_RETRIES],
    )
    .assert_failure()
    .assert_contains("502");
    env.upstream.set_malformed("minimist", false);
    NPM.add(&workspace, &env.registry(), &["minimist@^1.2.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("minimist").as_deref(),
        Some("1.2.8")
    );
}

/// Security invariant: a blocked version cannot be fetched by any route. The upstream here
/// matches names case-insensitively (as some private registries do), so a gate that let a
/// case-changed name through would leak the bytes.
///
/// The spellings a client or a proxy may produce must answer 403 `moat: blocked`; the exotic
/// ones must at least not answer 2xx.
#[test]
fn blocked_version_is_unreachable_by_any_url() {
    let env = Env::start();
    env.upstream.set_case_insensitive(true);
    let strict =
        |method: &'static str, path: &'static str, headers: Vec<(&'static str, &'static str)>| {
            (true, method, path, headers)
        };
    let exotic = |path: &'static str| (false, "GET", path, Vec::new());
    let requests = vec![
        strict("GET", "/npm/minimist/-/minimist-1.2.5.tgz", vec![]),
        strict("GET", "/npm/%6dinimist/-/minimist-1.2.5.tgz", vec![]),
        strict("GET", "/npm/%6D%69nimist/-/minimist-1.2.5.tgz", vec![]),
        strict(
            "GET",
            "/npm/minimist/-/minimist-1.2.5.tgz?cache=bust",
            vec![],
        ),
        strict("GET", "/npm//minimist/-/minimist-1.2.5.tgz", vec![]),
        strict("GET", "/npm/minimist//-/minimist-1.2.5.tgz", vec![]),
        strict("GET", "/npm/minimist/-//minimist-1.2.5.tgz", vec![]),
        strict("GET", "//npm/minimist/-/minimist-1.2.5.tgz", vec![]),
        strict("GET", "/npm/Minimist/-/minimist-1.2.5.tgz", vec![]),
        strict("GET", "/npm/MINIMIST/-/MINIMIST-1.2.5.tgz", vec![]),
        strict("HEAD", "/npm/minimist/-/minimist-1.2.5.tgz", vec![]),
        strict(
            "GET",
            "/npm/minimist/-/minimist-1.2.5.tgz",
            vec![("Range", "bytes=0-99")],
        ),
        strict(
            "GET",
            "/npm/minimist/-/minimist-1.2.5.tgz",
            vec![("Range", "bytes=100-")],
        ),
        strict(
            "GET",
            "/npm/minimist/-/minimist-1.2.5.tgz",
            vec![("Accept-Encoding", "gzip")],
        ),
        strict("GET", "/npm/minimist/1.2.5", vec![]),
        strict("HEAD", "/npm/minimist/1.2.5", vec![]),
        strict("GET", "/npm/Minimist/1.2.5", vec![]),
        strict("GET", "/npm/minimist/legacy", vec![]),
        strict("GET", "/npm/@fixture/vuln/-/vuln-1.0.0.tgz", vec![]),
        strict("GET", "/npm/@fixture%2fvuln/-/vuln-1.0.0.tgz", vec![]),
        strict("GET", "/npm/@fixture%2Fvuln/-/vuln-1.0.0.tgz", vec![]),
        strict("GET", "/npm/%40fixture%2fvuln/-/vuln-1.0.0.tgz", vec![]),
        strict("GET", "/npm/%40fixture/vuln/-/vuln-1.0.0.tgz", vec![]),
        strict("GET", "/npm/@Fixture/Vuln/-/vuln-1.0.0.tgz", vec![]),
        strict("GET", "/npm/@fixture/vuln/1.0.0", vec![]),
        strict("GET", "/npm/@fixture%2fvuln/1.0.0", vec![]),
        exotic("/npm/minimist/-/minimist%2d1.2.5.tgz"),
        exotic("/npm/minimist%2f-%2fminimist-1.2.5.tgz"),
        exotic("/npm/./minimist/-/minimist-1.2.5.tgz"),
        exotic("/npm/x/../minimist/-/minimist-1.2.5.tgz"),
        exotic("/npm/minimist/v1.2.5"),
        exotic("/npm/minimist/=1.2.5"),
        exotic("/npm/minimist/-/minimist-1.2.5.tgz/"),
    ];
    let blocked_bytes = [
        env.upstream.tarball("minimist", "1.2.5"),
        env.upstream.tarball("@fixture/vuln", "1.0.0"),
    ];
    let mut failures = Vec::new();
    for (strict, method, path, headers) in &requests {
        let response = raw_http::request(env.gate.url(), method, path, headers);
        if std::env::var_os("MOAT_TEST_VERBOSE").is_some() {
            eprintln!("{method} {path} {headers:?} -> {}", response.status_line);
        }
        let blocked = response.status == 403 && response.status_line.contains("moat: blocked");
        let leaked = blocked_bytes
            .iter()
            .any(|bytes| is_part_of(&response.body, bytes));
        let ok = !leaked
            && if *strict {
                blocked
            } else {
                !(200..300).contains(&response.status)
            };
        if !ok {
            failures.push(format!(
                "{method} {path} {headers:?} -> {}{}",
                response.status_line,
                if leaked {
                    " (BLOCKED BYTES SERVED)"
                } else {
                    ""
                }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "a blocked version was reachable (strict spellings must answer 403 `moat: blocked`, \
         exotic ones anything but 2xx):\n{}",
        failures.join("\n")
    );
}

/// Whether `body` is a non-trivial slice of `bytes` (a whole tarball or a range of it).
fn is_part_of(body: &[u8], bytes: &[u8]) -> bool {
    body.len() >= 16 && bytes.windows(body.len()).any(|window| window == body)
}
