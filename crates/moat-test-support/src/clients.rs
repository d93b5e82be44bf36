//! Real package clients (npm 11, pnpm 10, yarn 1, yarn 4) run against a registry URL with
//! isolated configuration: a clean environment, a per-workspace `$HOME`, and per-workspace
//! caches and stores, so no test sees another's metadata cache. pip and uv run through
//! [`PythonClient`] and [`PyWorkspace`] ([`python`]), cargo through [`CargoProject`]
//! ([`cargo`]); all of them report a [`ClientOutput`].
//!
//! Set `MOAT_TEST_VERBOSE=1` to print every client run (with `--no-capture`).
//!
//! A missing client fails the test with a hint (CI installs them with `.ci/install-clients`);
//! it is never skipped silently.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use serde_json::json;
use tempfile::TempDir;

use crate::process;

pub mod cargo;
pub mod python;

pub use cargo::CargoProject;
pub use python::{PyWorkspace, PythonClient};

/// Where `.ci/install-clients` puts yarn 4, so it does not clash with yarn 1 on `PATH`.
const YARN4_DEFAULT: &str = "/opt/yarn4/bin/yarn";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Npm,
    Pnpm,
    Yarn1,
    Yarn4,
    /// `python3 -m pip`, run through [`PythonClient::Pip`].
    Pip,
    /// `uv pip`, run through [`PythonClient::Uv`].
    Uv,
    /// cargo, run through [`CargoProject`].
    Cargo,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::Pnpm => "pnpm",
            Self::Yarn1 => "yarn 1",
            Self::Yarn4 => "yarn 4",
            Self::Pip => "pip",
            Self::Uv => "uv",
            Self::Cargo => "cargo",
        }
    }

    /// The executable: `$MOAT_<CLIENT>` when set, else the usual place. For pip, the Python
    /// interpreter (`$MOAT_PYTHON`, else `python3` resolved to its real path).
    pub fn program(self) -> PathBuf {
        let (variable, default) = match self {
            Self::Pip => return python::python_program(),
            Self::Uv => return python::uv_program(),
            Self::Cargo => return cargo::cargo_program(),
            Self::Npm => ("MOAT_NPM", "npm"),
            Self::Pnpm => ("MOAT_PNPM", "pnpm"),
            Self::Yarn1 => ("MOAT_YARN1", "yarn"),
            Self::Yarn4 => ("MOAT_YARN4", YARN4_DEFAULT),
        };
        std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from)
    }

    /// The client's `--version` (for pip, uv and cargo just the number, e.g. `23.2.1`); panics
    /// with a hint when it is missing or the wrong major.
    pub fn version(self) -> String {
        match self {
            Self::Pip | Self::Uv => return python::version(self),
            Self::Cargo => return cargo::version(),
            Self::Npm | Self::Pnpm | Self::Yarn1 | Self::Yarn4 => {}
        }
        let program = self.program();
        let output = Command::new(&program)
            .arg("--version")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .stdin(Stdio::null())
            .output();
        let version = match output {
            Ok(output) if output.status.success() => {
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            }
            Ok(output) => panic!(
                "{} ({}) --version failed: {}\nhint: run .ci/install-clients",
                self.name(),
                program.display(),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => panic!(
                "{} not found at {} ({error})\nhint: run .ci/install-clients",
                self.name(),
                program.display()
            ),
        };
        let expected_major = match self {
            Self::Npm => "11.",
            Self::Pnpm => "10.",
            Self::Yarn1 => "1.",
            Self::Yarn4 => "4.",
            Self::Pip | Self::Uv | Self::Cargo => unreachable!("checked above"),
        };
        assert!(
            version.starts_with(expected_major),
            "{} at {} is version {version}, expected {expected_major}x\nhint: run .ci/install-clients",
            self.name(),
            program.display()
        );
        version
    }

    /// [`Client::version`], checked once per test process.
    pub fn checked_version(self) -> &'static str {
        static NPM: OnceLock<String> = OnceLock::new();
        static PNPM: OnceLock<String> = OnceLock::new();
        static YARN1: OnceLock<String> = OnceLock::new();
        static YARN4: OnceLock<String> = OnceLock::new();
        static PIP: OnceLock<String> = OnceLock::new();
        static UV: OnceLock<String> = OnceLock::new();
        static CARGO: OnceLock<String> = OnceLock::new();
        let cell = match self {
            Self::Pip => &PIP,
            Self::Uv => &UV,
            Self::Cargo => &CARGO,
            Self::Npm => &NPM,
            Self::Pnpm => &PNPM,
            Self::Yarn1 => &YARN1,
            Self::Yarn4 => &YARN4,
        };
        cell.get_or_init(|| self.version())
    }

    /// Adds packages to the workspace's project (`npm install`, `pnpm add`, `yarn add`).
    pub fn add(self, workspace: &Workspace, registry: &str, specs: &[&str]) -> ClientOutput {
        let mut args: Vec<&str> = match self {
            Self::Npm => vec!["install"],
            Self::Pnpm | Self::Yarn1 | Self::Yarn4 => vec!["add"],
            Self::Pip | Self::Uv | Self::Cargo => vec![],
        };
        args.extend_from_slice(specs);
        self.run(workspace, registry, &args)
    }

    /// Runs the client in the workspace's project with isolation flags added.
    pub fn run(self, workspace: &Workspace, registry: &str, args: &[&str]) -> ClientOutput {
        match self {
            Self::Pip | Self::Uv | Self::Cargo => panic!(
                "{} is not an npm client: run it through clients::PythonClient or clients::CargoProject",
                self.name()
            ),
            Self::Npm | Self::Pnpm | Self::Yarn1 | Self::Yarn4 => {}
        }
        self.checked_version();
        let mut command = Command::new(self.program());
        isolate(
            &mut command,
            &workspace.project(),
            &workspace.home(),
            &workspace.tmp(),
        );
        let cache = workspace.cache();
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        match self {
            Self::Npm => {
                command.args(args).args([
                    "--registry",
                    registry,
                    "--cache",
                    &path(cache.join("npm")),
                    "--userconfig",
                    &path(workspace.home().join(".npmrc")),
                    "--globalconfig",
                    &path(workspace.home().join("global-npmrc")),
                    "--no-fund",
                    "--no-audit",
                    "--no-update-notifier",
                    "--color=false",
                    "--progress=false",
                ]);
            }
            Self::Pnpm => {
                command.args(args).args([
                    "--registry",
                    registry,
                    "--store-dir",
                    &path(cache.join("pnpm-store")),
                    "--cache-dir",
                    &path(cache.join("pnpm-cache")),
                    "--config.state-dir",
                    &path(cache.join("pnpm-state")),
                    "--reporter=append-only",
                    "--no-color",
                ]);
            }
            Self::Yarn1 => {
                command.args(args).args([
                    "--registry",
                    registry,
                    "--cache-folder",
                    &path(cache.join("yarn1")),
                    "--no-lockfile",
                    "--non-interactive",
                    "--no-progress",
                ]);
            }
            Self::Yarn4 => {
                workspace.write_yarnrc(registry);
                command
                    .args(args)
                    .env("YARN_ENABLE_TELEMETRY", "0")
                    .env("YARN_ENABLE_COLORS", "0")
                    .env("YARN_ENABLE_PROGRESS_BARS", "0");
            }
            Self::Pip | Self::Uv | Self::Cargo => unreachable!("refused above"),
        }
        run_to_output(self, &mut command, args)
    }
}

/// The clean environment the npm clients, pip and uv run in: nothing of the host's but `PATH`,
/// `$HOME` and the XDG directories under `home`, `TMPDIR` at `tmp`, no colours, no stdin.
fn isolate(command: &mut Command, dir: &Path, home: &Path, tmp: &Path) {
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null());
}

/// A temp dir named `{prefix}…` holding these subdirectories.
fn temp_root(prefix: &str, dirs: &[&str]) -> TempDir {
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    for dir in dirs {
        std::fs::create_dir_all(root.path().join(dir)).expect("create dir");
    }
    root
}

/// Writes a file, creating its directory.
fn write_file(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    std::fs::write(path, contents)
        .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

/// Runs `command` under the hang guard and collects a [`ClientOutput`] (printed when
/// `MOAT_TEST_VERBOSE` is set).
pub(crate) fn run_to_output(client: Client, command: &mut Command, args: &[&str]) -> ClientOutput {
    let output = process::output_with_limit(command, process::HANG_GUARD);
    let output = ClientOutput {
        client,
        args: args.iter().map(|&a| a.to_owned()).collect(),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if std::env::var_os("MOAT_TEST_VERBOSE").is_some() {
        eprintln!("{output}");
    }
    output
}

/// What a client run printed and how it ended.
#[derive(Debug)]
pub struct ClientOutput {
    pub client: Client,
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ClientOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout then stderr.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "expected success: {self}");
        self
    }

    pub fn assert_failure(&self) -> &Self {
        assert!(!self.success(), "expected failure: {self}");
        self
    }

    /// Panics unless the output contains `needle`.
    pub fn assert_contains(&self, needle: &str) -> &Self {
        assert!(
            self.text().contains(needle),
            "expected {needle:?} in: {self}"
        );
        self
    }
}

impl std::fmt::Display for ClientOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.client.name(),
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

fn empty_manifest() -> serde_json::Value {
    json!({
        "name": "moat-e2e-project",
        "version": "1.0.0",
        "private": true,
    })
}

/// A temp dir with a project (`package.json`), a `$HOME` and caches, used by one test.
pub struct Workspace {
    root: TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Self {
        let root = temp_root("moat-client-", &["project", "home", "cache", "tmp"]);
        let workspace = Self { root };
        workspace.write(
            "package.json",
            &serde_json::to_string_pretty(&empty_manifest()).expect("serialisable"),
        );
        std::fs::write(workspace.home().join(".npmrc"), "").expect("write npmrc");
        std::fs::write(
            workspace.home().join(".yarnrc"),
            "disable-self-update-check true\n",
        )
        .expect("write yarnrc");
        std::fs::write(workspace.home().join("global-npmrc"), "").expect("write npmrc");
        workspace
    }

    pub fn project(&self) -> PathBuf {
        self.root.path().join("project")
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    /// Writes a file in the project.
    pub fn write(&self, relative: &str, contents: &str) {
        write_file(&self.project().join(relative), contents);
    }

    /// The version installed at `node_modules/<name>`, if any.
    pub fn installed_version(&self, name: &str) -> Option<String> {
        let manifest = self
            .project()
            .join("node_modules")
            .join(name)
            .join("package.json");
        let text = std::fs::read_to_string(manifest).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["version"].as_str().map(str::to_owned)
    }

    /// Every version of `name` unpacked anywhere under `node_modules` (hoisted, nested, or in
    /// pnpm's `.pnpm` store), without following symlinks.
    pub fn versions_anywhere(&self, name: &str) -> std::collections::BTreeSet<String> {
        let mut found = std::collections::BTreeSet::new();
        let mut pending = vec![self.project().join("node_modules")];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    pending.push(entry.path());
                }
            }
            if dir.ends_with(name) {
                let manifest = std::fs::read_to_string(dir.join("package.json")).ok();
                let manifest: Option<serde_json::Value> =
                    manifest.and_then(|text| serde_json::from_str(&text).ok());
                if let Some(manifest) = manifest.filter(|m| m["name"] == name) {
                    if let Some(version) = manifest["version"].as_str() {
                        found.insert(version.to_owned());
                    }
                }
            }
        }
        found
    }

    /// Removes `node_modules`.
    pub fn reset_install(&self) {
        let _ = std::fs::remove_dir_all(self.project().join("node_modules"));
    }

    /// Back to an empty project: no dependencies, no `node_modules`, no lockfiles. Caches and
    /// stores are kept.
    pub fn reset_project(&self) {
        self.reset_install();
        for lockfile in ["package-lock.json", "pnpm-lock.yaml", "yarn.lock"] {
            let _ = std::fs::remove_file(self.project().join(lockfile));
        }
        let _ = std::fs::remove_dir_all(self.project().join(".yarn"));
        self.write(
            "package.json",
            &serde_json::to_string_pretty(&empty_manifest()).expect("serialisable"),
        );
    }

    fn write_yarnrc(&self, registry: &str) {
        let cache = self.cache();
        let yarnrc = format!(
            "npmRegistryServer: {registry:?}\n\
             unsafeHttpWhitelist:\n  - \"127.0.0.1\"\n  - \"localhost\"\n\
             enableGlobalCache: false\n\
             cacheFolder: {cache_folder:?}\n\
             globalFolder: {global_folder:?}\n\
             nodeLinker: node-modules\n\
             enableTelemetry: false\n\
             enableImmutableInstalls: false\n\
             enableProgressBars: false\n\
             npmMinimalAgeGate: 0\n",
            registry = registry.trim_end_matches('/'),
            cache_folder = cache.join("yarn4").to_string_lossy(),
            global_folder = cache.join("yarn4-global").to_string_lossy(),
        );
        self.write(".yarnrc.yml", &yarnrc);
        if !self.project().join("yarn.lock").exists() {
            self.write("yarn.lock", "");
        }
    }
}
