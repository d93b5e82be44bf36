//! Real pip and uv runs against an index URL, isolated from the host: a clean environment
//! (no proxy variables, no pip/uv configuration files), a per-workspace `$HOME`, no cache,
//! and installs into a per-workspace `--target` directory instead of any environment.
//!
//! - pip: `python3 -m pip install --index-url URL --target DIR --no-cache-dir
//!   --disable-pip-version-check --no-input --progress-bar off …` with `PIP_CONFIG_FILE=/dev/null`.
//! - uv: `uv pip install --index-url URL --target DIR --no-cache --python <python3>
//!   --color never --no-progress …` with `UV_NO_CONFIG=1` and `UV_CACHE_DIR` in the workspace.
//!
//! `python3` is resolved once to its real path (`$MOAT_PYTHON` overrides), so pyenv shims
//! keep working under the clean environment; uv is `$MOAT_UV`, else the `uv` installed beside
//! that interpreter (what `.ci/install-clients` does), else a `uv` on `PATH`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

use super::{Client, ClientOutput, run_to_output, temp_root, write_file};
use crate::pypi::normalize;

const HINT: &str = "hint: run .ci/install-clients";

/// pip or uv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PythonClient {
    Pip,
    Uv,
}

impl PythonClient {
    /// The [`Client`] that labels this client's [`ClientOutput`]s.
    pub fn client(self) -> Client {
        match self {
            Self::Pip => Client::Pip,
            Self::Uv => Client::Uv,
        }
    }

    pub fn name(self) -> &'static str {
        self.client().name()
    }

    /// The client's version (`23.2.1`, `0.13.9`), checked once per test process; panics with
    /// a hint when it is missing or too old.
    pub fn checked_version(self) -> &'static str {
        self.client().checked_version()
    }

    /// Installs `requirements` (PEP 508 strings: `name`, `name==1.0.0`, `name>=1,<2`) from
    /// `index_url` (a simple index, e.g. `http://127.0.0.1:PORT/simple/`) into the
    /// workspace's target directory.
    pub fn install(
        self,
        workspace: &PyWorkspace,
        index_url: &str,
        requirements: &[&str],
    ) -> ClientOutput {
        self.install_with(workspace, index_url, &[], requirements)
    }

    /// [`PythonClient::install`] with more flags before the requirements (e.g.
    /// `["--retries", "0"]` for pip, `["-v"]`).
    pub fn install_with(
        self,
        workspace: &PyWorkspace,
        index_url: &str,
        extra: &[&str],
        requirements: &[&str],
    ) -> ClientOutput {
        let target = workspace.target().to_string_lossy().into_owned();
        let python = python_program().to_string_lossy().into_owned();
        let mut args: Vec<&str> = match self {
            Self::Pip => vec![
                "install",
                "--index-url",
                index_url,
                "--target",
                &target,
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ],
            Self::Uv => vec![
                "pip",
                "install",
                "--index-url",
                index_url,
                "--target",
                &target,
                "--no-cache",
                "--python",
                &python,
                "--color",
                "never",
                "--no-progress",
            ],
        };
        args.extend_from_slice(extra);
        args.extend_from_slice(requirements);
        self.run(workspace, &args)
    }

    /// Runs the client with these arguments (after `python3 -m pip`, or after `uv`) in the
    /// workspace's project directory, with the isolated environment but no flags added.
    pub fn run(self, workspace: &PyWorkspace, args: &[&str]) -> ClientOutput {
        self.checked_version();
        let mut command = Command::new(self.client().program());
        if self == Self::Pip {
            command.args(["-m", "pip"]);
        }
        command.args(args);
        isolate(&mut command, workspace);
        match self {
            Self::Pip => {
                command
                    .env("PIP_CONFIG_FILE", "/dev/null")
                    .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                    .env("PIP_NO_INPUT", "1")
                    .env("PIP_ROOT_USER_ACTION", "ignore")
                    .env("PIP_PROGRESS_BAR", "off");
            }
            Self::Uv => {
                command
                    .env("UV_NO_CONFIG", "1")
                    .env("UV_CACHE_DIR", workspace.cache().join("uv"))
                    .env("UV_PYTHON_DOWNLOADS", "never")
                    .env("UV_PYTHON_PREFERENCE", "only-system")
                    .env("UV_LINK_MODE", "copy")
                    .env("UV_NO_PROGRESS", "1");
            }
        }
        run_to_output(self.client(), &mut command, args)
    }
}

/// The clean environment both clients run in.
fn isolate(command: &mut Command, workspace: &PyWorkspace) {
    super::isolate(
        command,
        &workspace.project(),
        &workspace.home(),
        &workspace.tmp(),
    );
    command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
}

/// The Python interpreter: `$MOAT_PYTHON`, else `python3`'s `sys.executable`.
pub(crate) fn python_program() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(python) = std::env::var_os("MOAT_PYTHON") {
                return PathBuf::from(python);
            }
            // With the host's environment: a pyenv shim needs it to find the interpreter.
            let output = Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .stdin(Stdio::null())
                .output();
            match output {
                Ok(output) if output.status.success() => {
                    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
                }
                Ok(output) => panic!(
                    "python3 failed: {}\n{HINT} (pip and uv need python3)",
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(error) => panic!("python3 not found ({error})\n{HINT}"),
            }
        })
        .clone()
}

/// uv: `$MOAT_UV`, else beside the interpreter, else on `PATH` (not a pyenv shim).
pub(crate) fn uv_program() -> PathBuf {
    static UV: OnceLock<PathBuf> = OnceLock::new();
    UV.get_or_init(|| {
        if let Some(uv) = std::env::var_os("MOAT_UV") {
            return PathBuf::from(uv);
        }
        let beside = python_program().with_file_name("uv");
        if beside.is_file() {
            return beside;
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .filter(|dir| !dir.ends_with("shims"))
            .map(|dir| dir.join("uv"))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "uv not found (not beside {} nor on PATH; set MOAT_UV to override)\n{HINT}",
                    python_program().display()
                )
            })
    })
    .clone()
}

/// `pip 23.2.1 from …` → `23.2.1`; `uv 0.13.9 (…)` → `0.13.9`. Panics unless pip ≥ 22
/// (PEP 691, PEP 658) or uv ≥ 0.9.
pub(crate) fn version(client: Client) -> String {
    let mut command = Command::new(client.program());
    match client {
        Client::Pip => {
            command.args(["-m", "pip", "--version"]);
        }
        Client::Uv => {
            command.arg("--version");
        }
        Client::Npm | Client::Pnpm | Client::Yarn1 | Client::Yarn4 | Client::Cargo => {
            unreachable!("not a Python client")
        }
    }
    let output = command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("UV_NO_CONFIG", "1")
        .stdin(Stdio::null())
        .output();
    let text = match output {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        Ok(output) => panic!(
            "{} ({:?}) --version failed: {}\n{HINT}",
            client.name(),
            command,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!("{} not found ({command:?}: {error})\n{HINT}", client.name()),
    };
    let version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let numbers: Vec<u64> = version
        .split('.')
        .map_while(|part| part.parse().ok())
        .collect();
    let (major, minor) = (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    );
    let recent = if client == Client::Pip {
        major >= 22
    } else {
        major >= 1 || minor >= 9
    };
    assert!(
        recent,
        "{} is version {version:?} ({}), expected pip 22+ / uv 0.9+\n{HINT}",
        client.name(),
        text.trim()
    );
    version
}

/// A temp dir with a project directory (the working directory), a `$HOME`, a cache and the
/// `--target` directory packages are installed into, used by one test.
pub struct PyWorkspace {
    root: TempDir,
}

impl Default for PyWorkspace {
    fn default() -> Self {
        Self::new()
    }
}

impl PyWorkspace {
    pub fn new() -> Self {
        let dirs = ["project", "home", "cache", "tmp", "target"];
        Self {
            root: temp_root("moat-python-", &dirs),
        }
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

    /// Where packages are installed (`--target`).
    pub fn target(&self) -> PathBuf {
        self.root.path().join("target")
    }

    fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    /// Writes a file in the project (e.g. `requirements.txt`, then
    /// `install_with(…, &["-r", "requirements.txt"], &[])`).
    pub fn write(&self, relative: &str, contents: &str) {
        write_file(&self.project().join(relative), contents);
    }

    /// Every installed distribution: normalised name → version, from the `*.dist-info`
    /// directories' `METADATA` in the target.
    pub fn installed(&self) -> BTreeMap<String, String> {
        let mut found = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(self.target()) else {
            return found;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "dist-info") {
                continue;
            }
            if let Some((name, version)) = read_metadata(&path.join("METADATA")) {
                found.insert(normalize(&name), version);
            }
        }
        found
    }

    /// The installed version of a distribution (any spelling of its name), if any.
    pub fn installed_version(&self, name: &str) -> Option<String> {
        self.installed().remove(&normalize(name))
    }

    /// Empties the target directory (pip does not replace what is already there).
    pub fn reset_install(&self) {
        let _ = std::fs::remove_dir_all(self.target());
        std::fs::create_dir_all(self.target()).expect("create dir");
    }
}

fn read_metadata(path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Name:") {
            name = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("Version:") {
            version = Some(value.trim().to_owned());
        }
    }
    Some((name?, version?))
}
