//! The real `moat` binary: a running `moat gate` and one-shot subcommands.
//!
//! CLI contract relied on: `moat gate --listen 127.0.0.1:0 …` prints a line containing
//! `listening on http://HOST:PORT` to stderr once bound.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tempfile::TempDir;

/// A guard against a gate that never binds, not a timing assertion.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What a gate is started with.
#[derive(Debug, Clone)]
pub struct GateArgs {
    pub upstream_npm: String,
    pub advisories: PathBuf,
    pub popular: PathBuf,
    /// The policy file's text (TOML).
    pub policy: String,
    /// More flags, e.g. `["--upstream-timeout", "2"]`.
    pub extra: Vec<String>,
    /// A data dir to reuse (e.g. another gate's, to see its cache); default: a fresh one.
    pub data_dir: Option<PathBuf>,
    /// The listen address; default `127.0.0.1:0`.
    pub listen: Option<String>,
    /// Environment variables set for the gate (on top of this process's).
    pub env: Vec<(String, String)>,
    /// The gate's working directory; a relative `data_dir` is relative to it. Default: this
    /// process's.
    pub current_dir: Option<PathBuf>,
}

impl GateArgs {
    pub fn new(upstream_npm: &str, advisories: &Path, popular: &Path, policy: &str) -> Self {
        Self {
            upstream_npm: upstream_npm.to_owned(),
            advisories: advisories.to_owned(),
            popular: popular.to_owned(),
            policy: policy.to_owned(),
            extra: Vec::new(),
            data_dir: None,
            listen: None,
            env: Vec::new(),
            current_dir: None,
        }
    }

    /// Listens on this address (e.g. the port of a gate this one replaces).
    pub fn listen(mut self, address: &str) -> Self {
        self.listen = Some(address.to_owned());
        self
    }

    /// Runs on this data dir instead of a fresh one (given to the gate as it is: a relative
    /// one is relative to [`current_dir`](Self::current_dir)).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_owned());
        self
    }

    /// Starts the gate in this working directory.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.current_dir = Some(dir.to_owned());
        self
    }

    /// Sets an environment variable for the gate, e.g. `SSL_CERT_FILE`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running `moat gate`; killed when dropped.
pub struct MoatGate {
    binary: PathBuf,
    child: Child,
    url: String,
    home: TempDir,
    args: GateArgs,
    output: Arc<Mutex<String>>,
}

impl MoatGate {
    /// Spawns `moat gate` with a fresh data dir and waits until it listens; panics with the
    /// gate's output when it does not.
    pub fn start(binary: &Path, args: GateArgs) -> Self {
        Self::try_start(binary, args).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Spawns `moat gate` and waits until it listens; `Err` holds its exit status and output
    /// when it exits (or hangs) first.
    pub fn try_start(binary: &Path, args: GateArgs) -> Result<Self, String> {
        let home = tempfile::Builder::new()
            .prefix("moat-gate-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(effective_data_dir(home.path(), &args)).expect("data dir");
        std::fs::write(home.path().join("policy.toml"), &args.policy).expect("write policy");
        let mut command = Command::new(binary);
        command
            .arg("gate")
            .args(["--listen", args.listen.as_deref().unwrap_or("127.0.0.1:0")])
            .args(data_flags(
                home.path(),
                &args,
                &given_data_dir(home.path(), &args),
            ))
            .args(&args.extra)
            .envs(args.env.iter().map(|(name, value)| (name, value)))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &args.current_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {}: {error}", binary.display()));
        let output = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        drain(stderr, output.clone(), Some(url_tx));
        let stdout = child.stdout.take().expect("piped stdout");
        drain(stdout, output.clone(), None);
        let url = match url_rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(error) => {
                let _ = child.kill();
                let status = child.wait().ok();
                // Let the drain threads finish reading what the child wrote.
                std::thread::sleep(Duration::from_millis(200));
                return Err(format!(
                    "moat gate did not print `listening on http://…` ({error}); exit: {status:?}\n\
                     args: {command:?}\n--- output ---\n{}",
                    output.lock().unwrap()
                ));
            }
        };
        Ok(Self {
            binary: binary.to_owned(),
            child,
            url,
            home,
            args,
            output,
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The npm registry URL to give clients: `http://127.0.0.1:PORT/npm/`.
    pub fn npm_registry(&self) -> String {
        format!("{}/npm/", self.url)
    }

    pub fn data_dir(&self) -> PathBuf {
        effective_data_dir(self.home.path(), &self.args)
    }

    pub fn policy_path(&self) -> PathBuf {
        self.home.path().join("policy.toml")
    }

    /// Kills the gate and waits for it (also done on drop): a gate that dies.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the gate to shut down (`SIGTERM`) and waits for it to exit.
    pub fn terminate(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Everything the gate printed so far (stderr and stdout).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Everything the gate printed, once it has printed `needle` (what it logs after it
    /// answered, such as a session's end, comes after the client has gone); gives up, and
    /// returns what there is, after a minute.
    pub fn output_once(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let output = self.output();
            if output.contains(needle) || std::time::Instant::now() >= deadline {
                return output;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `--data-dir --advisories --popular --policy --upstream-npm` flags this gate runs
    /// with (and `--upstream-pypi`, `--upstream-crates` when it was given them), for subcommands that must see the same state (`moat why`, `moat audit list`).
    pub fn data_flags(&self) -> Vec<String> {
        let mut flags = data_flags(self.home.path(), &self.args, &self.data_dir());
        flags.extend(upstream_flags(&self.args.extra));
        flags
    }

    /// Runs `moat ARGS… --data-dir <this gate's data dir>`.
    pub fn run(&self, args: &[&str]) -> MoatOutput {
        let mut all: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        all.push("--data-dir".into());
        all.push(self.data_dir().to_string_lossy().into_owned());
        run_moat(&self.binary, &all)
    }

    /// Runs `moat ARGS… <all data flags>`, for subcommands that take the gate's sources
    /// (`moat why`).
    pub fn run_with_sources(&self, args: &[&str]) -> MoatOutput {
        let mut all: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        all.extend(self.data_flags());
        run_moat(&self.binary, &all)
    }
}

impl Drop for MoatGate {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The data dir as the gate is told it.
fn given_data_dir(home: &Path, args: &GateArgs) -> PathBuf {
    args.data_dir.clone().unwrap_or_else(|| home.join("data"))
}

/// The data dir as this process finds it (a relative one is the gate's working directory's).
fn effective_data_dir(home: &Path, args: &GateArgs) -> PathBuf {
    let given = given_data_dir(home, args);
    match &args.current_dir {
        Some(dir) => dir.join(given),
        None => given,
    }
}

fn data_flags(home: &Path, args: &GateArgs, data_dir: &Path) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "--data-dir".into(),
        path(data_dir),
        "--advisories".into(),
        path(&args.advisories),
        "--popular".into(),
        path(&args.popular),
        "--policy".into(),
        path(&home.join("policy.toml")),
        "--upstream-npm".into(),
        args.upstream_npm.clone(),
    ]
}

/// The `--upstream-pypi URL` / `--upstream-crates URL` pairs among the gate's extra flags.
fn upstream_flags(extra: &[String]) -> Vec<String> {
    extra
        .windows(2)
        .filter(|pair| matches!(pair[0].as_str(), "--upstream-pypi" | "--upstream-crates"))
        .flat_map(|pair| pair.iter().cloned())
        .collect()
}

/// Copies a child's stream into `output`; sends the URL after `listening on ` once seen.
fn drain(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
    url_tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut url_tx = url_tx;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = listening_url(&line) {
                if let Some(tx) = url_tx.take() {
                    let _ = tx.send(url);
                }
            }
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
}

fn listening_url(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("listening on ")?;
    let token = rest.split_whitespace().next()?;
    token
        .starts_with("http://")
        .then(|| token.trim_end_matches('/').to_owned())
}

/// The result of a one-shot `moat` command.
#[derive(Debug)]
pub struct MoatOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl MoatOutput {
    /// Panics with both streams unless the command succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "moat failed: {self}");
        self
    }

    /// stdout parsed as JSON; panics with both streams when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self}"))
    }
}

impl From<std::process::Output> for MoatOutput {
    /// The status and both streams (lossily decoded) of a finished process.
    fn from(output: std::process::Output) -> MoatOutput {
        MoatOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for MoatOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `moat ARGS…` to completion.
pub fn run_moat<S: AsRef<std::ffi::OsStr>>(binary: &Path, args: &[S]) -> MoatOutput {
    let mut command = Command::new(binary);
    command.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
    crate::process::output_with_limit(&mut command, crate::process::HANG_GUARD).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_url_in_the_listening_line() {
        assert_eq!(
            listening_url("moat gate listening on http://127.0.0.1:4321"),
            Some("http://127.0.0.1:4321".to_owned())
        );
        assert_eq!(
            listening_url("2026 INFO moat gate listening on http://127.0.0.1:1/ (npm)"),
            Some("http://127.0.0.1:1".to_owned())
        );
        assert_eq!(listening_url("starting"), None);
    }
}
