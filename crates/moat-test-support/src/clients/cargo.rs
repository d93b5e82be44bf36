//! Real cargo runs against a sparse index, isolated from the host: a clean environment (no
//! proxy variables, no git or cargo configuration of the host), a private `CARGO_HOME` whose
//! `config.toml` replaces crates-io with the index, and a private target directory.
//!
//! cargo is `$MOAT_CARGO`, else `cargo` on `PATH`; `RUSTUP_HOME` (and `RUSTUP_TOOLCHAIN` when
//! set) are passed through so the rustup proxy still finds the toolchain under the private
//! `$HOME`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::{Client, ClientOutput, run_to_output, temp_root, write_file};

const HINT: &str = "hint: install a Rust toolchain with rustup (cargo 1.68+ for sparse registries)";

/// The name of the project's own package (in `Cargo.toml` and `Cargo.lock`).
pub const PROJECT_NAME: &str = "moat-cargo-project";

/// The `source` cargo writes in `Cargo.lock` for crates-io packages (replaced or not).
pub const CRATES_IO_SOURCE: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// A temp dir with a library project depending on registry crates, a private `$HOME` and
/// `CARGO_HOME`, used by one test.
pub struct CargoProject {
    root: TempDir,
}

impl CargoProject {
    /// A project whose `[dependencies]` are `(name, requirement)` pairs (e.g.
    /// `("tiny-pad", "^1.0")`, `("tiny-pad", "=1.0.0")`), with crates-io replaced by the sparse
    /// index at `index_url` (`http://…/crates/index/` for the gate, [`FixtureCrates::index_url`]
    /// for the fixture; `sparse+` is added, and a trailing `/` when missing).
    ///
    /// [`FixtureCrates::index_url`]: crate::crates::FixtureCrates::index_url
    pub fn new(index_url: &str, dependencies: &[(&str, &str)]) -> Self {
        let dirs = ["project/src", "home", "cargo-home", "tmp", "target"];
        let project = Self {
            root: temp_root("moat-cargo-", &dirs),
        };
        project.write("src/lib.rs", "//! moat end-to-end test project.\n");
        project.set_dependencies(dependencies);
        project.set_index(index_url);
        project
    }

    /// The project directory (holding `Cargo.toml`, `Cargo.lock`).
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("project")
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// The private `CARGO_HOME` (config, registry cache and unpacked sources).
    pub fn cargo_home(&self) -> PathBuf {
        self.root.path().join("cargo-home")
    }

    /// `CARGO_TARGET_DIR`.
    pub fn target_dir(&self) -> PathBuf {
        self.root.path().join("target")
    }

    fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    /// Writes a file in the project.
    pub fn write(&self, relative: &str, contents: &str) {
        write_file(&self.dir().join(relative), contents);
    }

    /// Rewrites `Cargo.toml` with these `[dependencies]` (the lockfile is kept).
    pub fn set_dependencies(&self, dependencies: &[(&str, &str)]) {
        let mut manifest = format!(
            "[package]\nname = \"{PROJECT_NAME}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [lib]\npath = \"src/lib.rs\"\n\n[dependencies]\n"
        );
        for (name, requirement) in dependencies {
            manifest.push_str(&format!("{name} = {requirement:?}\n"));
        }
        self.write("Cargo.toml", &manifest);
    }

    /// Points the crates-io replacement at another sparse index (e.g. generate the lockfile
    /// against the fixture, then fetch through the gate). Writes `$CARGO_HOME/config.toml`.
    pub fn set_index(&self, index_url: &str) {
        let index_url = index_url.strip_prefix("sparse+").unwrap_or(index_url);
        let slash = if index_url.ends_with('/') { "" } else { "/" };
        let config = format!(
            "[source.crates-io]\nreplace-with = \"moat\"\n\n\
             [source.moat]\nregistry = \"sparse+{index_url}{slash}\"\n\n\
             [net]\ngit-fetch-with-cli = false\n\n[term]\ncolor = \"never\"\nprogress.when = \"never\"\n"
        );
        write_file(&self.cargo_home().join("config.toml"), &config);
    }

    /// Runs `cargo <args>` in the project with the isolated environment.
    pub fn run(&self, args: &[&str]) -> ClientOutput {
        Client::Cargo.checked_version();
        let mut command = Command::new(cargo_program());
        command.args(args);
        self.isolate(&mut command);
        run_to_output(Client::Cargo, &mut command, args)
    }

    /// `cargo generate-lockfile`: resolves every dependency through the index.
    pub fn generate_lockfile(&self) -> ClientOutput {
        self.run(&["generate-lockfile"])
    }

    /// `cargo fetch`: resolves (or reads `Cargo.lock`) and downloads every `.crate`.
    pub fn fetch(&self) -> ClientOutput {
        self.run(&["fetch"])
    }

    /// `cargo build` (resolves and downloads when needed).
    pub fn build(&self) -> ClientOutput {
        self.run(&["build"])
    }

    /// `cargo build --offline` (after a fetch).
    pub fn build_offline(&self) -> ClientOutput {
        self.run(&["build", "--offline"])
    }

    /// `cargo update -p <name> --precise <version>`: pins a version in `Cargo.lock`.
    pub fn update_precise(&self, name: &str, version: &str) -> ClientOutput {
        self.run(&["update", "-p", name, "--precise", version])
    }

    /// Writes a `Cargo.lock` (format 3) pinning `(name, version, cksum)` registry packages,
    /// for dependencies without dependencies of their own; the project's package depends on
    /// each of them. `cksum` is the index's (e.g. [`FixtureCrates::cksum`]).
    ///
    /// [`FixtureCrates::cksum`]: crate::crates::FixtureCrates::cksum
    pub fn write_lockfile(&self, packages: &[(&str, &str, &str)]) {
        let mut lock = String::from(
            "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 3\n",
        );
        let mut all: Vec<(&str, Option<(&str, &str)>)> = packages
            .iter()
            .map(|&(name, version, cksum)| (name, Some((version, cksum))))
            .collect();
        all.push((PROJECT_NAME, None));
        all.sort_by_key(|(name, _)| *name);
        for (name, pinned) in all {
            lock.push_str(&format!("\n[[package]]\nname = {name:?}\n"));
            match pinned {
                Some((version, cksum)) => lock.push_str(&format!(
                    "version = {version:?}\nsource = {CRATES_IO_SOURCE:?}\nchecksum = {cksum:?}\n"
                )),
                None => {
                    lock.push_str("version = \"0.1.0\"\n");
                    if !packages.is_empty() {
                        let mut names: Vec<&str> = packages.iter().map(|p| p.0).collect();
                        names.sort_unstable();
                        lock.push_str("dependencies = [\n");
                        for dependency in names {
                            lock.push_str(&format!(" {dependency:?},\n"));
                        }
                        lock.push_str("]\n");
                    }
                }
            }
        }
        self.write("Cargo.lock", &lock);
    }

    /// The `Cargo.lock` text, if any.
    pub fn lockfile(&self) -> Option<String> {
        std::fs::read_to_string(self.dir().join("Cargo.lock")).ok()
    }

    pub fn remove_lockfile(&self) {
        let _ = std::fs::remove_file(self.dir().join("Cargo.lock"));
    }

    /// Every version of `name` in `Cargo.lock` (usually one).
    pub fn locked_versions(&self, name: &str) -> Vec<String> {
        let Some(text) = self.lockfile() else {
            return Vec::new();
        };
        let lock: toml::Value = toml::from_str(&text)
            .unwrap_or_else(|error| panic!("Cargo.lock is not TOML ({error}):\n{text}"));
        let packages = lock.get("package").and_then(toml::Value::as_array);
        packages
            .into_iter()
            .flatten()
            .filter(|p| p.get("name").and_then(toml::Value::as_str) == Some(name))
            .filter_map(|p| p.get("version").and_then(toml::Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// The version of `name` in `Cargo.lock`, if any (the first when several).
    pub fn locked_version(&self, name: &str) -> Option<String> {
        self.locked_versions(name).into_iter().next()
    }

    /// Removes the downloaded `.crate` files and unpacked sources (the index cache too), so
    /// the next run fetches again.
    pub fn clear_cargo_cache(&self) {
        let _ = std::fs::remove_dir_all(self.cargo_home().join("registry"));
    }

    fn isolate(&self, command: &mut Command) {
        let home = self.home();
        command
            .current_dir(self.dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("CARGO_HOME", self.cargo_home())
            .env("CARGO_TARGET_DIR", self.target_dir())
            .env("CARGO_INCREMENTAL", "0")
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_TERM_PROGRESS_WHEN", "never")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("TMPDIR", self.tmp())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        pass_rustup(command);
    }
}

/// The rustup proxy finds its toolchains through `RUSTUP_HOME` (default `~/.rustup`, which a
/// private `$HOME` hides).
fn pass_rustup(command: &mut Command) {
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            let home = PathBuf::from(std::env::var_os("HOME")?);
            Some(home.join(".rustup")).filter(|dir| dir.is_dir())
        });
    if let Some(rustup_home) = rustup_home {
        command.env("RUSTUP_HOME", rustup_home);
    }
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        command.env("RUSTUP_TOOLCHAIN", toolchain);
    }
}

/// `$MOAT_CARGO`, else `cargo`.
pub(crate) fn cargo_program() -> PathBuf {
    std::env::var_os("MOAT_CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// `cargo 1.95.0 (…)` → `1.95.0`; panics unless 1.68+ (sparse registries).
pub(crate) fn version() -> String {
    let mut command = Command::new(cargo_program());
    command
        .arg("--version")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null());
    pass_rustup(&mut command);
    let text = match command.output() {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        Ok(output) => panic!(
            "cargo --version failed: {}\n{HINT}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!("cargo not found ({command:?}: {error})\n{HINT}"),
    };
    let version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let minor: u64 = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        version.starts_with("1.") && minor >= 68,
        "cargo is version {version:?} ({}), expected 1.68+\n{HINT}",
        text.trim()
    );
    version
}
