//! The suite runs against both backends: [`on_both_backends!`] turns one test into
//! `name::sqlite` and `name::postgres`, each on a fresh [`TestStore`]. A PostgreSQL store is a
//! database of its own on the server `MOAT_TEST_POSTGRES` names (created and dropped by the
//! test, so tests run in parallel); without that variable the PostgreSQL tests print why they
//! skip and pass, unless `MOAT_REQUIRE_POSTGRES=1`.
//!
//! The synchronous PostgreSQL client panics on a thread that runs an asynchronous runtime, so
//! the raw connections here run on threads of their own.

#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use moat_audit::{AuditError, AuditLog, PostgresUrl, StoreLocation};

/// Write a test once, run it on SQLite and on PostgreSQL: `name::sqlite`, `name::postgres`.
macro_rules! on_both_backends {
    ($(#[$attr:meta])* async fn $name:ident($store:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            async fn sqlite() {
                let $store = $crate::backend::TestStore::sqlite();
                $body
            }

            $(#[$attr])*
            async fn postgres() {
                let Some($store) = $crate::backend::TestStore::postgres() else {
                    return;
                };
                $body
            }
        }
    };
    ($(#[$attr:meta])* fn $name:ident($store:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            fn sqlite() {
                let $store = $crate::backend::TestStore::sqlite();
                $body
            }

            $(#[$attr])*
            fn postgres() {
                let Some($store) = $crate::backend::TestStore::postgres() else {
                    return;
                };
                $body
            }
        }
    };
}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty log location with a temporary directory for its key (and SQLite file).
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub location: StoreLocation,
    pub key_path: PathBuf,
    database: Option<Database>,
}

/// A database created for one test, dropped with it.
pub struct Database {
    /// The server URL from `MOAT_TEST_POSTGRES`, for administration.
    pub admin: String,
    pub name: String,
    /// The URL of this database.
    pub url: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = run_sql(&self.admin, &sql);
    }
}

impl TestStore {
    pub fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("audit.db");
        TestStore {
            key_path: moat_audit::key_path(&path),
            location: StoreLocation::Sqlite(path),
            dir,
            database: None,
        }
    }

    /// A store in a new database, or `None` (with the reason printed) when no server is set.
    pub fn postgres() -> Option<TestStore> {
        let database = database()?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = PostgresUrl::parse(&database.url).expect("a postgres:// URL");
        Some(TestStore {
            key_path: dir.path().join(moat_audit::KEY_FILE),
            location: StoreLocation::Postgres(url),
            dir,
            database: Some(database),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.location {
            StoreLocation::Sqlite(_) => Backend::Sqlite,
            StoreLocation::Postgres(_) => Backend::Postgres,
        }
    }

    pub fn try_open(&self) -> Result<AuditLog, AuditError> {
        AuditLog::open_location(&self.location, &self.key_path)
    }

    /// Open for writing (creating the store).
    pub fn open(&self) -> AuditLog {
        self.try_open().expect("open the store")
    }

    pub fn try_read_only(&self) -> Result<AuditLog, AuditError> {
        AuditLog::open_location_read_only(&self.location, &self.key_path)
    }

    pub fn read_only(&self) -> AuditLog {
        self.try_read_only().expect("open the store read-only")
    }

    /// This PostgreSQL store's database.
    pub fn database(&self) -> &Database {
        self.database.as_ref().expect("a PostgreSQL store")
    }

    /// Run `sql` as the owner (SQLite: on the file), append-only triggers in force.
    pub fn sql(&self, sql: &str) -> Result<(), String> {
        match &self.location {
            StoreLocation::Sqlite(path) => rusqlite::Connection::open(path)
                .and_then(|conn| conn.execute_batch(sql))
                .map_err(|e| e.to_string()),
            StoreLocation::Postgres(_) => run_sql(&self.database().url, sql),
        }
    }

    /// Run `sql` the way an attacker with the database would: around the append-only
    /// triggers (SQLite: dropped; PostgreSQL: disabled for the session, as a superuser can).
    pub fn attack(&self, sql: &str) {
        let sql = match self.backend() {
            Backend::Sqlite => {
                let mut drop = String::new();
                for table in ["events", "nodes", "checkpoints"] {
                    drop.push_str(&format!(
                        "DROP TRIGGER IF EXISTS {table}_no_update; \
                         DROP TRIGGER IF EXISTS {table}_no_delete; "
                    ));
                }
                format!("{drop}{sql}")
            }
            Backend::Postgres => format!("SET session_replication_role = replica; {sql}"),
        };
        self.sql(&sql).expect("tampering statement");
    }

    /// Make inserts of events fail with "injected failure" (only of package `package`, if given).
    pub fn fail_inserts(&self, package: Option<&str>) {
        let sql = match (self.backend(), package) {
            (Backend::Sqlite, None) => "CREATE TRIGGER fail_inserts BEFORE INSERT ON events
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
                .to_owned(),
            (Backend::Sqlite, Some(package)) => format!(
                "CREATE TRIGGER fail_inserts BEFORE INSERT ON events
                 WHEN NEW.package = '{package}'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            ),
            (Backend::Postgres, package) => {
                let when = package
                    .map(|package| format!("WHEN (NEW.package = '{package}')"))
                    .unwrap_or_default();
                format!(
                    "CREATE FUNCTION fail_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'injected failure'; END $$;
                     CREATE TRIGGER fail_inserts BEFORE INSERT ON events FOR EACH ROW {when}
                     EXECUTE FUNCTION fail_inserts();"
                )
            }
        };
        self.sql(&sql).expect("inject a failure");
    }

    /// Undo [`fail_inserts`](Self::fail_inserts).
    pub fn allow_inserts(&self) {
        let sql = match self.backend() {
            Backend::Sqlite => "DROP TRIGGER fail_inserts",
            Backend::Postgres => "DROP TRIGGER fail_inserts ON events",
        };
        self.sql(sql).expect("remove the injected failure");
    }
}

/// Whether PostgreSQL tests must run (`MOAT_REQUIRE_POSTGRES=1`).
fn required() -> bool {
    std::env::var("MOAT_REQUIRE_POSTGRES").is_ok_and(|value| value == "1")
}

/// The server from `MOAT_TEST_POSTGRES`, or `None` after printing why the test skips.
pub fn server() -> Option<String> {
    match std::env::var("MOAT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !required(),
                "MOAT_REQUIRE_POSTGRES=1 but MOAT_TEST_POSTGRES is not set"
            );
            eprintln!(
                "skipped: set MOAT_TEST_POSTGRES=postgres://USER@HOST:PORT/DB (a role that may \
                 create databases and roles) to run the PostgreSQL tests"
            );
            None
        }
    }
}

/// A new, empty database on the test server.
pub fn database() -> Option<Database> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin = server()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let name = format!(
        "moat_audit_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    if let Err(error) = run_sql(&admin, &format!("CREATE DATABASE {name}")) {
        assert!(
            !required(),
            "MOAT_REQUIRE_POSTGRES=1 but the test server cannot create a database: {error}"
        );
        eprintln!("skipped: the PostgreSQL test server cannot create a database: {error}");
        return None;
    }
    let url = moat_test_support::postgres::with_database(&admin, &name);
    Some(Database { admin, name, url })
}

/// `url` with its user (and password) replaced.
pub fn with_user(url: &str, user: &str, password: &str) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority..];
    let host = match rest
        .find('/')
        .map(|end| &rest[..end])
        .unwrap_or(rest)
        .rfind('@')
    {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{}{user}:{password}@{host}", &url[..authority])
}

/// Run `sql` (several statements allowed) on a connection of its own, off any runtime.
pub fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    let url = url.to_owned();
    let sql = sql.to_owned();
    on_own_thread(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(describe)?;
        client.batch_execute(&sql).map_err(describe)
    })
}

pub fn on_own_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(work).join().expect("thread")
}

fn describe(e: postgres::Error) -> String {
    match std::error::Error::source(&e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
