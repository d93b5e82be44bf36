//! pip and uv through the gate's PyPI routes: steering (blocked files listed yanked), refusals
//! the clients print (403 on the `.metadata` sidecar or the file), projects blocked as a whole
//! (never refused on their page), name and URL spellings, waivers, unknown ages and upstream
//! faults. Assertions follow `shared/reference/clients.md`.

use moat_test_support::clients::{PyWorkspace, PythonClient};
use moat_test_support::pypi::{FixturePypi, Project, Release};
use moat_test_support::raw_http;

use crate::{approved_version, date_from_today};

const CLIENTS: [PythonClient; 2] = [PythonClient::Pip, PythonClient::Uv];

/// A fixture advisory (HIGH) for `tiny-pad` 1.2.0 and later, its newest release.
const TINY_PAD_ADVISORY: &str = "PYSEC-MOAT-0001";
/// A fixture malicious-package record for `evil-helper`, which the upstream serves.
const EVIL_ADVISORY: &str = "MAL-MOAT-PY-0001";
/// A malicious-package record for `gone-evil-py`, which the upstream does not have.
const GONE_ADVISORY: &str = "MAL-MOAT-PY-0002";

/// The base policy (`crate::POLICY`), denying `left-pad-py` instead of an npm package.
fn policy() -> String {
    crate::POLICY.replace("npm:event-stream", "PyPI:left-pad-py")
}

/// The upstream: `Tiny_Pad` (spelled as its author does) with a vulnerable newest release,
/// a malicious project, a typosquat of `requests`, a denied project, one with a release a day
/// old, and an honest neighbour.
pub(crate) fn world() -> Vec<Project> {
    vec![
        Project::new("Tiny_Pad").versions(&["1.0.0", "1.1.0", "1.2.0"]),
        Project::new("evil-helper").versions(&["0.1.0"]),
        Project::new("reqeusts").versions(&["2.31.0"]),
        Project::new("left-pad-py").versions(&["1.0.0"]),
        Project::new("freshpy")
            .version("1.0.0")
            .version(Release::new("1.1.0").published_days_ago(1)),
        Project::new("requests").versions(&["2.31.0", "2.32.0"]),
    ]
}

type PyEnv = crate::EcosystemEnv<FixturePypi>;

impl PyEnv {
    fn start() -> Self {
        Self::start_with(&policy())
    }

    fn start_with(policy: &str) -> Self {
        Self::start_upstream(FixturePypi::start(world()), policy)
    }

    fn start_upstream(upstream: FixturePypi, policy: &str) -> Self {
        let url = format!("{}/simple", upstream.url());
        Self::new(upstream, "--upstream-pypi", &url, policy)
    }

    /// `http://127.0.0.1:PORT/pypi/simple/`.
    fn index(&self) -> String {
        format!("{}/pypi/simple/", self.gate.url())
    }

    fn install(&self, client: PythonClient, requirements: &[&str]) -> (PyWorkspace, String) {
        let workspace = PyWorkspace::new();
        let output = client.install(&workspace, &self.index(), requirements);
        let text = output.text();
        (workspace, text)
    }
}

#[test]
fn loose_requirement_resolves_to_the_newest_approved_version() {
    let env = PyEnv::start();
    for client in CLIENTS {
        let workspace = PyWorkspace::new();
        let output = client.install(&workspace, &env.index(), &["tiny-pad>=1.0"]);
        output.assert_success();
        assert!(!output.text().contains("ERROR"), "{output}");
        assert_eq!(
            workspace.installed_version("tiny-pad").as_deref(),
            Some("1.1.0"),
            "{}: {output}",
            client.name()
        );
    }
}

/// The correction loop: an exact pin of the vulnerable release fails with the reason (from the
/// 403 on its `.metadata` or file) naming the advisory and an approved version; retrying with
/// that version installs.
#[test]
fn pinned_vulnerable_version_fails_with_reason_and_approved_version_installs() {
    let env = PyEnv::start();
    for client in CLIENTS {
        let workspace = PyWorkspace::new();
        let refused = client.install(&workspace, &env.index(), &["tiny-pad==1.2.0"]);
        refused
            .assert_failure()
            .assert_contains("moat: blocked")
            .assert_contains(TINY_PAD_ADVISORY)
            .assert_contains("403");
        let text = refused.text();
        let approved = approved_version(&text, "tiny-pad")
            .unwrap_or_else(|| panic!("{}: no approved version in: {text}", client.name()));
        assert_eq!(approved, "1.1.0");
        assert_eq!(workspace.installed_version("tiny-pad"), None);
        let pin = format!("tiny-pad=={approved}");
        client
            .install(&workspace, &env.index(), &[pin.as_str()])
            .assert_success();
        assert_eq!(
            workspace.installed_version("tiny-pad").as_deref(),
            Some("1.1.0")
        );
    }
}

#[test]
fn malicious_typosquat_and_denied_projects_are_refused_with_their_rule() {
    let env = PyEnv::start();
    for client in CLIENTS {
        let cases: [(&str, &[&str]); 4] = [
            ("evil-helper", &["moat.malicious", EVIL_ADVISORY]),
            // Not on the upstream at all: one synthetic candidate carries the reason.
            ("gone-evil-py", &["moat.malicious", GONE_ADVISORY]),
            ("reqeusts", &["moat.typosquat", "did you mean requests"]),
            ("left-pad-py", &["moat.denied", "abandoned, once hijacked"]),
        ];
        for (project, needles) in cases {
            let (workspace, text) = env.install(client, &[project]);
            assert!(text.contains("moat: blocked"), "{}: {text}", client.name());
            for needle in needles {
                assert!(
                    text.contains(needle),
                    "{} {project}: missing {needle:?} in: {text}",
                    client.name()
                );
            }
            assert_eq!(workspace.installed(), Default::default(), "{text}");
        }
        // The project the typosquat imitates installs.
        let (workspace, text) = env.install(client, &["requests"]);
        assert_eq!(
            workspace.installed_version("requests").as_deref(),
            Some("2.32.0"),
            "{text}"
        );
    }
}

#[test]
fn too_new_release_is_skipped_in_ranges_and_refused_when_pinned() {
    let env = PyEnv::start();
    for client in CLIENTS {
        let (workspace, text) = env.install(client, &["freshpy"]);
        assert_eq!(
            workspace.installed_version("freshpy").as_deref(),
            Some("1.0.0"),
            "{text}"
        );
        let (workspace, text) = env.install(client, &["freshpy==1.1.0"]);
        assert!(text.contains("moat.too-new"), "{}: {text}", client.name());
        assert_eq!(workspace.installed_version("freshpy"), None);
    }
}

fn policy_with_tiny_pad_waiver(until: &str) -> String {
    format!(
        "{}\n[[waiver]]\nrule = \"moat.vulnerable\"\npackage = \"PyPI:tiny-pad@1.2.0\"\n\
         until = \"{until}\"\nreason = \"e2e: accepted until a fix ships\"\n",
        policy()
    )
}

#[test]
fn waiver_admits_its_version_until_its_date() {
    let env = PyEnv::start_with(&policy_with_tiny_pad_waiver(&date_from_today(1)));
    for client in CLIENTS {
        let (workspace, text) = env.install(client, &["tiny-pad==1.2.0"]);
        assert_eq!(
            workspace.installed_version("tiny-pad").as_deref(),
            Some("1.2.0"),
            "{}: {text}",
            client.name()
        );
    }
    let expired = PyEnv::start_with(&policy_with_tiny_pad_waiver(&date_from_today(-1)));
    for client in CLIENTS {
        let (workspace, text) = expired.install(client, &["tiny-pad==1.2.0"]);
        assert!(
            text.contains(TINY_PAD_ADVISORY),
            "{}: {text}",
            client.name()
        );
        assert_eq!(workspace.installed_version("tiny-pad"), None);
    }
}

/// Where the upstream gives no upload time (an HTML-only index), the verdict says `age unknown`
/// and the policy's `[age] unknown` decides.
#[test]
fn unknown_age_is_decided_by_the_policy() {
    let upstream = FixturePypi::start(world());
    upstream.set_html_only(true);
    let blocking = policy().replace("min-days = 3", "min-days = 3\nunknown = \"block\"");
    let env = PyEnv::start_upstream(upstream, &blocking);
    let (workspace, text) = env.install(PythonClient::Pip, &["requests==2.32.0"]);
    assert!(text.contains("moat.too-new"), "{text}");
    assert!(text.contains("age unknown"), "{text}");
    assert_eq!(workspace.installed_version("requests"), None);

    let upstream = FixturePypi::start(world());
    upstream.set_html_only(true);
    let warn = PyEnv::start_upstream(upstream, &policy());
    let (workspace, text) = warn.install(PythonClient::Pip, &["requests==2.32.0"]);
    assert_eq!(
        workspace.installed_version("requests").as_deref(),
        Some("2.32.0"),
        "{text}"
    );
}

/// Security invariant: a blocked file is unreachable by every spelling of its URL — project
/// name case and separators, percent-encoding, duplicate slashes, the `.metadata` sidecar,
/// HEAD and Range requests — and both index formats mark it yanked with the reason.
#[test]
fn blocked_file_is_unreachable_by_every_url_spelling() {
    let env = PyEnv::start();
    let wheel = "tiny_pad-1.2.0-py3-none-any.whl";
    let spellings = [
        format!("/pypi/files/tiny-pad/{wheel}"),
        format!("/pypi/files/Tiny_Pad/{wheel}"),
        format!("/pypi/files/tiny.pad/{wheel}"),
        format!("/pypi/files/TINY--PAD/{wheel}"),
        format!("/pypi/files/tiny%2Dpad/{wheel}"),
        "/pypi/files/tiny-pad/tiny%5Fpad-1.2.0-py3-none-any.whl".to_owned(),
        format!("//pypi//files//tiny-pad//{wheel}"),
        format!("/pypi/files/tiny-pad/{wheel}.metadata"),
        format!("/pypi/files/tiny-pad/{wheel}%2Emetadata"),
    ];
    for path in &spellings {
        let reason = "moat: blocked tiny-pad@1.2.0 (moat.vulnerable)";
        for response in raw_http::assert_refused_every_way(env.gate.url(), path, reason) {
            assert!(response.text().contains(TINY_PAD_ADVISORY), "{path}");
            assert!(
                response
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("text/plain")),
                "{path}"
            );
        }
    }
    // The file under another project's path is no file at all.
    let elsewhere = raw_http::get(env.gate.url(), &format!("/pypi/files/requests/{wheel}"));
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.status_line);
    // Double encoding and traversal are refused before routing.
    for path in [
        format!("/pypi/files/tiny-pad/%252E%252E/{wheel}"),
        format!("/pypi/files/tiny-pad/../requests/{wheel}"),
    ] {
        let response = raw_http::get(env.gate.url(), &path);
        assert_eq!(response.status, 400, "{path}: {}", response.status_line);
    }
    // Both index formats list the file, yanked with the reason, linked to the gate.
    let json = raw_http::request(
        env.gate.url(),
        "GET",
        "/pypi/simple/TINY_pad/",
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_eq!(json.status, 200);
    let page = json.json();
    let file = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == wheel)
        .expect("blocked file listed");
    assert!(
        file["yanked"].as_str().unwrap().contains(TINY_PAD_ADVISORY),
        "{file}"
    );
    assert!(
        file["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/pypi/files/", env.gate.url()))
    );
    let html = raw_http::request(
        env.gate.url(),
        "GET",
        "/pypi/simple/tiny.pad",
        &[("Accept", "text/html")],
    );
    assert_eq!(html.status, 200);
    assert!(
        html.text()
            .contains("data-yanked=\"moat: blocked tiny-pad@1.2.0")
    );
    // Nothing blocked was ever fetched from the upstream.
    assert!(
        env.upstream
            .requests()
            .iter()
            .all(|r| !r.path.contains("tiny_pad-1.2.0")),
        "{:?}",
        env.upstream.requests()
    );
}

#[test]
fn upstream_faults_fail_closed_with_a_reason() {
    let env = PyEnv::start();
    // A corrupt file is refused, not served (and not cached).
    let wheel = "requests-2.32.0-py3-none-any.whl";
    env.upstream.set_corrupt_file(wheel, true);
    let response = raw_http::get(env.gate.url(), &format!("/pypi/files/requests/{wheel}"));
    assert_eq!(response.status, 502, "{}", response.status_line);
    assert!(
        response.reason.contains("failed its integrity check"),
        "{}",
        response.status_line
    );
    env.upstream.set_corrupt_file(wheel, false);
    let response = raw_http::get(env.gate.url(), &format!("/pypi/files/requests/{wheel}"));
    assert_eq!(response.status, 200, "{}", response.status_line);
    assert_eq!(response.body, env.upstream.file(wheel));

    // A malformed page is a 502 with a reason.
    env.upstream.set_malformed("freshpy", true);
    let response = raw_http::request(
        env.gate.url(),
        "GET",
        "/pypi/simple/freshpy/",
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_eq!(response.status, 502, "{}", response.status_line);
    assert!(
        response
            .reason
            .starts_with("moat: upstream sent malformed metadata")
    );

    // Upstream down: nothing installs; uv prints the gate's reason (pip prints no index
    // error, only "from versions: none", as with any refused project page).
    env.upstream.set_down(true);
    let response = raw_http::get(env.gate.url(), "/pypi/simple/left-pad-2/");
    assert_eq!(response.status, 502, "{}", response.status_line);
    assert!(
        response.reason.starts_with("moat: upstream PyPI"),
        "{}",
        response.status_line
    );
    let (workspace, text) = env.install(PythonClient::Uv, &["left-pad-2"]);
    assert!(
        text.contains("502 moat: upstream PyPI unreachable"),
        "{text}"
    );
    assert_eq!(workspace.installed(), Default::default());
    let (workspace, text) = env.install(PythonClient::Pip, &["left-pad-2"]);
    assert!(text.contains("No matching distribution"), "{text}");
    assert_eq!(workspace.installed(), Default::default());
}

/// Every answer above was recorded first: the audit log names PyPI decisions, blocked ones with
/// their rule.
#[test]
fn decisions_are_in_the_audit_log() {
    let env = PyEnv::start();
    let (_, text) = env.install(PythonClient::Pip, &["tiny-pad==1.2.0"]);
    assert!(text.contains("moat: blocked"), "{text}");
    let listed = env
        .gate
        .run(&["audit", "list", "--json"])
        .assert_success()
        .json();
    let events = listed.as_array().expect("array of events");
    let blocked = events.iter().find(|event| {
        event["event"]["ecosystem"] == "PyPI"
            && event["event"]["package"] == "tiny-pad"
            && event["event"]["version"] == "1.2.0"
            && event["event"]["action"] == "block"
    });
    let blocked = blocked.unwrap_or_else(|| panic!("no block recorded: {listed}"));
    assert_eq!(blocked["event"]["rules"][0], "moat.vulnerable");
    assert_eq!(blocked["event"]["advisories"][0], TINY_PAD_ADVISORY);
    assert!(
        events
            .iter()
            .any(|e| e["event"]["ecosystem"] == "PyPI" && e["event"]["request"] == "metadata"),
        "{listed}"
    );
}

#[test]
fn why_explains_pypi_verdicts() {
    let env = PyEnv::start();
    let response = raw_http::get(env.gate.url(), "/-/why/pypi/tiny_pad/1.2.0");
    assert_eq!(response.status, 200, "{}", response.status_line);
    assert!(
        response.text().contains(TINY_PAD_ADVISORY),
        "{}",
        response.text()
    );
    let output = env
        .gate
        .run_with_sources(&["why", "pypi", "Tiny.Pad@1.2.0", "--json"])
        .assert_success()
        .json();
    assert_eq!(output["action"], "block");
    assert_eq!(output["approved"][0], "1.1.0");
}
