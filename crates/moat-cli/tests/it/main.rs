//! End-to-end tests: the real `moat` binary between real package clients (npm 11, pnpm 10,
//! yarn 1, yarn 4, pip, uv, cargo) and a fixture upstream registry, all on loopback. Assertions follow what
//! each client prints (see `shared/reference/clients.md`) and what it installs.
//!
//! Every test starts its own fixture, gate and client workspace, so tests run in parallel and
//! share no cache.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod audit;
mod bad_input;
mod cargo;
mod cases;
mod cli;
mod crash;
mod export;
mod invariants;
mod npm;
mod pnpm;
mod postgres;
mod pypi;
mod run;
mod tls;
mod yarn;

use std::path::Path;

use moat_test_support::gate::{GateArgs, MoatGate};
use moat_test_support::npm::{FixtureRegistry, Package, Version};
use moat_test_support::osv::{self, AdvisoryDir, PopularDir};

/// The binary under test.
pub const MOAT: &str = env!("CARGO_BIN_EXE_moat");

/// The real advisory for minimist (in the shared samples): 1.0.0 ≤ v < 1.2.6 and v < 0.2.4.
pub const MINIMIST_ADVISORY: &str = "GHSA-xvch-5gv4-984h";
/// A fixture advisory (HIGH, no fixed release) for `tiny-pad` ≥ 1.2.0, its newest version.
pub const TINY_PAD_ADVISORY: &str = "GHSA-moat-tiny-pad1";
/// A fixture advisory (HIGH) for the scoped `@fixture/vuln` 1.0.0.
pub const SCOPED_ADVISORY: &str = "GHSA-moat-scoped-001";
/// A fixture malicious-package record for `gone-evil`, which the upstream does not have (any
/// more).
pub const GONE_EVIL_ADVISORY: &str = "MAL-0000-moat-1";

/// The base policy: vulnerable at high and above blocked (also without a fixed release, so the
/// newest `tiny-pad` is blocked), 3 days minimum age, typosquats blocked, event-stream denied.
pub const POLICY: &str = r#"
[advisories]
block-malicious = true
block-vulnerable = "high"
require-fix = false

[age]
min-days = 3

[names]
typosquat = "block"

[[deny]]
package = "npm:event-stream"
reason = "abandoned, once hijacked"
"#;

/// The upstream every test starts from. Publish times are years old unless a test is about
/// age (`fresh-pkg@1.1.0`, one day old).
pub fn world() -> Vec<Package> {
    vec![
        // 1.2.5 is vulnerable (GHSA-xvch-5gv4-984h), 1.2.6 and 1.2.8 are fixed; `legacy` points
        // at the blocked version for the dist-tag route.
        Package::new("minimist")
            .versions(&["0.2.4", "1.2.0", "1.2.5", "1.2.6", "1.2.8"])
            .tag("legacy", "1.2.5"),
        // The newest version (and `latest`) is vulnerable: a range must land on 1.1.0.
        Package::new("tiny-pad").versions(&["1.0.0", "1.1.0", "1.2.0"]),
        // MAL-2021-1 (shared samples): every version malicious.
        Package::new("cxp-jquery").versions(&["1.0.0", "1.0.1"]),
        Package::new("lodash").versions(&["4.17.20", "4.17.21"]),
        // A typosquat of lodash (adjacent swap).
        Package::new("lodahs").versions(&["1.0.0"]),
        // Denied by the base policy.
        Package::new("event-stream").versions(&["3.3.4"]),
        // 1.1.0 was published a day ago: too new for min-days = 3.
        Package::new("fresh-pkg")
            .version("1.0.0")
            .version(Version::new("1.1.0").published_days_ago(1)),
        Package::new("@fixture/scoped").versions(&["1.0.0", "1.1.0"]),
        Package::new("@fixture/vuln").versions(&["1.0.0", "1.0.1"]),
        // Depends on the vulnerable-in-its-newest tiny-pad through a range.
        Package::new("uses-tiny-pad")
            .version(Version::new("2.0.0").dependency("tiny-pad", "^1.0.0")),
    ]
}

/// The shared samples (minimist, cxp-jquery, …) plus the fixture advisories.
pub fn advisories() -> AdvisoryDir {
    AdvisoryDir::with_samples(&[
        osv::vulnerability(
            TINY_PAD_ADVISORY,
            "tiny-pad",
            "HIGH",
            "command injection in tiny-pad",
            &[("introduced", "1.2.0")],
        ),
        osv::vulnerability(
            SCOPED_ADVISORY,
            "@fixture/vuln",
            "HIGH",
            "path traversal in @fixture/vuln",
            &[("introduced", "0"), ("fixed", "1.0.1")],
        ),
        osv::malicious(GONE_EVIL_ADVISORY, "gone-evil"),
    ])
}

/// Names worth impersonating.
pub fn popular() -> PopularDir {
    PopularDir::new(&["lodash", "express", "react", "minimist", "chalk"])
}

/// One test's world: the fixture upstream, its advisories and popular list, and a gate in
/// front of it.
pub struct Env {
    pub gate: MoatGate,
    pub upstream: FixtureRegistry,
    upstream_url: String,
    advisories: AdvisoryDir,
    popular: PopularDir,
    data: tempfile::TempDir,
}

impl Env {
    /// The standard world behind a gate with the base policy.
    pub fn start() -> Self {
        Self::start_with(POLICY, &[])
    }

    /// The standard world behind a gate with this policy and extra gate flags.
    pub fn start_with(policy: &str, extra: &[&str]) -> Self {
        let upstream = FixtureRegistry::start(world());
        let url = upstream.url().to_owned();
        Self::start_upstream(upstream, &url, policy, extra)
    }

    /// A gate whose `--upstream-npm` is `upstream_url` (which need not be the fixture's).
    pub fn start_upstream(
        upstream: FixtureRegistry,
        upstream_url: &str,
        policy: &str,
        extra: &[&str],
    ) -> Self {
        let advisories = advisories();
        let popular = popular();
        let data = tempfile::Builder::new()
            .prefix("moat-data-")
            .tempdir()
            .expect("temp dir");
        let args = gate_args(
            upstream_url,
            &advisories,
            &popular,
            data.path(),
            policy,
            extra,
        );
        let gate = MoatGate::start(Path::new(MOAT), args);
        Self {
            gate,
            upstream,
            upstream_url: upstream_url.to_owned(),
            advisories,
            popular,
            data,
        }
    }

    /// Stops the gate and starts a new one on the same address and data dir (cache, audit
    /// log) with another policy: to clients it is the same registry.
    pub fn restart_with(&mut self, policy: &str, extra: &[&str]) {
        let address = self.gate.url().trim_start_matches("http://").to_owned();
        self.gate.stop();
        let args = gate_args(
            &self.upstream_url,
            &self.advisories,
            &self.popular,
            self.data.path(),
            policy,
            extra,
        )
        .listen(&address);
        self.gate = MoatGate::start(Path::new(MOAT), args);
    }

    /// `http://127.0.0.1:PORT/npm/`.
    pub fn registry(&self) -> String {
        self.gate.npm_registry()
    }
}

fn gate_args(
    upstream_url: &str,
    advisories: &AdvisoryDir,
    popular: &PopularDir,
    data: &Path,
    policy: &str,
    extra: &[&str],
) -> GateArgs {
    let mut args = GateArgs::new(upstream_url, advisories.path(), popular.path(), policy);
    for arg in extra {
        args = args.arg(arg);
    }
    args.data_dir(data)
}

/// The version named after `approved: ` in a block message (`approved: minimist@1.2.8; …`).
pub fn approved_version(output: &str, package: &str) -> Option<String> {
    let (_, rest) = output.split_once("approved: ")?;
    let token = rest
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .next()?;
    let (name, version) = token.rsplit_once('@')?;
    (name == package && !version.is_empty()).then(|| version.to_owned())
}

/// Advisories and popular lists for the PyPI and crates.io tests: `PyPI.zip` and
/// `crates.io.zip` with fixture records, `PyPI.txt` and `crates.io.txt`.
pub struct EcosystemData {
    advisories: tempfile::TempDir,
    popular: tempfile::TempDir,
}

impl EcosystemData {
    pub fn advisories(&self) -> &Path {
        self.advisories.path()
    }

    pub fn popular(&self) -> &Path {
        self.popular.path()
    }
}

/// One OSV record: a vulnerability (`severity` set) or, without one, a malicious package
/// (`MAL-` id); `events` as OSV range events.
fn record(
    ecosystem: &str,
    id: &str,
    package: &str,
    severity: Option<&str>,
    events: &[(&str, &str)],
) -> serde_json::Value {
    let range_type = if ecosystem == "PyPI" {
        "ECOSYSTEM"
    } else {
        "SEMVER"
    };
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|(kind, version)| serde_json::json!({ *kind: version }))
        .collect();
    let mut record = serde_json::json!({
        "schema_version": "1.6.0",
        "id": id,
        "modified": "2024-01-01T00:00:00Z",
        "published": "2024-01-01T00:00:00Z",
        "summary": format!("fixture advisory for {package}"),
        "affected": [{
            "package": { "ecosystem": ecosystem, "name": package },
            "ranges": [{ "type": range_type, "events": events }],
        }],
    });
    if let Some(severity) = severity {
        record["database_specific"] = serde_json::json!({ "severity": severity });
    }
    record
}

/// A gate in front of one fixture upstream over `--upstream-pypi` or `--upstream-crates` (npm
/// unreachable), with the PyPI and crates.io fixture advisories and popular lists; each
/// ecosystem's tests add their own methods (`CargoEnv`, `PyEnv`).
pub struct EcosystemEnv<U> {
    pub gate: MoatGate,
    pub upstream: U,
    _data: EcosystemData,
}

impl<U> EcosystemEnv<U> {
    /// `moat gate FLAG URL` in front of `upstream`, which answers at `url`.
    pub fn new(upstream: U, flag: &str, url: &str, policy: &str) -> Self {
        let data = ecosystem_data();
        let args = GateArgs::new(
            &FixtureRegistry::unreachable_url(),
            data.advisories(),
            data.popular(),
            policy,
        )
        .arg(flag)
        .arg(url)
        .arg("--upstream-timeout")
        .arg("5");
        Self {
            gate: MoatGate::start(Path::new(MOAT), args),
            upstream,
            _data: data,
        }
    }
}

fn ecosystem_data() -> EcosystemData {
    let temp = |prefix: &str| {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("temp dir")
    };
    let data = EcosystemData {
        advisories: temp("moat-advisories-"),
        popular: temp("moat-popular-"),
    };
    write_ecosystem_data(data.advisories(), data.popular());
    data
}

/// Writes the PyPI and crates.io fixture advisories (`PyPI.zip`, `crates.io.zip`) and popular
/// lists (`PyPI.txt`, `crates.io.txt`) into the given directories.
pub fn write_ecosystem_data(advisories: &Path, popular: &Path) {
    let pypi = [
        record(
            "PyPI",
            "PYSEC-MOAT-0001",
            "tiny-pad",
            Some("HIGH"),
            &[("introduced", "1.2.0")],
        ),
        record(
            "PyPI",
            "MAL-MOAT-PY-0001",
            "evil-helper",
            None,
            &[("introduced", "0")],
        ),
        record(
            "PyPI",
            "MAL-MOAT-PY-0002",
            "gone-evil-py",
            None,
            &[("introduced", "0")],
        ),
    ];
    osv::write_zip(&advisories.join("PyPI.zip"), &pypi);
    let crates = [
        record(
            "crates.io",
            "RUSTSEC-2099-0001",
            "tinycrate",
            Some("HIGH"),
            &[("introduced", "1.2.0")],
        ),
        record(
            "crates.io",
            "MAL-MOAT-RS-0001",
            "evil-crate",
            None,
            &[("introduced", "0")],
        ),
        record(
            "crates.io",
            "MAL-MOAT-RS-0002",
            "gone-evil-rs",
            None,
            &[("introduced", "0")],
        ),
    ];
    osv::write_zip(&advisories.join("crates.io.zip"), &crates);
    std::fs::write(
        popular.join("PyPI.txt"),
        "requests
numpy
django
",
    )
    .unwrap();
    std::fs::write(
        popular.join("crates.io.txt"),
        "serde_json
serde
tokio
regex
",
    )
    .unwrap();
}

/// UTC date `days` from today, `YYYY-MM-DD`.
pub fn date_from_today(days: i64) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let date = today
        .checked_add(jiff::Span::new().days(days))
        .expect("date in range");
    date.to_string()
}

#[test]
fn approved_version_is_parsed_from_the_block_message() {
    let message = "npm error 403 403 moat: blocked minimist@1.2.5 (moat.vulnerable): GHSA-xvch-5gv4-984h (critical, prototype pollution in minimist); approved: minimist@1.2.8; why: http://127.0.0.1:1/-/why/npm/minimist/1.2.5 - GET http://…";
    assert_eq!(
        approved_version(message, "minimist").as_deref(),
        Some("1.2.8")
    );
    let scoped =
        "moat: blocked @a/b@1.0.0 (moat.vulnerable): X; approved: @a/b@1.0.1, @a/b@0.9.0; why: …";
    assert_eq!(approved_version(scoped, "@a/b").as_deref(), Some("1.0.1"));
    assert_eq!(approved_version("approved: other@1.0.0;", "minimist"), None);
}
