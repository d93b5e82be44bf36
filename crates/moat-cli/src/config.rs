//! Configuration: command-line flags over `moat.toml` over built-in defaults, resolved once into
//! plain values the library crates take.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use moat_advisories::{AdvisoryDb, Ecosystem, PopularNames};
use moat_audit::{AuditError, AuditLog, RepeatMode, StoreLocation};
use moat_policy::Policy;

use crate::cli::{GlobalArgs, SourceArgs};
use crate::error::UserError;

/// The default upstream npm registry.
pub const DEFAULT_UPSTREAM_NPM: &str = "https://registry.npmjs.org";
/// The default upstream PyPI simple index.
pub const DEFAULT_UPSTREAM_PYPI: &str = "https://pypi.org/simple";
/// The default upstream crates sparse index.
pub const DEFAULT_UPSTREAM_CRATES: &str = "https://index.crates.io";
/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// `moat.toml`, as written. Every key is optional; flags win over it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub advisories: Option<PathBuf>,
    pub popular: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub metadata_ttl: Option<u64>,
    pub upstream_timeout: Option<u64>,
    #[serde(default)]
    pub upstream: UpstreamSection,
    #[serde(default)]
    pub audit: AuditSection,
}

/// `[audit]`: where the audit log lives.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuditSection {
    /// A `postgres://` URL (several gates sharing one log) or a SQLite file (relative to this
    /// file's directory) [default: DATA_DIR/audit.db].
    pub store: Option<String>,
    /// `tally` or `record` (see `moat --help`, `--audit-repeats`).
    pub repeats: Option<crate::cli::AuditRepeats>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UpstreamSection {
    pub npm: Option<String>,
    pub pypi: Option<String>,
    pub crates: Option<String>,
}

/// The file config plus the directory it was found in (relative paths in it are resolved
/// against that directory).
#[derive(Debug, Default)]
pub struct Loaded {
    pub file: FileConfig,
    base: PathBuf,
}

/// `path` made absolute with no `.` or `..` left: its longest existing prefix resolved by the
/// kernel (symlinks followed, as `canonicalize` does), the components that do not exist yet
/// appended (none of them can be a symlink).
pub(crate) fn resolved_dir(path: &Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path)?;
    let components: Vec<Component<'_>> = absolute.components().collect();
    for split in (0..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        let Ok(mut resolved) = prefix.canonicalize() else {
            continue;
        };
        for component in &components[split..] {
            match component {
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => resolved.push(name),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return Ok(resolved);
    }
    Ok(absolute)
}

impl Loaded {
    /// Read `--config FILE`, else `./moat.toml` when it exists, else nothing.
    pub fn load(global: &GlobalArgs) -> anyhow::Result<Loaded> {
        let path = match &global.config {
            Some(path) => path.clone(),
            None => {
                let default = PathBuf::from("moat.toml");
                if !default.is_file() {
                    return Ok(Loaded {
                        file: FileConfig::default(),
                        base: PathBuf::from("."),
                    });
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            UserError::new(format!("cannot read config file {}: {e}", path.display()))
                .hint("pass an existing file with --config, or drop the flag to use the defaults")
        })?;
        let file: FileConfig = toml::from_str(&text)
            .map_err(|e| UserError::new(format!("invalid config file {}: {e}", path.display())))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Loaded { file, base })
    }

    fn resolve(&self, path: &Option<PathBuf>) -> Option<PathBuf> {
        path.as_ref().map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                self.base.join(p)
            }
        })
    }

    /// The data directory, absolute: flag, config, `$XDG_DATA_HOME/moat`,
    /// `~/.local/share/moat`. Absolute because paths under it leave this process: the gate
    /// hands `moat run` its session socket there, which is bound into the sandbox by its path.
    pub fn data_dir(&self, global: &GlobalArgs) -> anyhow::Result<PathBuf> {
        Ok(resolved_dir(&self.given_data_dir(global)?)?)
    }

    fn given_data_dir(&self, global: &GlobalArgs) -> anyhow::Result<PathBuf> {
        if let Some(dir) = global
            .data_dir
            .clone()
            .or_else(|| self.resolve(&self.file.data_dir))
        {
            return Ok(dir);
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(xdg).join("moat"));
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(home).join(".local/share/moat"));
        }
        Err(UserError::new("cannot tell where to keep moat's data")
            .hint("pass --data-dir DIR or set MOAT_DATA_DIR")
            .into())
    }

    /// Where the audit log lives: `--audit-store` / `MOAT_AUDIT_STORE`, `[audit] store`, else
    /// `DATA_DIR/audit.db`.
    pub fn audit_store(&self, global: &GlobalArgs, data_dir: &Path) -> AuditStore {
        let repeats = global
            .audit_repeats
            .or(self.file.audit.repeats)
            .map_or(RepeatMode::default(), RepeatMode::from);
        AuditStore::resolve(self.configured_audit_store(global), data_dir, repeats)
    }

    fn configured_audit_store(&self, global: &GlobalArgs) -> Option<StoreLocation> {
        if let Some(store) = &global.audit_store {
            return Some(StoreLocation::parse(store));
        }
        let store = self.file.audit.store.as_deref()?;
        Some(match StoreLocation::parse(store) {
            StoreLocation::Sqlite(path) => {
                StoreLocation::Sqlite(self.resolve(&Some(path)).unwrap_or_default())
            }
            postgres @ StoreLocation::Postgres(_) => postgres,
        })
    }

    pub fn listen(&self, flag: Option<SocketAddr>) -> SocketAddr {
        flag.or(self.file.listen).unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070)))
        })
    }
}

/// Where the audit log lives, resolved: the store and its signing key (beside a SQLite file;
/// in the data directory for PostgreSQL, never in the database).
#[derive(Debug, Clone)]
pub struct AuditStore {
    pub location: StoreLocation,
    pub key_path: PathBuf,
    /// How a writer records repeated answers.
    pub repeats: RepeatMode,
}

impl AuditStore {
    fn resolve(
        configured: Option<StoreLocation>,
        data_dir: &Path,
        repeats: RepeatMode,
    ) -> AuditStore {
        let location =
            configured.unwrap_or_else(|| StoreLocation::Sqlite(data_dir.join("audit.db")));
        AuditStore {
            key_path: location.key_path(data_dir),
            location,
            repeats,
        }
    }

    /// What of this log must never be visible inside a sandbox: the SQLite file (its `-wal` and
    /// `-shm` are beside it) and the signing key, resolved as the host sees them.
    pub fn protected_files(&self) -> Vec<(&'static str, PathBuf)> {
        let resolved = |path: &Path| resolved_dir(path).unwrap_or_else(|_| path.to_path_buf());
        let mut files = Vec::new();
        if let StoreLocation::Sqlite(path) = &self.location {
            files.push(("audit log", resolved(path)));
        }
        files.push(("audit signing key", resolved(&self.key_path)));
        files
    }

    /// Open for writing (the gate, `moat run`, `moat why`).
    pub fn open(&self) -> Result<AuditLog, AuditError> {
        let log = AuditLog::open_location(&self.location, &self.key_path)?;
        log.set_repeat_mode(self.repeats);
        Ok(log)
    }

    /// Open for reading (`moat audit`).
    pub fn open_read_only(&self) -> Result<AuditLog, AuditError> {
        AuditLog::open_location_read_only(&self.location, &self.key_path)
    }

    /// Whether there is a log to read: the SQLite file exists (a database is asked on open).
    pub fn exists(&self) -> bool {
        match &self.location {
            StoreLocation::Sqlite(path) => path.is_file(),
            StoreLocation::Postgres(_) => true,
        }
    }
}

/// Everything a verdict depends on, loaded.
pub struct Sources {
    pub policy: Policy,
    pub policy_origin: String,
    pub advisories: AdvisoryDb,
    pub popular: HashMap<Ecosystem, PopularNames>,
    pub upstream_npm: String,
    pub upstream_pypi: String,
    pub upstream_crates: String,
    pub upstream_timeout: Duration,
}

impl Sources {
    pub fn load(loaded: &Loaded, args: &SourceArgs, data_dir: &Path) -> anyhow::Result<Sources> {
        let (policy, policy_origin) = match args
            .policy
            .clone()
            .or_else(|| loaded.resolve(&loaded.file.policy))
        {
            Some(path) => (load_policy(&path)?, path.display().to_string()),
            None => (Policy::builtin(), "built-in default".to_owned()),
        };
        let advisories = match args
            .advisories
            .clone()
            .or_else(|| loaded.resolve(&loaded.file.advisories))
        {
            Some(path) => import(&path)?.0,
            None => load_index(data_dir)?,
        };
        let popular_dir = args
            .popular
            .clone()
            .or_else(|| loaded.resolve(&loaded.file.popular))
            .unwrap_or_else(|| data_dir.join("popular"));
        let popular = load_popular(&popular_dir)?;
        if popular.is_empty() {
            tracing::warn!(
                "no popular-name lists in {}: typosquat checks are off (pass --popular DIR)",
                popular_dir.display()
            );
        }
        let upstream_npm = args
            .upstream_npm
            .clone()
            .or_else(|| loaded.file.upstream.npm.clone())
            .unwrap_or_else(|| DEFAULT_UPSTREAM_NPM.to_owned());
        let upstream_pypi = args
            .upstream_pypi
            .clone()
            .or_else(|| loaded.file.upstream.pypi.clone())
            .unwrap_or_else(|| DEFAULT_UPSTREAM_PYPI.to_owned());
        let upstream_crates = args
            .upstream_crates
            .clone()
            .or_else(|| loaded.file.upstream.crates.clone())
            .unwrap_or_else(|| DEFAULT_UPSTREAM_CRATES.to_owned());
        let upstream_timeout = Duration::from_secs(
            args.upstream_timeout
                .or(loaded.file.upstream_timeout)
                .unwrap_or(30),
        );
        Ok(Sources {
            policy,
            policy_origin,
            advisories,
            popular,
            upstream_npm,
            upstream_pypi,
            upstream_crates,
            upstream_timeout,
        })
    }
}

/// Read and validate a policy file.
pub fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UserError::new(format!("cannot read policy {}: {e}", path.display()))
            .hint("`moat policy show-default > moat-policy.toml` writes a starting point")
    })?;
    Policy::from_toml(&text).map_err(|e| {
        UserError::new(format!("invalid policy {}: {e}", path.display()))
            .hint(format!(
                "`moat policy check {}` explains every problem",
                path.display()
            ))
            .into()
    })
}

/// Import OSV dumps from a zip file or a directory.
pub fn import(path: &Path) -> anyhow::Result<(AdvisoryDb, moat_advisories::ImportReport)> {
    let result = if path.is_dir() {
        AdvisoryDb::import_dir(path)
    } else {
        AdvisoryDb::import_zip(path)
    };
    result.map_err(|e| {
        UserError::new(e.to_string())
            .hint("pass a directory holding npm.zip (or npm/all.zip), or one OSV all.zip file")
            .into()
    })
}

/// The advisory index directory inside the data directory.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("advisories")
}

/// Load the imported index; refuse to go on with no advisory data at all.
pub fn load_index(data_dir: &Path) -> anyhow::Result<AdvisoryDb> {
    let dir = index_dir(data_dir);
    let db = AdvisoryDb::load_index(&dir).with_context(|| format!("loading {}", dir.display()))?;
    if db.status().is_empty() {
        return Err(UserError::new(format!("no advisory data in {}", dir.display()))
            .hint("run `moat db sync` (downloads OSV dumps), `moat db import DIR`, or pass --advisories DIR")
            .into());
    }
    Ok(db)
}

/// Load every `<ecosystem>.txt` popular-name list found in `dir` (none is not an error).
pub fn load_popular(dir: &Path) -> anyhow::Result<HashMap<Ecosystem, PopularNames>> {
    let mut lists = HashMap::new();
    for ecosystem in Ecosystem::ALL {
        let path = dir.join(format!("{}.txt", ecosystem.as_str()));
        if path.is_file() {
            let names = PopularNames::load(&path, ecosystem)?;
            lists.insert(ecosystem, names);
        }
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dirs_resolve_to_clean_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("data")).unwrap();
        std::os::unix::fs::symlink(real.join("data"), real.join("link")).unwrap();
        // Existing: symlinks followed, `..` applied after them.
        assert_eq!(resolved_dir(&real.join("link")).unwrap(), real.join("data"));
        assert_eq!(
            resolved_dir(&real.join("link/../data/./x/../y")).unwrap(),
            real.join("data/y")
        );
        // Not there yet: the missing part appended, `..` applied to it.
        assert_eq!(
            resolved_dir(&real.join("new/sub/../other")).unwrap(),
            real.join("new/other")
        );
        // Relative: against the working directory.
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(
            resolved_dir(Path::new("moat-data-x")).unwrap(),
            cwd.join("moat-data-x")
        );
    }

    fn global(audit_store: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            config: None,
            data_dir: None,
            audit_store: audit_store.map(str::to_owned),
            audit_repeats: None,
            verbose: 0,
        }
    }

    fn loaded(toml: &str) -> Loaded {
        Loaded {
            file: toml::from_str(toml).expect("config"),
            base: PathBuf::from("/etc/moat"),
        }
    }

    #[test]
    fn the_audit_store_defaults_to_the_data_directory() {
        let store = loaded("").audit_store(&global(None), Path::new("/data"));
        assert_eq!(
            store.location,
            StoreLocation::Sqlite(PathBuf::from("/data/audit.db"))
        );
        assert_eq!(store.key_path, PathBuf::from("/data/audit.key"));
    }

    #[test]
    fn a_postgres_store_keeps_its_key_in_the_data_directory_and_the_flag_wins() {
        let file = loaded("[audit]\nstore = \"postgres://gate@db/audit\"\n");
        let store = file.audit_store(&global(None), Path::new("/data"));
        assert_eq!(store.location.to_string(), "postgres://gate@db/audit");
        assert_eq!(store.key_path, PathBuf::from("/data/audit.key"));

        let flag = global(Some("postgres://other:pw@db/audit"));
        let store = file.audit_store(&flag, Path::new("/data"));
        assert_eq!(store.location.to_string(), "postgres://other:***@db/audit");
    }

    #[test]
    fn a_sqlite_store_in_the_config_file_is_relative_to_it() {
        let store = loaded("[audit]\nstore = \"logs/audit.db\"\n")
            .audit_store(&global(None), Path::new("/data"));
        assert_eq!(
            store.location,
            StoreLocation::Sqlite(PathBuf::from("/etc/moat/logs/audit.db"))
        );
        assert_eq!(store.key_path, PathBuf::from("/etc/moat/logs/audit.key"));
    }

    #[test]
    fn repeated_answers_are_tallied_unless_the_file_or_the_flag_says_record() {
        let default = loaded("").audit_store(&global(None), Path::new("/data"));
        assert_eq!(default.repeats, RepeatMode::Tally);
        let file = loaded("[audit]\nrepeats = \"record\"\n");
        assert_eq!(
            file.audit_store(&global(None), Path::new("/data")).repeats,
            RepeatMode::Record
        );
        let flag = GlobalArgs {
            audit_repeats: Some(crate::cli::AuditRepeats::Tally),
            ..global(None)
        };
        assert_eq!(
            file.audit_store(&flag, Path::new("/data")).repeats,
            RepeatMode::Tally
        );
        assert!(toml::from_str::<FileConfig>("[audit]\nrepeats = \"sometimes\"\n").is_err());
    }
}
