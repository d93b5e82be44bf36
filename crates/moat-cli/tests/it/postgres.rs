//! The gate on a PostgreSQL audit log (`--audit-store postgres://…`): a decision is recorded in
//! the database, not in DATA_DIR/audit.db, and `moat audit verify` checks it there. Needs the
//! server `MOAT_TEST_POSTGRES` names (and `psql` to create the test's database); skips without
//! it unless `MOAT_REQUIRE_POSTGRES=1`.

use std::process::Command;

use moat_test_support::raw_http;

use crate::{Env, POLICY};

fn required() -> bool {
    std::env::var("MOAT_REQUIRE_POSTGRES").is_ok_and(|value| value == "1")
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args([url, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A database of its own on the test server, dropped with it.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create() -> Option<Database> {
        let Some(admin) = std::env::var("MOAT_TEST_POSTGRES")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            assert!(
                !required(),
                "MOAT_REQUIRE_POSTGRES=1 but MOAT_TEST_POSTGRES is not set"
            );
            eprintln!("skipped: set MOAT_TEST_POSTGRES=postgres://USER@HOST:PORT/DB to run");
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let name = format!("moat_cli_test_{}_{nanos}", std::process::id());
        if let Err(error) = psql(&admin, &format!("CREATE DATABASE {name}")) {
            assert!(
                !required(),
                "MOAT_REQUIRE_POSTGRES=1 but no database could be created: {error}"
            );
            eprintln!("skipped: no database could be created on the test server: {error}");
            return None;
        }
        let url = moat_test_support::postgres::with_database(&admin, &name);
        Some(Database { admin, name, url })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[test]
fn the_gate_records_in_postgres_and_audit_verify_checks_it_there() {
    let Some(database) = Database::create() else {
        return;
    };
    let store = database.url.as_str();
    let mut env = Env::start_with(POLICY, &["--audit-store", store]);

    let why = raw_http::get(env.gate.url(), "/-/why/npm/minimist/1.2.5?format=json");
    assert_eq!(why.status, 200, "{}", why.text());
    let metadata = raw_http::get(env.gate.url(), "/npm/lodash");
    assert_eq!(metadata.status, 200, "{}", metadata.text());
    let refused = raw_http::get(env.gate.url(), "/npm/minimist/-/minimist-1.2.5.tgz");
    assert_eq!(refused.status, 403, "{}", refused.text());
    let tarball = raw_http::get(env.gate.url(), "/npm/minimist/-/minimist-1.2.8.tgz");
    assert_eq!(tarball.status, 200, "{}", tarball.text());

    let data = env.gate.data_dir();
    assert!(
        !data.join("audit.db").exists(),
        "the log is in PostgreSQL, not in the data directory"
    );
    assert!(
        data.join("audit.key").is_file(),
        "the key stays in the data directory"
    );

    let listed = env
        .gate
        .run(&["audit", "list", "--json", "--audit-store", store]);
    listed.assert_success();
    let events = listed.json();
    let packages: Vec<&str> = events
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|stored| stored["event"]["package"].as_str())
        .collect();
    assert_eq!(
        packages,
        ["minimist", "lodash", "minimist", "minimist"],
        "{listed}"
    );

    let verified = env.gate.run(&["audit", "verify", "--audit-store", store]);
    verified.assert_success();
    assert!(verified.stdout.starts_with("ok: 4 events"), "{verified}");

    // The system of record is derived from the PostgreSQL log like from a SQLite one.
    let report = env.gate.run(&["report", "--json", "--audit-store", store]);
    report.assert_success();
    let report = report.json();
    assert_eq!(report["blocked"][0]["version"], "1.2.5", "{report:#}");
    assert_eq!(report["packages"][0]["version"], "1.2.8", "{report:#}");
    let exported = env.gate.run(&["audit", "export", "--audit-store", store]);
    exported.assert_success();
    let kinds: Vec<String> = exported
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("json")["type"].to_string()
        })
        .collect();
    assert_eq!(kinds.iter().filter(|kind| *kind == "\"event\"").count(), 4);
    assert_eq!(kinds.last().map(String::as_str), Some("\"checkpoint\""));

    // A restarted gate continues the same log.
    env.restart_with(POLICY, &["--audit-store", store]);
    let again = raw_http::get(env.gate.url(), "/npm/lodash");
    assert_eq!(again.status, 200, "{}", again.text());
    let verified = env
        .gate
        .run(&["audit", "verify", "--json", "--audit-store", store]);
    verified.assert_success();
    assert_eq!(verified.json()["size"], 5, "{verified}");
    env.gate.stop();
}
