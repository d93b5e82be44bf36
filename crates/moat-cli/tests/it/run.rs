//! `moat run`: real package clients inside the embedded sandbox, whose only way out is the
//! session's gate. Every answer they get is the gate's, and every decision lands in the audit
//! log under the session.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use moat_test_support::crates::FixtureCrates;
use moat_test_support::gate::{GateArgs, MoatGate, MoatOutput, run_moat};
use moat_test_support::npm::FixtureRegistry;
use moat_test_support::pypi::FixturePypi;
use serde_json::Value;

use crate::{MOAT, POLICY, advisories, popular, world};

/// One session's world: the npm and PyPI fixtures, advisories for both, a data dir and a
/// workspace.
struct RunEnv {
    npm: FixtureRegistry,
    pypi: FixturePypi,
    crates: FixtureCrates,
    advisories: moat_test_support::osv::AdvisoryDir,
    popular: moat_test_support::osv::PopularDir,
    data: tempfile::TempDir,
    workspace: tempfile::TempDir,
    policy: PathBuf,
}

impl RunEnv {
    fn start(policy: &str) -> Self {
        let data = tempfile::Builder::new()
            .prefix("moat-run-data-")
            .tempdir()
            .unwrap();
        let workspace = tempfile::Builder::new()
            .prefix("moat-run-ws-")
            .tempdir()
            .unwrap();
        std::fs::write(
            workspace.path().join("package.json"),
            r#"{"name":"ws","version":"1.0.0","private":true}"#,
        )
        .unwrap();
        let policy_path = data.path().join("policy.toml");
        std::fs::write(&policy_path, policy).unwrap();
        // npm advisories and popular names, plus the PyPI and crates.io ones beside them.
        let advisories = advisories();
        let popular = popular();
        crate::write_ecosystem_data(advisories.path(), popular.path());
        Self {
            npm: FixtureRegistry::start(world()),
            pypi: FixturePypi::start(crate::pypi::world()),
            crates: FixtureCrates::start(crate::cargo::world()),
            advisories,
            popular,
            data,
            workspace,
            policy: policy_path,
        }
    }

    fn flags(&self) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--data-dir".into(),
            path(self.data.path()),
            "--advisories".into(),
            path(self.advisories.path()),
            "--popular".into(),
            path(self.popular.path()),
            "--policy".into(),
            path(&self.policy),
            "--upstream-npm".into(),
            self.npm.url().to_owned(),
            "--upstream-pypi".into(),
            format!("{}/simple", self.pypi.url()),
            "--upstream-crates".into(),
            format!("{}/index", self.crates.url()),
        ]
    }

    /// `run [flags] --workspace WS --agent e2e-agent --operator alice [extra] -- command…`.
    fn run_args(&self, extra: &[&str], command: &[&str]) -> Vec<String> {
        self.run_args_as(("e2e-agent", "alice"), extra, command)
    }

    /// [`run_args`](Self::run_args) with `--data-dir DATA_DIR` instead of this world's.
    fn run_args_on(&self, data_dir: &Path, extra: &[&str], command: &[&str]) -> Vec<String> {
        let mut args = self.run_args(extra, command);
        let value = args
            .iter()
            .position(|a| a == "--data-dir")
            .expect("--data-dir")
            + 1;
        args[value] = data_dir.to_string_lossy().into_owned();
        args
    }

    /// Runs `run` (a `moat run` on `data_dir` that must succeed; it answers its stderr) with a
    /// gate of `moat run`'s own, then with a `moat gate` running on `data_dir`; what that gate
    /// printed, once it has logged the session's end (after it recorded the end handed over
    /// and removed the session's directory).
    fn with_own_and_running_gate(&self, data_dir: &Path, run: impl Fn() -> String) -> String {
        let own = run();
        assert!(!own.contains("running gate"), "{own}");
        let gate = MoatGate::start(Path::new(MOAT), self.gate_args(POLICY).data_dir(data_dir));
        let served = run();
        assert!(
            served.contains("moat: using the running gate (pid"),
            "{served}"
        );
        gate.output_once("session ended")
    }

    /// Runs `moat run` on `data_dir` with `extra` flags and `command`, which must succeed;
    /// its stdout and stderr.
    fn run_ok_on(&self, data_dir: &Path, extra: &[&str], command: &[&str]) -> (String, String) {
        let output = std::process::Command::new(MOAT)
            .args(self.run_args_on(data_dir, extra, command))
            .env("NO_COLOR", "1")
            .output()
            .expect("run moat");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stdout}\n{stderr}");
        (stdout, stderr)
    }

    /// [`run_args`](Self::run_args) for another agent and operator.
    fn run_args_as(
        &self,
        (agent, operator): (&str, &str),
        extra: &[&str],
        command: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(self.flags());
        args.extend([
            "--workspace".into(),
            self.workspace.path().to_string_lossy().into_owned(),
        ]);
        args.extend([
            "--agent".into(),
            agent.into(),
            "--operator".into(),
            operator.into(),
        ]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push("--".into());
        args.extend(command.iter().map(|s| (*s).to_owned()));
        args
    }

    /// `moat run [flags] [extra] --workspace WS -- command…`.
    fn run(&self, extra: &[&str], command: &[&str]) -> MoatOutput {
        self.run_with_env(extra, command, &[])
    }

    fn run_with_env(&self, extra: &[&str], command: &[&str], env: &[(&str, &str)]) -> MoatOutput {
        output_of(self.run_args(extra, command), env)
    }

    /// `moat run [extra] -- npm install --no-audit --no-fund SPEC`.
    fn npm_install(&self, extra: &[&str], spec: &str) -> MoatOutput {
        self.run(extra, &["npm", "install", "--no-audit", "--no-fund", spec])
    }

    /// `moat run` as `who` (agent, operator) `-- python3 -m pip install --no-cache-dir --target
    /// WS/site REQUIREMENT`.
    fn pip_install_as(&self, who: (&str, &str), requirement: &str) -> MoatOutput {
        let target = self.workspace.path().join("site");
        let target = target.to_string_lossy();
        let pip = [
            "python3",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--target",
            &target,
            requirement,
        ];
        self.run_as(who, &pip)
    }

    /// The version of `name` npm installed in the workspace.
    fn installed_npm_version(&self, name: &str) -> String {
        let manifest = self
            .workspace
            .path()
            .join("node_modules")
            .join(name)
            .join("package.json");
        let installed: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
        installed["version"].as_str().unwrap_or_default().to_owned()
    }

    /// `moat run` of `command` as `agent`, operated by `operator`.
    fn run_as(&self, who: (&str, &str), command: &[&str]) -> MoatOutput {
        output_of(self.run_args_as(who, &[], command), &[])
    }

    /// `moat ARGS --data-dir DATA`, which must succeed.
    fn moat(&self, args: &[&str]) -> MoatOutput {
        let data = self.data.path().to_string_lossy().into_owned();
        let mut args = args.to_vec();
        args.extend(["--data-dir", &data]);
        let output = run_moat(Path::new(MOAT), &args);
        output.assert_success();
        output
    }

    /// A `moat gate` serving this world's data dir with `policy`, on a free port.
    fn gate(&self, policy: &str) -> MoatGate {
        MoatGate::start(Path::new(MOAT), self.gate_args(policy))
    }

    /// The data dir as a directory and a name relative to it.
    fn data_dir_relative(&self) -> (&Path, &Path) {
        let path = self.data.path();
        let parent = path.parent().expect("parent");
        (
            parent,
            path.strip_prefix(parent).expect("inside its parent"),
        )
    }

    /// A gate's arguments for this world's upstreams and sources, on its data dir.
    fn gate_args(&self, policy: &str) -> GateArgs {
        GateArgs::new(
            self.npm.url(),
            self.advisories.path(),
            self.popular.path(),
            policy,
        )
        .data_dir(self.data.path())
        .arg("--upstream-pypi")
        .arg(&format!("{}/simple", self.pypi.url()))
        .arg("--upstream-crates")
        .arg(&format!("{}/index", self.crates.url()))
    }

    /// `moat run --data-dir DATA --workspace WS --agent … --operator … -- command…` (no source
    /// flags: a running gate brings its own), spawned.
    fn spawn_bare(&self, command: &[&str]) -> std::process::Child {
        let data = self.data.path().to_string_lossy().into_owned();
        let workspace = self.workspace.path().to_string_lossy().into_owned();
        let mut args = vec![
            "run",
            "--data-dir",
            &data,
            "--workspace",
            &workspace,
            "--agent",
            "e2e-agent",
            "--operator",
            "alice",
            "--",
        ];
        args.extend(command);
        std::process::Command::new(MOAT)
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits (bounded) until `moat ps` lists a session; returns the listing.
    fn wait_for_session(&self) -> Value {
        let data = self.data.path().to_string_lossy().into_owned();
        for _ in 0..300 {
            let listed = run_moat(Path::new(MOAT), &["ps", "--json", "--data-dir", &data])
                .assert_success()
                .json();
            if listed.as_array().is_some_and(|a| !a.is_empty()) {
                return listed;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("no session showed up in `moat ps`");
    }

    /// A session on a running gate that `end` then kills or stops: the session's id, and what
    /// `moat run` printed on stderr once it stopped its sandbox for want of a gate.
    fn session_whose_gate_ends(&self, end: impl FnOnce(&mut MoatGate)) -> (String, String) {
        let mut gate = self.gate(POLICY);
        let mut child = self.spawn_bare(&["sleep", "60"]);
        let listed = self.wait_for_session();
        let session = listed[0]["session"].as_str().expect("session id");
        end(&mut gate);
        let (status, stderr) = wait_bounded(&mut child);
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains("control connection (it stopped); stopping the sandbox"),
            "{stderr}"
        );
        (session.to_owned(), stderr)
    }

    /// A session whose `moat run` is killed outright (`SIGKILL`) once `moat ps` lists it: its id.
    fn killed_session(&self) -> String {
        let (mut child, listed) = self.sleeping_session();
        child.kill().unwrap();
        child.wait().unwrap();
        listed["session"].as_str().expect("session id").to_owned()
    }

    /// Starts `moat run -- sleep 60` and waits until `moat ps` lists it: the process, and the
    /// listing's entry for it.
    fn sleeping_session(&self) -> (std::process::Child, Value) {
        let child = std::process::Command::new(MOAT)
            .args(self.run_args(&[], &["sleep", "60"]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moat run");
        let listed = self.wait_for_session();
        (child, listed[0].clone())
    }

    fn events(&self) -> Vec<Value> {
        let data = self.data.path().to_string_lossy().into_owned();
        let listed = run_moat(
            Path::new(MOAT),
            &["audit", "list", "--json", "--data-dir", &data],
        );
        let value = listed.assert_success().json();
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].clone())
            .collect()
    }
}

/// `moat ARGS` with `env` added, its output.
fn output_of(args: Vec<String>, env: &[(&str, &str)]) -> MoatOutput {
    let mut cmd = std::process::Command::new(MOAT);
    cmd.args(&args).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run moat").into()
}

fn text(output: &MoatOutput) -> String {
    format!("{}\n{}", output.stdout, output.stderr)
}

/// Every session started and ended in the log, and every decision carries the identity of one
/// of them. Returns the session ids, oldest first.
fn assert_recorded_under_sessions(events: &[Value], min_decisions: usize) -> Vec<String> {
    let sessions: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "session-start")
        .map(|start| {
            assert_eq!(start["agent"], "e2e-agent");
            assert_eq!(start["operator"], "alice");
            assert!(matches!(
                start["backend"].as_str(),
                Some("embedded" | "podman")
            ));
            start["session"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(!sessions.is_empty(), "no session-start in {events:?}");
    for session in &sessions {
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "session-end" && e["session"] == session.as_str()),
            "session {session} has no end: {events:?}"
        );
    }
    let identities: Vec<String> = sessions.iter().map(|s| format!("session:{s}")).collect();
    let decisions: Vec<&Value> = events.iter().filter(|e| e["type"] == "decision").collect();
    assert!(decisions.len() >= min_decisions, "{events:?}");
    for decision in decisions {
        let identity = decision["identity"].as_str().unwrap_or_default();
        assert!(identities.iter().any(|i| i == identity), "{decision}");
    }
    sessions
}

/// Whether the log holds a decision that blocked `package`@`version` of `ecosystem`.
fn blocks(events: &[Value], ecosystem: &str, package: &str, version: &str) -> bool {
    events.iter().any(|e| {
        e["type"] == "decision"
            && e["ecosystem"] == ecosystem
            && e["package"] == package
            && e["version"] == version
            && e["action"] == "block"
    })
}

#[test]
fn npm_in_a_session_is_refused_with_the_reason_and_steered_to_approved_versions() {
    let env = RunEnv::start(POLICY);
    let refused = env.npm_install(&[], "minimist@1.2.5");
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("moat: blocked minimist@1.2.5 (moat.vulnerable)"),
        "{}",
        text(&refused)
    );
    let loose = env.npm_install(&[], "minimist@^1.2.0");
    assert!(loose.status.success(), "{}", text(&loose));
    assert_eq!(env.installed_npm_version("minimist"), "1.2.8");
    let events = env.events();
    assert!(blocks(&events, "npm", "minimist", "1.2.5"), "{events:?}");
    assert_eq!(assert_recorded_under_sessions(&events, 2).len(), 2);
}

/// The system of record after real sessions: which agents ran and who operates them, what each
/// consumed, who installed a package, what was refused and why; a rebuild answers the same.
#[test]
fn report_answers_from_real_sessions_and_a_rebuild_answers_the_same() {
    let env = RunEnv::start(POLICY);
    let npm = "npm install --no-audit --no-fund minimist@1.2.5; \
               npm install --no-audit --no-fund minimist@^1.2.0";
    let claude = env.run_as(("claude", "alice"), &["sh", "-c", npm]);
    assert!(claude.status.success(), "{}", text(&claude));
    let codex = env.pip_install_as(("codex", "bob"), "tiny-pad");
    assert!(codex.status.success(), "{}", text(&codex));

    let report = env.moat(&["report", "--json"]).json();
    let agents: Vec<_> = report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent"].clone(),
                a["operator"].clone(),
                a["running"].clone(),
            )
        })
        .collect();
    assert_eq!(
        agents,
        [
            ("claude".into(), "alice".into(), 0.into()),
            ("codex".into(), "bob".into(), 0.into())
        ],
        "{report:#}"
    );
    let consumed: Vec<_> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {} by {}",
                p["ecosystem"], p["name"], p["version"], p["agent"]
            )
        })
        .collect();
    assert_eq!(
        consumed,
        [
            r#""npm" "minimist" "1.2.8" by "claude""#,
            r#""PyPI" "tiny-pad" "1.1.0" by "codex""#
        ],
        "{report:#}"
    );
    let blocked = &report["blocked"].as_array().unwrap()[0];
    assert_eq!(blocked["name"], "minimist", "{report:#}");
    assert_eq!(blocked["version"], "1.2.5");
    assert_eq!(blocked["operator"], "alice");
    assert_eq!(blocked["rules"][0], "moat.vulnerable");
    assert!(
        blocked["approved"]
            .as_array()
            .unwrap()
            .contains(&"1.2.8".into()),
        "{blocked:#}"
    );

    // Who installed minimist: claude, run by alice, in its one session.
    let minimist = env
        .moat(&["report", "--package", "minimist", "--json"])
        .json();
    assert_eq!(minimist["packages"].as_array().unwrap().len(), 1);
    assert_eq!(minimist["packages"][0]["operator"], "alice");
    assert_eq!(minimist["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(minimist["sessions"][0]["agent"], "claude");
    let by_bob = env.moat(&["report", "--operator", "bob", "--json"]).json();
    assert!(by_bob["blocked"].as_array().unwrap().is_empty());
    assert_eq!(by_bob["packages"][0]["name"], "tiny-pad");

    let readable = env.moat(&["report"]).stdout;
    assert!(
        readable.contains("npm minimist 1.2.8  claude (alice)"),
        "{readable}"
    );
    assert!(
        readable.contains("npm minimist@1.2.5 (artifact)  moat.vulnerable"),
        "{readable}"
    );

    let rebuilt = env.moat(&["audit", "rebuild", "--json"]).json();
    assert_eq!(rebuilt["rebuilt"], true);
    assert_eq!(env.moat(&["report", "--json"]).json(), report);
}

#[test]
fn pip_in_a_session_is_refused_with_the_reason_and_steered_to_approved_versions() {
    let env = RunEnv::start(POLICY);
    let pip = |requirement: &str| env.pip_install_as(("e2e-agent", "alice"), requirement);
    let refused = pip("tiny-pad==1.2.0");
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("moat: blocked tiny-pad@1.2.0"),
        "{}",
        text(&refused)
    );
    let loose = pip("tiny-pad");
    assert!(loose.status.success(), "{}", text(&loose));
    assert!(
        env.workspace
            .path()
            .join("site/tiny_pad-1.1.0.dist-info")
            .is_dir(),
        "{}",
        text(&loose)
    );
    let events = env.events();
    assert!(blocks(&events, "PyPI", "tiny-pad", "1.2.0"), "{events:?}");
    assert_eq!(assert_recorded_under_sessions(&events, 2).len(), 2);
}

/// Nothing leaves the sandbox but the gate: a direct connection has no route, a proxied one to
/// a host outside `[egress] allow` is refused with the rule, an allowed one passes.
#[test]
fn egress_is_refused_with_a_reason_and_allowed_hosts_pass_through_the_proxy() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in server.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\nconnection: close\r\n\r\nhello, moat!\r\n",
            );
        }
    });
    let policy = format!("{POLICY}\n[egress]\nallow = [\"127.0.0.1:{port}\"]\n");
    let env = RunEnv::start(&policy);
    let url = format!("http://127.0.0.1:{port}/");
    let script = format!(
        "curl -sS -v --max-time 5 https://example.com/ ; echo \"exit=$?\"; \
         curl -sS --max-time 5 --noproxy '*' {url} ; echo \"direct=$?\"; \
         curl -sS --max-time 5 --noproxy '' -x http://127.0.0.1:7070 {url}"
    );
    let output = env.run(&[], &["sh", "-c", &script]);
    let all = text(&output);
    assert!(all.contains("403"), "{all}");
    // curl -v shows the gate's reason phrase on the refused CONNECT.
    assert!(
        all.contains("moat: egress to example.com:443 denied (moat.egress)"),
        "{all}"
    );
    assert!(!all.contains("exit=0"), "{all}");
    assert!(!all.contains("direct=0"), "{all}");
    assert!(all.contains("hello, moat!"), "{all}");
    let events = env.events();
    assert!(
        events.iter().any(|e| e["ecosystem"] == "egress"
            && e["package"] == "example.com:443"
            && e["action"] == "block"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["ecosystem"] == "egress"
            && e["package"] == format!("127.0.0.1:{port}").as_str()
            && e["action"] == "allow"),
        "{events:?}"
    );
    assert_recorded_under_sessions(&events, 2);
}

/// The LLM key stays on the host: the fake provider receives it, the sandbox finds it nowhere.
#[test]
fn llm_pass_through_adds_a_key_the_sandbox_never_sees() {
    const KEY: &str = "sk-ant-moat-e2e-0123456789";
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in server.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request).into_owned());
            let body = r#"{"type":"message","content":[{"type":"text","text":"hi"}]}"#;
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let env = RunEnv::start(POLICY);
    let upstream = format!("http://127.0.0.1:{port}");
    let script = "env; cat /proc/self/environ; echo; \
                  grep -rs sk-ant- /home /tmp /etc /run 2>/dev/null; \
                  curl -sS --max-time 10 -X POST -H 'x-api-key: fake-from-agent' \
                  -H 'content-type: application/json' -d '{}' \"$ANTHROPIC_BASE_URL/v1/messages\"";
    let output = env.run_with_env(
        &["--upstream-anthropic", &upstream],
        &["sh", "-c", script],
        &[("ANTHROPIC_API_KEY", KEY)],
    );
    let all = text(&output);
    assert!(all.contains(r#""text":"hi""#), "{all}");
    assert!(!all.contains(KEY), "the key leaked into the sandbox: {all}");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = requests[0].to_ascii_lowercase();
    assert!(
        request.contains(&format!("x-api-key: {}", KEY.to_ascii_lowercase())),
        "{request}"
    );
    assert!(!request.contains("fake-from-agent"), "{request}");
    let events = env.events();
    assert!(
        events.iter().all(|e| !e.to_string().contains(KEY)),
        "the key leaked into the audit log"
    );
    assert!(events.iter().any(|e| e["ecosystem"] == "llm"), "{events:?}");
    assert_recorded_under_sessions(&events, 1);
}

#[test]
fn session_records_the_agent_exit_status() {
    let env = RunEnv::start(POLICY);
    let output = env.run(&[], &["sh", "-c", "echo inside; exit 7"]);
    assert_eq!(output.status.code(), Some(7), "{}", text(&output));
    assert!(output.stdout.contains("inside"));
    let events = env.events();
    let end = session_end(&events, None);
    assert_eq!(end["exit_code"], 7);
    assert_eq!(assert_recorded_under_sessions(&events, 0).len(), 1);
}

/// Security invariant: the agent never sees moat's own state. A workspace or `--ro` path that
/// holds moat's data directory, audit log or signing key, or lies inside the data directory, is
/// refused before anything starts: inside, the agent could rewrite the log and sign with the
/// key, or read the key and sign a log it forged.
#[test]
fn the_agent_is_never_shown_moats_own_state() {
    let env = RunEnv::start(POLICY);
    let parent = env.data.path().join("home");
    let data_dir = parent.join(".local/share/moat");
    let project = parent.join("project");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    std::fs::create_dir_all(&project).expect("project");
    let data = data_dir.to_string_lossy().into_owned();
    let refused = |flags: &[&str], expected: &str| {
        let mut args: Vec<String> = vec!["run".into(), "--data-dir".into(), data.clone()];
        args.extend(env.flags().into_iter().skip_while(|f| f != "--advisories"));
        args.extend(flags.iter().map(|&f| f.to_owned()));
        args.extend(["--".into(), "sh".into(), "-c".into(), "echo RAN".into()]);
        let output = output_of(args, &[]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{flags:?}: {}",
            text(&output)
        );
        assert!(
            output.stderr.contains(expected),
            "{flags:?}: {}",
            text(&output)
        );
        assert!(
            output
                .stderr
                .contains("hint: give the agent a directory of its own"),
            "{}",
            text(&output)
        );
        assert!(!output.stdout.contains("RAN"), "{}", text(&output));
    };
    let parent_text = parent.to_string_lossy().into_owned();
    let project_text = project.to_string_lossy().into_owned();
    let sessions = data_dir.join("sessions").to_string_lossy().into_owned();
    refused(
        &["--workspace", &parent_text],
        "would show the agent moat's data directory",
    );
    refused(
        &["--workspace", &project_text, "--ro", &parent_text],
        "would show the agent moat's data directory",
    );
    std::fs::create_dir_all(&sessions).expect("sessions");
    refused(
        &["--workspace", &sessions],
        "lies inside moat's data directory",
    );
    let store = project.join("audit.db").to_string_lossy().into_owned();
    refused(
        &["--workspace", &project_text, "--audit-store", &store],
        "would show the agent moat's audit log",
    );
    // Nothing started: no session was recorded in the refused data directory.
    assert!(!data_dir.join("audit.db").exists());
    assert!(!project.join("audit.db").exists());
}

/// A command the sandbox cannot execute is not the sandbox failing: `moat run` says where the
/// sandbox looks for it and exits as a shell would, 127 for no such command and 126 for a file
/// that cannot be executed; the session's end records that code and why.
#[test]
fn a_command_the_sandbox_cannot_execute_exits_as_a_shell_would() {
    let env = RunEnv::start(POLICY);
    let missing = env.run(&[], &["moat-no-such-command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", text(&missing));
    assert!(
        missing.stderr.contains(
            "error: could not start moat-no-such-command in the sandbox: No such file or directory"
        ) && missing
            .stderr
            .contains("hint: the command is looked up on the sandbox's PATH"),
        "{}",
        text(&missing)
    );
    assert!(
        !missing.stderr.contains("setup failed"),
        "{}",
        text(&missing)
    );

    let script = env.workspace.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").expect("script");
    let not_executable = env.run(&[], &[&script.to_string_lossy()]);
    assert_eq!(
        not_executable.status.code(),
        Some(126),
        "{}",
        text(&not_executable)
    );
    assert!(
        not_executable.stderr.contains("Permission denied")
            && not_executable
                .stderr
                .contains("hint: the file is there but cannot be executed"),
        "{}",
        text(&not_executable)
    );
    assert!(!not_executable.stdout.contains("ran"));

    let events = env.events();
    let ends: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "session-end")
        .collect();
    assert_eq!(ends.len(), 2, "{events:?}");
    assert_eq!(ends[0]["exit_code"], 127, "{:?}", ends[0]);
    assert!(
        ends[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("could not start \"moat-no-such-command\"")),
        "{:?}",
        ends[0]
    );
    assert_eq!(ends[1]["exit_code"], 126, "{:?}", ends[1]);
}

/// `moat run` forks its sandbox's init at its first line, and that init enters the user,
/// mount, pid, net, ipc and uts namespaces before its spec arrives. The agent must still get
/// namespaces of its own, and a cgroup namespace rooted at the session's group, entered only
/// once the host has moved the init there: entered earlier, it would be rooted at `moat run`'s
/// group, and the agent would see the path to its session's group. Nor may it signal the init,
/// its pid 1.
#[test]
fn the_agent_gets_namespaces_of_its_own_and_a_cgroup_root_at_its_session_group() {
    const NAMESPACES: [&str; 7] = ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"];
    let env = RunEnv::start(POLICY);
    let script = format!(
        "for n in {}; do echo \"ns $n $(readlink /proc/self/ns/$n)\"; done; cat /proc/self/cgroup; \
         kill -KILL 1 2>/dev/null && echo ns KILLED-THE-INIT; kill -TERM 1 2>/dev/null && echo ns TERMINATED-THE-INIT; true",
        NAMESPACES.join(" ")
    );
    // A limit, so that the session has a cgroup of its own to be rooted at.
    let output = env.run(&["--pids", "64"], &["sh", "-c", &script]);
    assert!(output.status.success(), "{}", text(&output));
    for name in NAMESPACES {
        let host = std::fs::read_link(format!("/proc/self/ns/{name}")).unwrap();
        let inside = output
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("ns {name} ")))
            .unwrap_or_else(|| panic!("no {name} namespace line: {}", text(&output)));
        assert!(inside.starts_with(&format!("{name}:[")), "{inside}");
        assert_ne!(
            Path::new(inside),
            host,
            "the agent shares the host's {name} namespace"
        );
    }
    // The init, pid 1 there, is out of the agent's reach (Landlock's signal scope).
    assert!(!output.stdout.contains("THE-INIT"), "{}", text(&output));
    let groups: Vec<&str> = output
        .stdout
        .lines()
        .filter(|line| !line.starts_with("ns "))
        .collect();
    assert!(!groups.is_empty(), "{}", text(&output));
    for line in groups {
        assert!(line.ends_with(":/"), "the agent sees a cgroup path: {line}");
    }
}

/// Where a seccomp filter refuses `clone3` with `ENOSYS` (Docker's default profile does, so
/// that the C library falls back to `clone`), `moat run` falls back to `clone` too, for the
/// init it forks at its first line and for one it executes (global flags before `run` make it
/// start the init as a program): the session runs, and the agent is the child of pid 1. The
/// filter is installed by a Python wrapper (`ctypes`, `prctl`) that then executes `moat`.
#[test]
fn sessions_run_where_clone3_is_refused_with_enosys() {
    let env = RunEnv::start(POLICY);
    let forked = env.run_args(&[], &["sh", "-c", "echo \"agent's parent $PPID\""]);
    let data_dir = [
        "--data-dir".to_owned(),
        env.data.path().display().to_string(),
    ];
    let executed: Vec<String> = data_dir.iter().chain(&forked).cloned().collect();
    for args in [forked, executed] {
        let output = MoatOutput::from(
            std::process::Command::new("python3")
                .args(["-c", WITHOUT_CLONE3, MOAT])
                .args(&args)
                .env("NO_COLOR", "1")
                .output()
                .unwrap(),
        );
        assert!(output.status.success(), "{args:?}: {output}");
        assert!(
            output.stdout.contains("agent's parent 1\n"),
            "{args:?}: {output}"
        );
    }
}

/// `python3 -c WITHOUT_CLONE3 PROGRAM ARGS…`: installs a seccomp filter under which `clone3`
/// fails with `ENOSYS` (x86-64; everything else is allowed), then executes `PROGRAM ARGS…`.
const WITHOUT_CLONE3: &str = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
LD, JEQ, RET = 0x20, 0x15, 0x06
ARCH_X86_64, CLONE3, ENOSYS = 0xC000003E, 435, 38
ERRNO, ALLOW = 0x00050000, 0x7FFF0000
program = [(LD, 0, 0, 4), (JEQ, 0, 3, ARCH_X86_64), (LD, 0, 0, 0), (JEQ, 0, 1, CLONE3),
           (RET, 0, 0, ERRNO | ENOSYS), (RET, 0, 0, ALLOW)]
code = b"".join(struct.pack("HBBI", *op) for op in program)
buffer = ctypes.create_string_buffer(code, len(code))
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Program(len(program), ctypes.addressof(buffer))
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):
    sys.exit("seccomp: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// The forked init starts on another CPU than `moat run` (a placement hint) and takes back
/// every CPU it inherited when its request arrives: the agent may run on all the CPUs `moat
/// run` could, never on fewer.
#[test]
fn the_agent_may_run_on_every_cpu_moat_run_may() {
    let env = RunEnv::start(POLICY);
    let output = env.run(&[], &["grep", "Cpus_allowed_list", "/proc/self/status"]);
    assert!(output.status.success(), "{}", text(&output));
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host = host
        .lines()
        .find(|line| line.starts_with("Cpus_allowed_list"))
        .unwrap();
    assert_eq!(output.stdout.trim(), host, "{}", text(&output));
}

/// `--data-dir` relative to the working directory: the session's gate socket, bound into the
/// sandbox by its path, still resolves (it used to be refused as "not a clean absolute path").
#[test]
fn a_session_runs_with_a_relative_data_dir() {
    let env = RunEnv::start(POLICY);
    let (parent, name) = env.data_dir_relative();
    let args = env.run_args_on(name, &[], &["sh", "-c", "echo inside"]);
    let output = std::process::Command::new(MOAT)
        .args(&args)
        .current_dir(parent)
        .env("NO_COLOR", "1")
        .output()
        .expect("run moat");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("inside"), "{stdout}\n{stderr}");
    assert_eq!(assert_recorded_under_sessions(&env.events(), 0).len(), 1);
}

/// A `moat gate` started on a relative data dir hands `moat run` an absolute session socket
/// (a relative one would name another file from `moat run`'s directory, and the sandbox
/// refuses it): the session is served by that gate and recorded.
#[test]
fn a_running_gate_on_a_relative_data_dir_serves_sessions() {
    let env = RunEnv::start(POLICY);
    let (parent, name) = env.data_dir_relative();
    let gate = MoatGate::start(
        Path::new(MOAT),
        env.gate_args(POLICY).data_dir(name).current_dir(parent),
    );
    assert_eq!(gate.data_dir(), env.data.path());
    let output = env.run(&[], &["sh", "-c", "echo inside"]);
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(all.contains("moat: using the running gate (pid"), "{all}");
    assert!(output.stdout.contains("inside"), "{all}");
    assert_eq!(assert_recorded_under_sessions(&env.events(), 0).len(), 1);
}

/// A data directory deep enough that its control socket and its sessions' sockets have paths
/// longer than a unix socket address holds (107 bytes): the gate binds both, `moat run`
/// reaches it and the sandbox its session socket (they used to fail with "path must be
/// shorter than SUN_LEN"), with a running gate and with a gate of `moat run`'s own.
#[test]
fn sessions_run_with_a_data_dir_too_deep_for_a_socket_address() {
    let env = RunEnv::start(POLICY);
    let deep = env
        .data
        .path()
        .join("a-directory-name-long-enough-to-matter")
        .join("and-another-one-to-push-the-socket-paths-past-the-limit");
    std::fs::create_dir_all(&deep).expect("deep data dir");
    assert!(
        deep.join("gate.ctl").as_os_str().len() > 107,
        "{}",
        deep.display()
    );
    // Runs `sh -c "echo inside"` on the deep data dir; its stderr.
    let run_deep = || {
        let (stdout, stderr) = env.run_ok_on(&deep, &[], &["sh", "-c", "echo inside"]);
        assert!(stdout.contains("inside"), "{stdout}\n{stderr}");
        stderr
    };

    let log = env.with_own_and_running_gate(&deep, run_deep);
    assert!(log.contains("session opened"), "{log}");
    assert!(log.contains("session ended"), "{log}");
}

/// The sandbox mounts host paths by name once the host's root is under another root, where an
/// absolute symlink leads elsewhere: a data directory whose `sessions` is such a symlink (a
/// session's socket directory is in it) and a `--ro` path that is one both work, with a running
/// gate and with a gate of `moat run`'s own. They failed with "cannot mount /oldroot/…".
#[test]
fn sessions_run_when_the_sessions_directory_and_a_read_only_path_are_symlinks() {
    let env = RunEnv::start(POLICY);
    let base = env.data.path().join("linked");
    let data_dir = base.join("data");
    let sessions = base.join("sessions-elsewhere");
    let tools = base.join("tools-1.0");
    for dir in [&data_dir, &sessions, &tools] {
        std::fs::create_dir_all(dir).expect("create dir");
    }
    std::os::unix::fs::symlink(&sessions, data_dir.join("sessions")).expect("sessions link");
    std::fs::write(tools.join("version"), "tools 1.0\n").expect("tools file");
    let tools_link = base.join("tools");
    std::os::unix::fs::symlink(&tools, &tools_link).expect("tools link");
    let show = format!("cat {}/version", tools.display());
    // Runs `sh -c "cat <tools>/version"` with `--ro <tools link>`; its stderr.
    let run = || {
        let ro = ["--ro", &tools_link.to_string_lossy()];
        let (stdout, stderr) = env.run_ok_on(&data_dir, &ro, &["sh", "-c", &show]);
        assert!(stdout.contains("tools 1.0"), "{stdout}\n{stderr}");
        stderr
    };

    let log = env.with_own_and_running_gate(&data_dir, run);
    assert!(log.contains("session ended"), "{log}");
    // Both gates removed their sessions' directories through the link.
    let left: Vec<_> = std::fs::read_dir(&sessions).expect("sessions").collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `moat ps` lists a running session; `moat stop` ends it (the agent gets SIGTERM), and the end
/// is recorded.
#[test]
fn ps_lists_a_running_session_and_stop_ends_it() {
    let env = RunEnv::start(POLICY);
    let (mut child, listed) = env.sleeping_session();
    let data = env.data.path().to_string_lossy().into_owned();
    let session = listed["session"].as_str().expect("session id");
    assert_eq!(listed["agent"], "e2e-agent");
    let workspace = env.workspace.path().canonicalize().unwrap();
    assert_eq!(listed["workspace"], workspace.to_str().unwrap());
    let shown = run_moat(Path::new(MOAT), &["ps", "--data-dir", &data]);
    shown.assert_success();
    assert!(
        shown.stdout.contains(&format!("{session}  "))
            && shown
                .stdout
                .contains(&format!("  in {}  sleep 60", workspace.display())),
        "{shown}"
    );
    run_moat(Path::new(MOAT), &["stop", session, "--data-dir", &data]).assert_success();
    // The agent (`sleep`) is asked to end with SIGTERM, and dies of it.
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    let end = session_end(&env.events(), Some(session));
    assert_eq!(end["reason"], "stopped", "{end}");
    assert_eq!(end["signal"], 15, "{end}");
    let after = run_moat(Path::new(MOAT), &["ps", "--json", "--data-dir", &data])
        .assert_success()
        .json();
    assert_eq!(after, serde_json::json!([]));
}

/// `moat stop` never signals a process that is not the session's `moat run`. A `moat run`
/// killed outright leaves its session's file behind, and the kernel may give its pid to
/// another process: neither `moat ps` nor `moat stop` takes that process for the session.
#[test]
fn stop_never_signals_a_process_that_took_a_dead_sessions_pid() {
    let env = RunEnv::start(POLICY);
    let session = &env.killed_session();
    let data = env.data.path().to_string_lossy().into_owned();
    let file = env
        .data
        .path()
        .join("sessions")
        .join(session)
        .join("session.json");
    let mut recorded: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    // The pid goes to another process (here given to it by rewriting the file).
    let mut stranger = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep");
    recorded["moat_pid"] = stranger.id().into();
    std::fs::write(&file, recorded.to_string()).unwrap();

    let after = run_moat(Path::new(MOAT), &["ps", "--json", "--data-dir", &data])
        .assert_success()
        .json();
    assert_eq!(after, serde_json::json!([]));
    let stopped = run_moat(Path::new(MOAT), &["stop", session, "--data-dir", &data]);
    assert!(!stopped.status.success(), "{stopped}");
    assert!(stopped.stderr.contains("no running session"), "{stopped}");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was signalled"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

/// A `moat run` killed outright with a gate of its own cannot record its session's end; the
/// next gate on the data directory does (the session file it left names the session), once,
/// and a session that ended normally is not ended again.
#[test]
fn a_killed_moat_runs_session_is_ended_when_the_next_gate_starts() {
    let env = RunEnv::start(POLICY);
    let killed = env.killed_session();
    let dir = env.data.path().join("sessions").join(&killed);
    assert!(
        dir.join("session.json").exists(),
        "the killed session left no file"
    );
    assert!(
        session_ends(&env.events(), &killed).is_empty(),
        "a killed moat run recorded an end"
    );

    let next = env.run(&[], &["true"]);
    next.assert_success();
    assert!(
        next.stderr
            .contains(&format!("recorded the end of session {killed}")),
        "{next}"
    );
    assert!(!dir.exists(), "the abandoned session's directory is left");
    env.run(&[], &["true"]).assert_success();
    let events = env.events();
    let ends = session_ends(&events, &killed);
    assert_eq!(ends.len(), 1, "{ends:?}");
    let reason = ends[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("abandoned: no end was recorded (its moat run, pid "),
        "{reason}"
    );
    // Every session has one end, the abandoned one and the two after it alike.
    for start in events.iter().filter(|e| e["type"] == "session-start") {
        let id = start["session"].as_str().unwrap();
        assert_eq!(session_ends(&events, id).len(), 1, "{id}: {events:?}");
    }
}

/// A `moat run` killed outright takes its sandbox with it, as `bwrap --die-with-parent` does:
/// the init dies with it (`PR_SET_PDEATHSIG`), and with pid 1 every process of the sandbox. An
/// agent left running would go on with the workspace and no one to stop it or time it out.
/// Both ways the init starts: forked by `moat run …`, executed by `moat --data-dir D run …`;
/// and in a container (`--backend podman`), where the init is the runtime's child and watches
/// for `moat run`'s end itself.
#[test]
fn a_killed_moat_runs_sandbox_dies_with_it() {
    let env = RunEnv::start(POLICY);
    for (spelling, marker) in [
        ("forked", "60.4711"),
        ("executed", "60.4712"),
        ("podman", "60.4713"),
    ] {
        // A command line no other process has, to find the agent from the host.
        let extra: &[&str] = if spelling == "podman" {
            &["--backend", "podman"]
        } else {
            &[]
        };
        let mut args = env.run_args(extra, &["sleep", marker]);
        if spelling == "executed" {
            let at = args
                .iter()
                .position(|a| a == "--data-dir")
                .expect("--data-dir");
            let data_dir: Vec<String> = args.drain(at..at + 2).collect();
            args.splice(0..0, data_dir);
        }
        let mut child = std::process::Command::new(MOAT)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moat run");
        let agents = || {
            std::fs::read_dir("/proc")
                .expect("/proc")
                .flatten()
                .filter(|entry| {
                    std::fs::read(entry.path().join("cmdline"))
                        .is_ok_and(|cmdline| cmdline == format!("sleep\0{marker}\0").as_bytes())
                })
                .count()
        };
        // Bounds on waits, not measures.
        let bound = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while agents() == 0 && std::time::Instant::now() < bound {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(agents(), 1, "{spelling}: the agent did not start");
        child.kill().unwrap();
        child.wait().unwrap();
        let bound = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while agents() > 0 && std::time::Instant::now() < bound {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(agents(), 0, "{spelling}: the agent outlived its moat run");
    }
}

/// The end records of `session` in `events`.
fn session_ends<'a>(events: &'a [Value], session: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "session-end" && e["session"] == session)
        .collect()
}

/// Ctrl-C in a terminal is the agent's. The agent is in the terminal's foreground process group
/// with `moat run` and hears it itself; an interactive agent takes it to interrupt what it is
/// doing, so the session goes on until the agent exits, with the agent's status. `moat run`
/// killed the session (SIGKILL, 137) on it. A SIGINT sent by a process still ends the session.
#[test]
fn ctrl_c_in_a_terminal_is_the_agents_and_a_sent_sigint_ends_the_session() {
    let env = RunEnv::start(POLICY);
    // The inits block Ctrl-C for themselves; the agent starts with no signal blocked (a shell
    // would clear its mask before it runs a command: the agent reads its own).
    let mask = env.run(&[], &["grep", "SigBlk", "/proc/self/status"]);
    assert!(
        mask.assert_success()
            .stdout
            .contains("SigBlk:\t0000000000000000"),
        "{mask}"
    );
    let agent = "trap 'echo interrupted; exit 7' INT; echo READY; sleep 60 & wait";
    let moat_run = shell_words(
        std::iter::once(MOAT.to_owned()).chain(env.run_args(&[], &["sh", "-c", agent])),
    );
    // `exec`: `moat run` is the terminal's foreground job itself, as when typed at a shell's
    // prompt (a shell waiting on it in the same process group would die of the Ctrl-C too).
    let mut terminal = Terminal::run(&format!("exec {moat_run}"));
    terminal.wait_for("READY");
    // The byte 0x03 is Ctrl-C: the terminal sends SIGINT to its foreground process group.
    let (status, output) = terminal.type_and_finish(b"\x03");
    assert_eq!(status.code(), Some(7), "{output}");
    assert!(output.contains("interrupted"), "{output}");
    let end = session_end(&env.events(), None);
    assert_eq!(end["exit_code"], 7, "{end}");
    assert!(end.get("reason").is_none_or(Value::is_null), "{end}");

    // The same signal sent by a process reaches `moat run` alone: the session ends.
    let (mut child, listed) = env.sleeping_session();
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    // The agent (`sleep`) was asked to end with SIGTERM, and died of it.
    assert_eq!(child.wait().unwrap().code(), Some(128 + 15));
    let end = session_end(&env.events(), listed["session"].as_str());
    assert_eq!(end["reason"], "stopped", "{end}");
}

/// A signal `moat run` was started with ignored stays ignored: under `nohup`, a hangup (the
/// terminal closing) does not end the session.
#[test]
fn under_nohup_a_hangup_does_not_end_the_session() {
    let env = RunEnv::start(POLICY);
    let ready = env.workspace.path().join("ready");
    let agent = "touch ready; sleep 2; echo FINISHED";
    let child = std::process::Command::new("nohup")
        .arg(MOAT)
        .args(env.run_args(&[], &["sh", "-c", agent]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nohup");
    wait_until("the agent starts", || ready.exists());
    let hung_up = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hung_up.success());
    let output = child.wait_with_output().expect("moat run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("FINISHED"), "{stdout}");
    let end = session_end(&env.events(), None);
    assert!(end.get("reason").is_none_or(Value::is_null), "{end}");
}

/// The timeout asks the agent to end; whatever it then exits with, `moat run` exits 124 as
/// `timeout(1)` does, says why, and the record keeps the agent's own status and the reason.
#[test]
fn a_timed_out_session_exits_124_and_records_the_agents_status() {
    let env = RunEnv::start(POLICY);
    let agent = "trap 'exit 0' TERM; sleep 60 & wait";
    let ran = env.run(
        &["--timeout", "1s", "--stop-timeout", "5s"],
        &["sh", "-c", agent],
    );
    assert_eq!(ran.status.code(), Some(124), "{ran}");
    assert!(ran.stderr.contains("timed out after 1s"), "{ran}");
    let end = session_end(&env.events(), None);
    assert_eq!(end["exit_code"], 0, "{end}");
    assert_eq!(end["reason"], "timed out after 1s", "{end}");
}

/// An agent killed while the terminal is in raw mode (an agent CLI's, here `stty raw -echo`)
/// cannot restore it: `moat run` puts back the modes it found, so the user's shell gets its
/// echo and line editing back; with a gate of its own, and with a running gate (whose sessions
/// end on the thread that hears the agent's exit: the quick end).
#[test]
fn the_terminal_modes_are_restored_after_a_killed_agent() {
    let env = RunEnv::start(POLICY);
    let agent = "stty raw -echo; kill -KILL $$";
    let moat_run = shell_words(
        std::iter::once(MOAT.to_owned()).chain(env.run_args(&[], &["sh", "-c", agent])),
    );
    let mut gate = None;
    for served_by in ["its own gate", "a running gate"] {
        let terminal = Terminal::run(&format!("{moat_run}; stty -a"));
        let (status, output) = terminal.type_and_finish(b"");
        assert!(status.success(), "{served_by}: {output}");
        assert_eq!(
            output.contains("using the running gate"),
            gate.is_some(),
            "{served_by}: {output}"
        );
        for mode in ["icanon", "echo"] {
            assert!(
                output.contains(&format!(" {mode}")),
                "{served_by}: {mode}: {output}"
            );
            assert!(
                !output.contains(&format!("-{mode} ")),
                "{served_by}: {mode}: {output}"
            );
        }
        gate.get_or_insert_with(|| env.gate(POLICY));
    }
}

/// With a running gate, the thread that hears the agent's exit ends the session (the quick
/// end): `moat run` exits with the agent's status, and the gate records the end with it and
/// removes the session's directory.
#[test]
fn an_agent_exit_handed_to_a_running_gate_keeps_its_status() {
    let env = RunEnv::start(POLICY);
    let gate = env.gate(POLICY);
    let output = MoatOutput::from(
        std::process::Command::new(MOAT)
            .args(env.run_args(&[], &["sh", "-c", "echo ran; exit 7"]))
            .env("NO_COLOR", "1")
            .output()
            .expect("run moat"),
    );
    assert_eq!(output.status.code(), Some(7), "{output}");
    assert!(output.stdout.contains("ran"), "{output}");
    assert!(output.stderr.contains("using the running gate"), "{output}");
    let session = output
        .stderr
        .split("moat: session ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the session line")
        .to_owned();
    gate.output_once(&format!("session ended session={session}"));
    let end = session_end(&env.events(), Some(&session));
    assert_eq!(end["exit_code"], 7, "{end}");
    assert!(end["reason"].is_null(), "{end}");
    assert!(!env.data.path().join("sessions").join(&session).exists());
}

/// Ctrl-Z suspends the session with `moat run` and `fg` resumes it, as for any command: the
/// agent is in the terminal's foreground process group, and the inits do not stand in the way.
/// An interactive shell on the terminal runs `moat run`; the agent says when it is continued,
/// then reads a line from the terminal.
#[test]
fn ctrl_z_and_fg_suspend_and_resume_the_session() {
    let env = RunEnv::start(POLICY);
    // Markers written so that the shell's echo of the command line does not contain them.
    // (`read` fails when the trap interrupts it: it is tried again.)
    let agent = r#"trap 'echo CONT""INUED' CONT; echo RE""ADY; until read line; do :; done; echo "GO""T $line""#;
    let moat_run = shell_words(
        std::iter::once(MOAT.to_owned()).chain(env.run_args(&[], &["sh", "-c", agent])),
    );
    let mut terminal = Terminal::run("PS1='$ ' bash --norc --noprofile -i");
    terminal.type_keys(format!("{moat_run}\n").as_bytes());
    terminal.wait_for("READY");
    // Ctrl-Z once the agent waits for the terminal: a shell runs a trap between commands, so
    // an agent stopped before its `read` would say it was continued only after a line came.
    let agent = terminal.process(&["sh", "-c", agent]);
    wait_until("the agent reads the terminal", || reads_stdin(agent));
    // 0x1A is Ctrl-Z: the terminal sends SIGTSTP to its foreground process group.
    terminal.type_keys(b"\x1a");
    terminal.wait_for("Stopped");
    // The shell says "Stopped" when `moat run` is; the agent stops by itself, perhaps a moment
    // later, and until then it could still read what is typed.
    wait_until("the agent is stopped", || is_stopped(agent));
    terminal.type_keys(b"fg\n");
    terminal.wait_for("CONTINUED");
    terminal.type_keys(b"resumed\n");
    terminal.wait_for("GOT resumed");
    let (status, output) = terminal.type_and_finish(b"exit\n");
    assert!(status.success(), "{output}");
    let end = session_end(&env.events(), None);
    assert_eq!(end["exit_code"], 0, "{end}");
}

/// The newest session end in `events`, of `session` when given.
fn session_end(events: &[Value], session: Option<&str>) -> Value {
    events
        .iter()
        .rfind(|e| e["type"] == "session-end" && session.is_none_or(|id| e["session"] == id))
        .unwrap_or_else(|| panic!("no end of {session:?} in {events:?}"))
        .clone()
}

/// `words` quoted for `sh`.
fn shell_words(words: impl IntoIterator<Item = String>) -> String {
    words
        .into_iter()
        .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A shell command line run by `script` on a terminal of its own: what is typed goes to the
/// terminal (so 0x03 is Ctrl-C), and everything the terminal shows is collected. The shell is
/// always `/bin/sh` (`script` runs `$SHELL -c`, and shells differ in what they do with a
/// terminal's signal while they wait for a command).
struct Terminal {
    script: std::process::Child,
    stdin: std::process::ChildStdin,
    shown: std::sync::mpsc::Receiver<String>,
    output: String,
}

impl Terminal {
    fn run(command_line: &str) -> Self {
        let mut script = std::process::Command::new("script")
            .args([
                "--quiet",
                "--return",
                "--command",
                command_line,
                "/dev/null",
            ])
            .env("NO_COLOR", "1")
            .env("SHELL", "/bin/sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        let stdin = script.stdin.take().expect("stdin");
        let mut stdout = script.stdout.take().expect("stdout");
        let (sender, shown) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = stdout.read(&mut buffer) {
                let _ = sender.send(String::from_utf8_lossy(&buffer[..read]).into_owned());
            }
        });
        Self {
            script,
            stdin,
            shown,
            output: String::new(),
        }
    }

    /// Waits until the terminal shows `needle` (bounded: a guard against a hang, not a timing
    /// assertion).
    fn wait_for(&mut self, needle: &str) {
        while !self.output.contains(needle) {
            match self.shown.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(chunk) => self.output.push_str(&chunk),
                Err(_) => panic!("the terminal never showed {needle:?}: {}", self.output),
            }
        }
    }

    /// The pid of the process on this terminal whose command line is `argv` (waits for it).
    fn process(&self, argv: &[&str]) -> u32 {
        let wanted: Vec<u8> = argv
            .iter()
            .flat_map(|arg| [arg.as_bytes(), b"\0"])
            .flatten()
            .copied()
            .collect();
        let mut found = None;
        wait_until(&format!("{argv:?} runs on the terminal"), || {
            found = descendants(self.script.id()).into_iter().find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| line == wanted)
            });
            found.is_some()
        });
        found.expect("found")
    }

    /// Types `keys`.
    fn type_keys(&mut self, keys: &[u8]) {
        self.stdin.write_all(keys).expect("type");
    }

    /// Types `keys`, waits for the command line to end: its status and all it showed.
    fn type_and_finish(mut self, keys: &[u8]) -> (std::process::ExitStatus, String) {
        self.type_keys(keys);
        let status = self.script.wait().expect("script");
        drop(self.stdin);
        while let Ok(chunk) = self.shown.recv_timeout(std::time::Duration::from_secs(5)) {
            self.output.push_str(&chunk);
        }
        (status, self.output)
    }
}

/// The host's Rust toolchain, shown read-only inside: `(CARGO_HOME, RUSTUP_HOME)`.
fn toolchain_dirs() -> (PathBuf, PathBuf) {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let dir = |var: &str, default: &str| {
        std::env::var_os(var).map_or_else(|| home.join(default), PathBuf::from)
    };
    (dir("CARGO_HOME", ".cargo"), dir("RUSTUP_HOME", ".rustup"))
}

#[test]
fn cargo_in_a_session_is_steered_and_a_locked_blocked_version_is_refused() {
    let env = RunEnv::start(POLICY);
    let ws = env.workspace.path();
    std::fs::write(
        ws.join("Cargo.toml"),
        "[package]\nname = \"ws\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ntinycrate = \"1\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/lib.rs"), "").unwrap();
    let (cargo_home, rustup_home) = toolchain_dirs();
    let path = format!(
        "PATH={}/bin:/usr/local/bin:/usr/bin:/bin",
        cargo_home.display()
    );
    let rustup = format!("RUSTUP_HOME={}", rustup_home.display());
    let cargo_ro = cargo_home.to_string_lossy().into_owned();
    let rustup_ro = rustup_home.to_string_lossy().into_owned();
    let flags = [
        "--ro",
        cargo_ro.as_str(),
        "--ro",
        rustup_ro.as_str(),
        "--env",
        path.as_str(),
        "--env",
        rustup.as_str(),
    ];
    let fetched = env.run(&flags, &["cargo", "fetch"]);
    assert!(fetched.status.success(), "{}", text(&fetched));
    // The record says what the agent could read, as the sandbox bound it.
    let events = env.events();
    let start = events
        .iter()
        .find(|e| e["type"] == "session-start")
        .unwrap_or_else(|| panic!("{events:?}"));
    let resolved = |dir: &Path| dir.canonicalize().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        start["read_only"],
        serde_json::json!([resolved(&cargo_home), resolved(&rustup_home)]),
        "{start}"
    );
    let data = env.data.path().to_string_lossy().into_owned();
    let listed = run_moat(Path::new(MOAT), &["audit", "list", "--data-dir", &data]);
    let expected = format!(
        "in {} read-only {}, {}: cargo fetch",
        resolved(ws),
        resolved(&cargo_home),
        resolved(&rustup_home)
    );
    assert!(
        listed.assert_success().stdout.contains(&expected),
        "{expected}\n{listed}"
    );
    let lock = std::fs::read_to_string(ws.join("Cargo.lock")).unwrap();
    assert!(
        lock.contains("name = \"tinycrate\"\nversion = \"1.1.0\""),
        "{lock}"
    );

    // Pin the blocked version in the lockfile: resolution is skipped, the download refused.
    let blocked = lock.replace(
        &format!("version = \"1.1.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"", env.crates.cksum("tinycrate", "1.1.0")),
        &format!("version = \"1.2.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"", env.crates.cksum("tinycrate", "1.2.0")),
    );
    assert_ne!(blocked, lock, "lockfile shape changed: {lock}");
    std::fs::write(ws.join("Cargo.lock"), blocked).unwrap();
    let refused = env.run(&flags, &["cargo", "fetch", "--locked"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("moat: blocked tinycrate@1.2.0 (moat.vulnerable)"),
        "{}",
        text(&refused)
    );
    assert_eq!(assert_recorded_under_sessions(&env.events(), 2).len(), 2);
}

/// The revision `moat policy check` reports for a policy file.
fn policy_revision(file: &Path) -> String {
    let file = file.to_string_lossy().into_owned();
    let checked = run_moat(Path::new(MOAT), &["policy", "check", "--json", &file]);
    checked.assert_success().json()["revision"]
        .as_str()
        .unwrap_or_else(|| panic!("{checked}"))
        .to_owned()
}

/// Waits (bounded) for a spawned `moat run` to exit; its status and what it printed on stderr.
fn wait_bounded(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_string(&mut stderr).unwrap();
            }
            return (status, stderr);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("moat run did not exit");
}

/// With a `moat gate` serving the data dir, `moat run` uses it: the gate's policy decides, the
/// gate records the session (one audit writer), and the session's flags that only a gate of
/// its own would use are reported as ignored.
#[test]
fn a_running_gate_serves_the_session_and_records_it() {
    let env = RunEnv::start(POLICY);
    // The gate's policy differs from the one `moat run` is given: its revision shows whose
    // policy decided.
    let gate_policy = format!(
        "{POLICY}\n[[deny]]\npackage = \"npm:left-pad-gate-only\"\nreason = \"gate-only rule\"\n"
    );
    let gate = env.gate(&gate_policy);
    let gate_revision = policy_revision(&gate.policy_path());
    assert_ne!(gate_revision, policy_revision(&env.policy));

    let refused = env.npm_install(&[], "minimist@1.2.5");
    let all = text(&refused);
    assert!(!refused.status.success(), "{all}");
    assert!(
        all.contains("moat: blocked minimist@1.2.5 (moat.vulnerable)"),
        "{all}"
    );
    assert!(all.contains("moat: using the running gate (pid"), "{all}");
    assert!(
        all.contains("--advisories, --popular, --policy, --upstream-npm")
            && all.contains("ignored: the running gate's policy"),
        "{all}"
    );
    // A loose range resolves through the gate's own port inside the sandbox (the rewritten
    // tarball URLs name it).
    let loose = env.npm_install(&[], "minimist@^1.2.0");
    assert!(loose.status.success(), "{}", text(&loose));
    assert_eq!(env.installed_npm_version("minimist"), "1.2.8");

    let events = env.events();
    let sessions = assert_recorded_under_sessions(&events, 2);
    assert_eq!(sessions.len(), 2);
    for start in events.iter().filter(|e| e["type"] == "session-start") {
        assert_eq!(start["policy"], gate_revision.as_str(), "{start}");
    }
    assert!(
        events.iter().any(|e| e["type"] == "decision"
            && e["package"] == "minimist"
            && e["version"] == "1.2.5"
            && e["action"] == "block"
            && e["identity"] == format!("session:{}", sessions[0]).as_str()),
        "{events:?}"
    );
    // The gate opened and ended both sessions (it logs an end once it has recorded it and
    // removed the session's directory).
    let last = sessions.last().expect("a session");
    let log = gate.output_once(&format!("session ended session={last}"));
    for session in &sessions {
        assert!(
            log.lines()
                .any(|l| l.contains("session opened") && l.contains(session.as_str())),
            "{log}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("session ended") && l.contains(session.as_str())),
            "{log}"
        );
    }
    assert!(!env.data.path().join("sessions").join(&sessions[0]).exists());
}

/// A session served by a running gate is listed by `moat ps` while it runs, its socket is the
/// gate's, and `moat stop` ends it with the end recorded by the gate.
#[test]
fn ps_and_stop_work_for_a_session_served_by_a_running_gate() {
    let env = RunEnv::start(POLICY);
    let gate = env.gate(POLICY);
    let mut child = env.spawn_bare(&["sleep", "60"]);
    let listed = env.wait_for_session();
    let session = listed[0]["session"]
        .as_str()
        .unwrap_or_else(|| panic!("{listed}"))
        .to_owned();
    assert_eq!(listed[0]["agent"], "e2e-agent");
    assert_eq!(listed[0]["operator"], "alice");
    let socket = env
        .data
        .path()
        .join("sessions")
        .join(&session)
        .join("sandbox")
        .join("gate.sock");
    assert!(socket.exists(), "{}", socket.display());
    let data = env.data.path().to_string_lossy().into_owned();
    run_moat(Path::new(MOAT), &["stop", &session, "--data-dir", &data]).assert_success();
    let (status, stderr) = wait_bounded(&mut child);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("moat: using the running gate"), "{stderr}");
    assert!(!stderr.contains("ignored"), "{stderr}");
    let events = env.events();
    let end = session_end(&events, Some(&session));
    assert_eq!(end["reason"], "stopped", "{end}");
    assert_recorded_under_sessions(&events, 0);
    assert!(gate.output().contains(&session), "{}", gate.output());
    let after = run_moat(Path::new(MOAT), &["ps", "--json", "--data-dir", &data])
        .assert_success()
        .json();
    assert_eq!(after, serde_json::json!([]));
    assert!(!socket.exists());
}

/// When the running gate goes away mid-session, the sandbox has no way out left: `moat run`
/// stops it and says why. A gate that dies (here killed) records no end: `moat run` leaves the
/// session's file with the end in it, and the next gate, finding no end in the log, records
/// that one.
#[test]
fn the_session_stops_when_its_gate_goes_away() {
    let env = RunEnv::start(POLICY);
    let (session, stderr) = env.session_whose_gate_ends(MoatGate::stop);
    assert!(
        stderr.contains("end may not be on record (its gate died)"),
        "{stderr}"
    );
    assert!(session_ends(&env.events(), &session).is_empty());

    let next = env.gate(POLICY);
    let output = next.output_once("abandoned session ended");
    assert!(output.contains("abandoned session ended"), "{output}");
    let events = env.events();
    let ends = session_ends(&events, &session);
    assert_eq!(ends.len(), 1, "{events:?}");
    assert_eq!(
        ends[0]["reason"], "stopped: its gate went away",
        "{events:?}"
    );
    // The agent's own end: `sleep`, ended by the SIGTERM the sandbox's stop sent it.
    assert_eq!(ends[0]["signal"], 15, "SIGTERM: {events:?}");
}

/// A running gate that shuts down ends its sessions and records their ends (`gate stopped`),
/// and says so: `moat run` leaves nothing for a later gate, which records no second end.
#[test]
fn a_gate_that_shuts_down_records_its_sessions_ends_once() {
    let env = RunEnv::start(POLICY);
    let (session, stderr) = env.session_whose_gate_ends(MoatGate::terminate);
    assert!(!stderr.contains("not on record"), "{stderr}");
    assert!(!env.data.path().join("sessions").join(&session).exists());

    let next = env.gate(POLICY);
    env.run(&[], &["true"]).assert_success();
    drop(next);
    let events = env.events();
    let ends = session_ends(&events, &session);
    assert_eq!(ends.len(), 1, "{events:?}");
    assert_eq!(ends[0]["reason"], "gate stopped", "{events:?}");
}

/// A control socket left by a gate that no longer runs is not a gate: `moat run` starts one of
/// its own and records the session itself.
#[test]
fn a_stale_control_socket_falls_back_to_a_gate_of_its_own() {
    let env = RunEnv::start(POLICY);
    let control = env.data.path().join("gate.ctl");
    drop(std::os::unix::net::UnixListener::bind(&control).unwrap());
    assert!(control.exists());
    let output = env.run(&[], &["sh", "-c", "echo inside; exit 3"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(output.stdout.contains("inside"));
    assert!(
        !text(&output).contains("using the running gate"),
        "{}",
        text(&output)
    );
    let events = env.events();
    assert_eq!(assert_recorded_under_sessions(&events, 0).len(), 1);
    let end = session_end(&events, None);
    assert_eq!(end["exit_code"], 3);
}

/// `--secret NAME` reaches the agent as one framed stdin line, and nowhere else inside.
#[test]
fn secrets_reach_the_agent_on_stdin_only() {
    const SECRET: &str = "tok-e2e-secret-42";
    let env = RunEnv::start(POLICY);
    let script = "read -r line; echo \"got:$line\"; \
                  echo \"in-env:$(env | grep -c tok-e2e)\"; \
                  echo \"in-files:$(grep -rls tok-e2e /home /tmp /etc /run 2>/dev/null | wc -l)\"";
    let output = env.run_with_env(
        &["--secret", "DEPLOY_TOKEN"],
        &["sh", "-c", script],
        &[("DEPLOY_TOKEN", SECRET)],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        output.stdout.contains(&format!(
            "got:MOAT-SECRETS {{\"DEPLOY_TOKEN\":\"{SECRET}\"}}"
        )),
        "{}",
        text(&output)
    );
    assert!(output.stdout.contains("in-env:0"), "{}", text(&output));
    assert!(output.stdout.contains("in-files:0"), "{}", text(&output));
    // On the command line a value would be visible to every user: refused.
    let refused = env.run(&["--secret", "DEPLOY_TOKEN=abc"], &["true"]);
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("visible to every user"),
        "{}",
        refused.stderr
    );
    // The audit log never holds the value.
    assert!(env.events().iter().all(|e| !e.to_string().contains(SECRET)));
}

/// The podman backend keeps the same contract: npm inside gets the gate's reason and the
/// session is recorded as a podman one. Skips (saying so) where podman is not installed, unless
/// `MOAT_REQUIRE_PODMAN=1` (set by `.ci/run` once it installed podman).
#[test]
fn podman_backend_session_goes_through_the_gate() {
    let podman = std::process::Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !podman {
        assert!(
            std::env::var_os("MOAT_REQUIRE_PODMAN").is_none(),
            "MOAT_REQUIRE_PODMAN is set but podman is not installed"
        );
        eprintln!("skipped podman_backend_session_goes_through_the_gate: podman is not installed");
        return;
    }
    let env = RunEnv::start(POLICY);
    let refused = env.npm_install(&["--backend", "podman"], "minimist@1.2.5");
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("moat: blocked minimist@1.2.5 (moat.vulnerable)"),
        "{}",
        text(&refused)
    );
    let events = env.events();
    let start = events
        .iter()
        .find(|e| e["type"] == "session-start")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(start["backend"], "podman");
    assert_recorded_under_sessions(&events, 1);
}

/// The gate's state stays outside: the audit database, its signing key and the data dir are
/// invisible inside the session, though the gate writes to them while it runs.
#[test]
fn the_audit_log_and_its_key_are_invisible_inside() {
    let env = RunEnv::start(POLICY);
    let data = env.data.path().to_string_lossy().into_owned();
    let script = format!(
        "for f in {data}/audit.db {data}/audit.key {data}/policy.toml; do \
           cat \"$f\" >/dev/null 2>&1 && echo \"read:$f\"; done; \
         ls {data} >/dev/null 2>&1 && echo listed-data-dir; \
         echo x > {data}/planted 2>/dev/null && echo wrote-data-dir; \
         echo done"
    );
    let output = env.run(&[], &["sh", "-c", &script]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(output.stdout.contains("done"), "{}", text(&output));
    assert!(!output.stdout.contains("read:"), "{}", text(&output));
    assert!(
        !output.stdout.contains("listed-data-dir"),
        "{}",
        text(&output)
    );
    assert!(
        !output.stdout.contains("wrote-data-dir"),
        "{}",
        text(&output)
    );
    assert!(!env.data.path().join("planted").exists());
    // The gate did write its log and key there during the session.
    assert!(env.data.path().join("audit.db").is_file());
    assert!(env.data.path().join("audit.key").is_file());
}

/// `moat run` forks the sandbox's init at its first line instead of starting its binary again,
/// with `clone3` into new user and pid namespaces: that one process is pid 1 of the sandbox,
/// and the agent is its child. The init keeps nothing of the host's environment (an API key
/// among it) or command line: read from the host while the session runs, neither its `/proc`
/// files nor any byte of its writable memory holds the marker.
#[test]
fn the_sandbox_init_is_pid_1_and_holds_nothing_of_the_host_environment() {
    const MARKER: &str = "moat-host-secret-5f0c2a9e77d1";
    let env = RunEnv::start(POLICY);
    let data = env.data.path().to_string_lossy().into_owned();
    let mut child = std::process::Command::new(MOAT)
        .args(env.run_args(&[], &["sleep", "60"]))
        .env("ANTHROPIC_API_KEY", MARKER)
        .env("MOAT_E2E_HOST_SECRET", MARKER)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (session, init, agent) = init_and_agent(&env, &child);
    let comm = std::fs::read_to_string(format!("/proc/{agent}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep", "the init's child is not the agent");
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let nspid = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(
        nspid,
        [init.to_string().as_str(), "1"],
        "the init is not pid 1 of a pid namespace of its own"
    );
    let cmdline = std::fs::read(format!("/proc/{init}/cmdline")).unwrap();
    assert!(
        cmdline.windows(14).any(|w| w == b"__sandbox-init"),
        "pid {init} is not the init: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let environ = std::fs::read(format!("/proc/{init}/environ")).unwrap();
    assert!(
        environ.iter().all(|&b| b == 0),
        "the init has an environment: {:?}",
        String::from_utf8_lossy(&environ)
    );
    let (scanned, found) = scan_writable_memory(init, MARKER.as_bytes());
    assert!(scanned > 0, "nothing of the init's memory was read");
    assert_eq!(found, None, "the init holds the host's secret");
    run_moat(Path::new(MOAT), &["stop", &session, "--data-dir", &data]).assert_success();
    child.wait().unwrap();
}

/// Once the agent runs, the sandbox's init holds none of the caller's standard streams: the
/// agent has its own copies, and a caller reading the agent's output through a pipe sees its
/// end when the agent and `moat run` close it, not after the init and its namespaces are gone.
#[test]
fn the_init_lets_go_of_the_callers_standard_streams_once_the_agent_runs() {
    let env = RunEnv::start(POLICY);
    let data = env.data.path().to_string_lossy().into_owned();
    let mut child = std::process::Command::new(MOAT)
        .args(env.run_args(&[], &["sleep", "60"]))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (session, init, agent) = init_and_agent(&env, &child);
    let stream = |pid: u32, fd: u32| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|target| target.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    for fd in 0..=2 {
        assert!(
            stream(agent, fd).starts_with("pipe:"),
            "the agent's descriptor {fd} is not the caller's pipe: {:?}",
            stream(agent, fd)
        );
        // The init lets go right after the agent's start, which the check above saw.
        wait_until("the init lets go of the caller's stream", || {
            stream(init, fd) == "/dev/null"
        });
    }
    run_moat(Path::new(MOAT), &["stop", &session, "--data-dir", &data]).assert_success();
    child.wait().unwrap();
}

/// The session `moat_run` runs, once it runs: its id, its sandbox's init (`moat run`'s one
/// child) and its agent (the init's one child).
fn init_and_agent(env: &RunEnv, moat_run: &std::process::Child) -> (String, u32, u32) {
    let listed = env.wait_for_session();
    let session = listed[0]["session"]
        .as_str()
        .expect("session id")
        .to_owned();
    let init = children(moat_run.id());
    assert_eq!(init.len(), 1, "moat run has one child, its init: {init:?}");
    let init = init[0];
    // The session is listed once it is admitted; the agent is started by then or very soon.
    wait_until("the init starts the agent", || !children(init).is_empty());
    let agent = children(init);
    assert_eq!(
        agent.len(),
        1,
        "the init has one child, the agent: {agent:?}"
    );
    (session, init, agent[0])
}

/// Waits until `done` holds (bounded: a guard against a hang, not a timing assertion).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("never happened: {what}");
}

/// The processes under `pid`, at any depth (those that exit meanwhile are left out).
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        let below = children(parent);
        next.extend(&below);
        found.extend(below);
    }
    found
}

/// Whether `pid` is blocked in `read(0, …)` (`/proc/PID/syscall`: number 0 is `read`).
fn reads_stdin(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|call| call.starts_with("0 0x0 "))
}

/// Whether `pid` is stopped by job control (state `T` in `/proc/PID/stat`).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

/// The children of process `pid`, of all its threads (none when it has exited meanwhile).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for task in tasks.flatten() {
        let listed = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        all.extend(
            listed
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    all
}

/// Reads every populated, writable private mapping of `pid` through `/proc/PID/mem` (as root:
/// the namespace's pid 1 is not dumpable) and looks for `needle`. Returns the bytes read and
/// the first mapping holding it.
fn scan_writable_memory(pid: u32, needle: &[u8]) -> (usize, Option<String>) {
    use std::os::unix::fs::FileExt as _;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .unwrap_or_else(|e| panic!("cannot read pid {pid}'s memory (run the tests as root): {e}"));
    let mut scanned = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        // Reserved, never touched address space (the allocator's arena) reads as zeros; the
        // heap's used part lies at its start.
        let length = (end - start).min(64 << 20) as usize;
        let mut bytes = vec![0u8; length];
        let Ok(read) = mem.read_at(&mut bytes, start) else {
            continue;
        };
        scanned += read;
        if bytes[..read].windows(needle.len()).any(|w| w == needle) {
            return (scanned, Some(line.to_owned()));
        }
    }
    (scanned, None)
}

/// `moat run --help`, usage errors and errors found once the sandbox is being built end the
/// sandbox init (forked by `main` at its first line, or started as a program) before the
/// process exits: no init is orphaned, not even one that was not admitted. Checked in a helper
/// (this test alone, in a process of its own) that is its descendants' subreaper, so an
/// orphaned init would become its child.
#[test]
fn an_early_error_leaves_no_sandbox_init_behind() {
    const HELPER: &str = "MOAT_TEST_SUBREAPER_HELPER";
    if std::env::var_os(HELPER).is_none() {
        let helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "run::an_early_error_leaves_no_sandbox_init_behind",
                "--nocapture",
            ])
            .env(HELPER, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&helper.stdout);
        let stderr = String::from_utf8_lossy(&helper.stderr);
        assert!(helper.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the helper ran nothing: {stdout}"
        );
        return;
    }
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    // The third fails once the sandbox is being built (a bad `--env` is found when the gate's
    // address is known): the unadmitted init ends and is reaped too.
    let (data, osv) = (tempfile::tempdir().unwrap(), advisories());
    let (data, osv) = (data.path().to_str().unwrap(), osv.path().to_str().unwrap());
    let bad_env = ["--advisories", osv, "--env", "NOT-A-PAIR", "--", "true"];
    let after_start = [&["--data-dir", data, "run"][..], &bad_env].concat();
    let after_forked_start = [&["run", "--data-dir", data][..], &bad_env].concat();
    for args in [
        &["run", "--no-such-flag"][..],
        &["run", "--help"],
        &after_start,
        &after_forked_start,
    ] {
        let output = std::process::Command::new(MOAT)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.code().is_some(), "{args:?}: {stderr}");
        if args.contains(&"NOT-A-PAIR") {
            assert!(stderr.contains("--env NOT-A-PAIR"), "{args:?}: {stderr}");
        }
        // An orphan is this process's child as soon as moat run has exited.
        let orphans = children(std::process::id());
        assert!(orphans.is_empty(), "{args:?} left {orphans:?} behind");
    }
}
