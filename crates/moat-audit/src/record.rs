//! The system of record: query tables derived from the audit log, answering what a security
//! officer asks: which agents ran and who operates them, which packages and versions each one
//! consumed, who installed a package, what was blocked and why, which hosts agents reached.
//!
//! The tables live in their own SQLite file (`record.db` in the data directory), apart from the
//! log: the log is append-only and signed; these tables are a cache of it, updated in place,
//! that [`Record::sync`] brings up to date by folding the events it has not seen yet (in pages,
//! one transaction each, so an interrupted sync loses nothing), and [`Record::rebuild`] recreates
//! from the first event. Nothing is ever written here that the log does not say, so a rebuild
//! equals the live tables. The log is never slowed down for them: they are filled when someone
//! asks (`moat report`, `moat audit rebuild`), not on the gate's write path.
//!
//! The record remembers the last event it folded (its seq and a hash of its stored leaf); when
//! the log no longer holds that event (a new log, a restored backup) the next sync rebuilds from
//! scratch.
//!
//! Derivations, from [`DecisionEvent`]s and sessions:
//! - `sessions`: one row per [`SessionStart`], completed by its [`SessionEnd`].
//! - `agents` (agent, operator) and `operators`: session counts, first and last seen.
//! - `packages`: artifacts (tarball, wheel, `.crate`) the gate let through (`allow` or `warn`)
//!   on the npm, PyPI and crates.io routes, one row per package version and requester. Metadata
//!   requests are not consumption and are not counted.
//! - `blocked`: every refused request, registry or egress, with rules, advisories, the approved
//!   versions offered and the message the client saw; identical refusals tallied as repeats
//!   of one (see [`crate::tally`]) are one row, with the number of requests and the last one's
//!   time.
//! - `egress`: hosts asked for through the gate's proxy, per requester and verdict.
//!
//! A tally event counts as the answers it stands for ([`DecisionEvent::answers`]).
//!
//! A requester is the decision's identity; `session:<id>` ties it to a session, hence to an
//! agent and an operator.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, TransactionBehavior, params};
use sha2::{Digest as _, Sha256};

use crate::{AuditError, AuditLog, DecisionEvent, Event, SessionEnd, SessionStart, StoredEvent};

/// The record's file name, in the data directory.
pub const RECORD_FILE: &str = "record.db";

/// The schema this module writes, in `PRAGMA user_version`. A record of another version is
/// rebuilt, never migrated: it holds nothing the log does not.
const SCHEMA_VERSION: i64 = 2;

/// Events folded per transaction.
const PAGE: usize = 2048;

/// Ecosystems whose artifacts count as packages consumed.
const REGISTRIES: [&str; 3] = ["npm", "PyPI", "crates.io"];

const SCHEMA: &str = "
DROP TABLE IF EXISTS cursor;
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS agents;
DROP TABLE IF EXISTS operators;
DROP TABLE IF EXISTS packages;
DROP TABLE IF EXISTS blocked;
DROP TABLE IF EXISTS egress;
CREATE TABLE cursor (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    seq    INTEGER NOT NULL,
    digest BLOB
);
INSERT INTO cursor (id, seq, digest) VALUES (1, 0, NULL);
CREATE TABLE sessions (
    session    TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    operator   TEXT NOT NULL,
    host       TEXT NOT NULL,
    backend    TEXT NOT NULL,
    workspace  TEXT NOT NULL,
    command    TEXT NOT NULL,
    policy     TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    start_seq  INTEGER NOT NULL,
    ended_us   INTEGER,
    end_seq    INTEGER,
    exit_code  INTEGER,
    signal     INTEGER,
    reason     TEXT
);
CREATE TABLE agents (
    agent      TEXT NOT NULL,
    operator   TEXT NOT NULL,
    sessions   INTEGER NOT NULL,
    first_us   INTEGER NOT NULL,
    last_us    INTEGER NOT NULL,
    PRIMARY KEY (agent, operator)
);
CREATE TABLE operators (
    operator   TEXT PRIMARY KEY,
    sessions   INTEGER NOT NULL,
    first_us   INTEGER NOT NULL,
    last_us    INTEGER NOT NULL
);
CREATE TABLE packages (
    ecosystem  TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    identity   TEXT NOT NULL,
    session    TEXT,
    action     TEXT NOT NULL,
    downloads  INTEGER NOT NULL,
    first_seq  INTEGER NOT NULL,
    first_us   INTEGER NOT NULL,
    last_us    INTEGER NOT NULL,
    PRIMARY KEY (ecosystem, name, version, identity)
);
CREATE INDEX packages_by_name ON packages (name);
CREATE TABLE blocked (
    seq        INTEGER PRIMARY KEY,
    time_us    INTEGER NOT NULL,
    identity   TEXT NOT NULL,
    session    TEXT,
    ecosystem  TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    TEXT,
    request    TEXT NOT NULL,
    rules      TEXT NOT NULL,
    advisories TEXT NOT NULL,
    approved   TEXT NOT NULL,
    message    TEXT,
    requests   INTEGER NOT NULL,
    last_us    INTEGER NOT NULL
);
CREATE TABLE egress (
    host       TEXT NOT NULL,
    identity   TEXT NOT NULL,
    session    TEXT,
    action     TEXT NOT NULL,
    requests   INTEGER NOT NULL,
    first_us   INTEGER NOT NULL,
    last_us    INTEGER NOT NULL,
    PRIMARY KEY (host, identity, action)
);
PRAGMA user_version = 2;
";

/// What a [`Record::sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SyncReport {
    /// Events folded by this sync.
    pub folded: u64,
    /// The log's events now reflected in the record.
    pub through: u64,
    /// Whether the record was recreated from the first event (it was new, of another schema,
    /// or no longer matched the log).
    pub rebuilt: bool,
}

/// Filters for [`Record::report`]; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    /// Only this agent's sessions and what they did.
    pub agent: Option<String>,
    /// Only this operator's sessions and what they did.
    pub operator: Option<String>,
    /// Only this package: `name` or `name@version` (npm scopes included: `@scope/name@1.0.0`).
    pub package: Option<String>,
    /// Only what happened at or after this time (sessions: that were still running then).
    pub since: Option<Timestamp>,
}

/// A session as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionRow {
    pub session: String,
    pub agent: String,
    pub operator: String,
    pub host: String,
    pub backend: String,
    pub workspace: String,
    pub command: Vec<String>,
    pub policy: String,
    pub started: Timestamp,
    /// `None` while no end is recorded: the session runs, or its `moat run` died unrecorded.
    pub ended: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
}

/// An agent and the operator who ran it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentRow {
    pub agent: String,
    pub operator: String,
    pub sessions: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Sessions of this agent and operator with no end recorded.
    pub running: u64,
}

/// A package version a requester downloaded through the gate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageRow {
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    /// Who asked: `session:<id>` or `anonymous@<ip>`.
    pub identity: String,
    pub session: Option<String>,
    pub agent: Option<String>,
    pub operator: Option<String>,
    /// The verdict of the latest download: `allow` or `warn`.
    pub action: String,
    pub downloads: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockedRow {
    /// The decision's sequence number in the log (`moat audit prove <seq - 1>` proves it).
    pub seq: u64,
    pub time: Timestamp,
    pub identity: String,
    pub session: Option<String>,
    pub agent: Option<String>,
    pub operator: Option<String>,
    pub ecosystem: String,
    pub name: String,
    pub version: Option<String>,
    pub request: String,
    pub rules: Vec<String>,
    pub advisories: Vec<String>,
    pub approved: Vec<String>,
    pub message: Option<String>,
    /// How many identical requests were refused, the first at `time`.
    pub requests: u64,
    pub last: Timestamp,
}

/// A host asked for through the egress proxy, per requester and verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EgressRow {
    /// `host:port`.
    pub host: String,
    pub identity: String,
    pub session: Option<String>,
    pub agent: Option<String>,
    pub operator: Option<String>,
    pub action: String,
    pub requests: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

/// The answer to a [`ReportQuery`]: each section oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Report {
    pub agents: Vec<AgentRow>,
    pub sessions: Vec<SessionRow>,
    pub packages: Vec<PackageRow>,
    pub blocked: Vec<BlockedRow>,
    pub egress: Vec<EgressRow>,
}

/// The system-of-record tables in their SQLite file.
#[derive(Debug)]
pub struct Record {
    conn: Connection,
    path: PathBuf,
}

fn store_error(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |e| AuditError::Store(format!("system of record {}: {e}", path.display()))
}

impl Record {
    /// Open (creating if needed) the record at `path`. A record of another schema version is
    /// emptied, to be rebuilt by the next [`sync`](Self::sync).
    pub fn open(path: &Path) -> Result<Record, AuditError> {
        let error = store_error(path);
        let conn = Connection::open(path).map_err(&error)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(&error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&error)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(&error)?;
        let mut record = Record {
            conn,
            path: path.to_owned(),
        };
        if version != SCHEMA_VERSION {
            record.reset()?;
        }
        Ok(record)
    }

    /// Fold the events of `log` the record has not seen yet. Rebuilds from the first event when
    /// the record no longer matches the log.
    pub fn sync(&mut self, log: &AuditLog) -> Result<SyncReport, AuditError> {
        let mut report = SyncReport::default();
        let (seq, digest) = self.cursor()?;
        if seq > 0 && !self.still_matches(log, seq, digest.as_deref())? {
            self.reset()?;
            report.rebuilt = true;
        }
        loop {
            let (after, _) = self.cursor()?;
            let page = log.leaves_after(after, PAGE)?;
            let Some((last, _)) = page.last() else {
                report.through = after;
                return Ok(report);
            };
            let through = last.seq;
            self.fold_page(after, &page)?;
            report.folded += page.len() as u64;
            report.through = through;
        }
    }

    /// Empty the record and fold the whole log again.
    pub fn rebuild(&mut self, log: &AuditLog) -> Result<SyncReport, AuditError> {
        self.reset()?;
        let mut report = self.sync(log)?;
        report.rebuilt = true;
        Ok(report)
    }

    /// The file the record lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drop and recreate the tables, empty, in one transaction (a concurrent reader sees the old
    /// tables or the new ones, never a mix).
    fn reset(&mut self) -> Result<(), AuditError> {
        let error = store_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&error)?;
        tx.execute_batch(SCHEMA).map_err(&error)?;
        tx.commit().map_err(&error)
    }

    fn cursor(&self) -> Result<(u64, Option<Vec<u8>>), AuditError> {
        let (seq, digest): (i64, Option<Vec<u8>>) = self
            .conn
            .query_row("SELECT seq, digest FROM cursor WHERE id = 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(store_error(&self.path))?;
        Ok((u64::try_from(seq).unwrap_or(0), digest))
    }

    /// Whether the log still holds, at `seq`, the event the record last folded.
    fn still_matches(
        &self,
        log: &AuditLog,
        seq: u64,
        digest: Option<&[u8]>,
    ) -> Result<bool, AuditError> {
        let Some((stored, leaf)) = log.leaves_after(seq - 1, 1)?.into_iter().next() else {
            return Ok(false);
        };
        Ok(stored.seq == seq && digest == Some(leaf_digest(&leaf).as_slice()))
    }

    /// Fold one page in one transaction, moving the cursor with it. The cursor is re-read inside
    /// the transaction: if another process folded these events meanwhile, nothing is done twice.
    fn fold_page(&mut self, after: u64, page: &[(StoredEvent, String)]) -> Result<(), AuditError> {
        let error = store_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&error)?;
        let seq: i64 = tx
            .query_row("SELECT seq FROM cursor WHERE id = 1", [], |row| row.get(0))
            .map_err(&error)?;
        if u64::try_from(seq).ok() != Some(after) {
            return Ok(());
        }
        for (stored, _) in page {
            fold(&tx, stored).map_err(&error)?;
        }
        if let Some((last, leaf)) = page.last() {
            let digest = leaf_digest(leaf);
            tx.execute(
                "UPDATE cursor SET seq = ?1, digest = ?2 WHERE id = 1",
                params![to_i64(last.seq), digest],
            )
            .map_err(&error)?;
        }
        tx.commit().map_err(&error)
    }

    /// Answer `query` from the tables as they are (call [`sync`](Self::sync) first).
    pub fn report(&self, query: &ReportQuery) -> Result<Report, AuditError> {
        let error = store_error(&self.path);
        let filter = Filter::new(query);
        Ok(Report {
            agents: self.agents(&filter).map_err(&error)?,
            sessions: self.sessions(&filter).map_err(&error)?,
            packages: self.packages(&filter).map_err(&error)?,
            blocked: self.blocked(&filter).map_err(&error)?,
            egress: self.egress(&filter).map_err(&error)?,
        })
    }

    /// Every table's rows as text, in key order: what "the rebuild equals the live tables" is
    /// checked on.
    pub fn dump(&self) -> Result<Vec<String>, AuditError> {
        let error = store_error(&self.path);
        let tables = [
            ("sessions", "session"),
            ("agents", "agent, operator"),
            ("operators", "operator"),
            ("packages", "ecosystem, name, version, identity"),
            ("blocked", "seq"),
            ("egress", "host, identity, action"),
            ("cursor", "id"),
        ];
        let mut lines = Vec::new();
        for (table, key) in tables {
            let mut statement = self
                .conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))
                .map_err(&error)?;
            let columns = statement.column_count();
            let mut rows = statement.query([]).map_err(&error)?;
            while let Some(row) = rows.next().map_err(&error)? {
                let mut line = format!("{table}:");
                for i in 0..columns {
                    let value: rusqlite::types::Value = row.get(i).map_err(&error)?;
                    line.push_str(&format!(" {value:?}"));
                }
                lines.push(line);
            }
        }
        Ok(lines)
    }
}

/// A hash of an event's stored leaf, to recognise it again.
fn leaf_digest(leaf: &str) -> Vec<u8> {
    Sha256::digest(leaf.as_bytes()).to_vec()
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn micros(time: Timestamp) -> i64 {
    time.as_microsecond()
}

/// The session a decision was made in, from its identity.
fn session_of(identity: &str) -> Option<&str> {
    identity.strip_prefix("session:")
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

/// Apply one event to the tables.
fn fold(tx: &rusqlite::Transaction<'_>, stored: &StoredEvent) -> rusqlite::Result<()> {
    match &stored.event {
        Event::SessionStart(start) => fold_start(tx, stored.seq, start),
        Event::SessionEnd(end) => fold_end(tx, stored.seq, end),
        Event::Decision(decision) => fold_decision(tx, stored.seq, decision),
    }
}

fn fold_start(
    tx: &rusqlite::Transaction<'_>,
    seq: u64,
    start: &SessionStart,
) -> rusqlite::Result<()> {
    let time = micros(start.time);
    let command = json_list(&start.command);
    tx.prepare_cached(
        "INSERT OR IGNORE INTO sessions (session, agent, operator, host, backend, workspace,
             command, policy, started_us, start_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        start.session,
        start.agent,
        start.operator,
        start.host,
        start.backend,
        start.workspace,
        command,
        start.policy,
        time,
        to_i64(seq),
    ])?;
    tx.prepare_cached(
        "INSERT INTO agents (agent, operator, sessions, first_us, last_us) VALUES (?1, ?2, 1, ?3, ?3)
         ON CONFLICT (agent, operator) DO UPDATE SET sessions = sessions + 1,
             first_us = MIN(first_us, excluded.first_us), last_us = MAX(last_us, excluded.last_us)",
    )?
    .execute(params![start.agent, start.operator, time])?;
    tx.prepare_cached(
        "INSERT INTO operators (operator, sessions, first_us, last_us) VALUES (?1, 1, ?2, ?2)
         ON CONFLICT (operator) DO UPDATE SET sessions = sessions + 1,
             first_us = MIN(first_us, excluded.first_us), last_us = MAX(last_us, excluded.last_us)",
    )?
    .execute(params![start.operator, time])?;
    Ok(())
}

fn fold_end(tx: &rusqlite::Transaction<'_>, seq: u64, end: &SessionEnd) -> rusqlite::Result<()> {
    let time = micros(end.time);
    tx.prepare_cached(
        "UPDATE sessions SET ended_us = ?2, end_seq = ?3, exit_code = ?4, signal = ?5, reason = ?6
         WHERE session = ?1 AND end_seq IS NULL",
    )?
    .execute(params![
        end.session,
        time,
        to_i64(seq),
        end.exit_code,
        end.signal,
        end.reason,
    ])?;
    // The agent was last seen when its session ended.
    tx.prepare_cached(
        "UPDATE agents SET last_us = MAX(last_us, ?2)
         WHERE (agent, operator) = (SELECT agent, operator FROM sessions WHERE session = ?1)",
    )?
    .execute(params![end.session, time])?;
    tx.prepare_cached(
        "UPDATE operators SET last_us = MAX(last_us, ?2)
         WHERE operator = (SELECT operator FROM sessions WHERE session = ?1)",
    )?
    .execute(params![end.session, time])?;
    Ok(())
}

fn fold_decision(
    tx: &rusqlite::Transaction<'_>,
    seq: u64,
    decision: &DecisionEvent,
) -> rusqlite::Result<()> {
    let time = micros(decision.time);
    let last = micros(decision.last_time());
    let answers = to_i64(decision.answers());
    let session = session_of(&decision.identity);
    if decision.action == "block" {
        // A tally adds to the row of the refusal it repeats.
        let repeated = match &decision.repeats {
            Some(repeats) => tx
                .prepare_cached(
                    "UPDATE blocked SET requests = requests + ?2, last_us = MAX(last_us, ?3)
                     WHERE seq = ?1",
                )?
                .execute(params![to_i64(repeats.of), answers, last])?,
            None => 0,
        };
        if repeated == 0 {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO blocked (seq, time_us, identity, session, ecosystem,
                     name, version, request, rules, advisories, approved, message, requests,
                     last_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                to_i64(seq),
                time,
                decision.identity,
                session,
                decision.ecosystem,
                decision.package,
                decision.version,
                decision.request,
                json_list(&decision.rules),
                json_list(&decision.advisories),
                json_list(&decision.approved),
                decision.message,
                answers,
                last,
            ])?;
        }
    }
    if decision.ecosystem == "egress" {
        tx.prepare_cached(
            "INSERT INTO egress (host, identity, session, action, requests, first_us, last_us)
             VALUES (?1, ?2, ?3, ?4, ?6, ?5, ?7)
             ON CONFLICT (host, identity, action) DO UPDATE SET
                 requests = requests + excluded.requests,
                 first_us = MIN(first_us, excluded.first_us),
                 last_us = MAX(last_us, excluded.last_us)",
        )?
        .execute(params![
            decision.package,
            decision.identity,
            session,
            decision.action,
            time,
            answers,
            last,
        ])?;
        return Ok(());
    }
    let consumed = decision.request == "artifact"
        && decision.action != "block"
        && REGISTRIES.contains(&decision.ecosystem.as_str());
    let Some(version) = decision.version.as_deref().filter(|_| consumed) else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO packages (ecosystem, name, version, identity, session, action, downloads,
             first_seq, first_us, last_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?9, ?7, ?8, ?10)
         ON CONFLICT (ecosystem, name, version, identity) DO UPDATE SET
             downloads = downloads + excluded.downloads, action = excluded.action,
             last_us = MAX(last_us, excluded.last_us)",
    )?
    .execute(params![
        decision.ecosystem,
        decision.package,
        version,
        decision.identity,
        session,
        decision.action,
        to_i64(seq),
        time,
        answers,
        last,
    ])?;
    Ok(())
}

/// A [`ReportQuery`] as SQL conditions over a table joined with `sessions` as `s`.
struct Filter {
    agent: Option<String>,
    operator: Option<String>,
    name: Option<String>,
    version: Option<String>,
    since: Option<i64>,
}

impl Filter {
    fn new(query: &ReportQuery) -> Filter {
        let (name, version) = match query.package.as_deref() {
            // `@scope/name@1.0.0`: the version is after the last `@` that is not the first char.
            Some(package) => match package.rfind('@').filter(|&at| at > 0) {
                Some(at) => (
                    Some(package[..at].to_owned()),
                    Some(package[at + 1..].to_owned()),
                ),
                None => (Some(package.to_owned()), None),
            },
            None => (None, None),
        };
        Filter {
            agent: query.agent.clone(),
            operator: query.operator.clone(),
            name,
            version,
            since: query.since.map(micros),
        }
    }

    /// ` AND …` conditions on the session's agent and operator, and their parameters.
    fn who(&self, sql: &mut String, params: &mut Vec<rusqlite::types::Value>) {
        if let Some(agent) = &self.agent {
            sql.push_str(" AND s.agent = ?");
            params.push(agent.clone().into());
        }
        if let Some(operator) = &self.operator {
            sql.push_str(" AND s.operator = ?");
            params.push(operator.clone().into());
        }
    }

    fn package(&self, sql: &mut String, params: &mut Vec<rusqlite::types::Value>, table: &str) {
        if let Some(name) = &self.name {
            sql.push_str(&format!(" AND {table}.name = ?"));
            params.push(name.clone().into());
        }
        if let Some(version) = &self.version {
            sql.push_str(&format!(" AND {table}.version = ?"));
            params.push(version.clone().into());
        }
    }

    fn since(&self, sql: &mut String, params: &mut Vec<rusqlite::types::Value>, column: &str) {
        if let Some(since) = self.since {
            sql.push_str(&format!(" AND {column} >= ?"));
            params.push(since.into());
        }
    }
}

fn timestamp(us: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

impl Record {
    fn query<T>(
        &self,
        sql: &str,
        params: &[rusqlite::types::Value],
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        let mut statement = self.conn.prepare(sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(params), map)?;
        rows.collect()
    }

    fn agents(&self, filter: &Filter) -> rusqlite::Result<Vec<AgentRow>> {
        // With a package filter, only the agents that consumed or were refused that package.
        let mut sql = String::from(
            "SELECT s.agent, s.operator, s.sessions, s.first_us, s.last_us,
                 (SELECT COUNT(*) FROM sessions r
                  WHERE r.agent = s.agent AND r.operator = s.operator AND r.end_seq IS NULL)
             FROM agents s WHERE 1 = 1",
        );
        let mut params = Vec::new();
        filter.who(&mut sql, &mut params);
        filter.since(&mut sql, &mut params, "s.last_us");
        if filter.name.is_some() {
            let mut inner = String::from(
                " AND EXISTS (SELECT 1 FROM sessions x JOIN (
                     SELECT session, name, version FROM packages
                     UNION ALL SELECT session, name, version FROM blocked) p
                   ON p.session = x.session
                   WHERE x.agent = s.agent AND x.operator = s.operator",
            );
            filter.package(&mut inner, &mut params, "p");
            inner.push(')');
            sql.push_str(&inner);
        }
        sql.push_str(" ORDER BY s.first_us, s.agent, s.operator");
        self.query(&sql, &params, |row| {
            Ok(AgentRow {
                agent: row.get(0)?,
                operator: row.get(1)?,
                sessions: count(row.get(2)?),
                first_seen: timestamp(row.get(3)?)?,
                last_seen: timestamp(row.get(4)?)?,
                running: count(row.get(5)?),
            })
        })
    }

    fn sessions(&self, filter: &Filter) -> rusqlite::Result<Vec<SessionRow>> {
        let mut sql = String::from(
            "SELECT s.session, s.agent, s.operator, s.host, s.backend, s.workspace, s.command,
                 s.policy, s.started_us, s.ended_us, s.exit_code, s.signal, s.reason
             FROM sessions s WHERE 1 = 1",
        );
        let mut params = Vec::new();
        filter.who(&mut sql, &mut params);
        filter.since(
            &mut sql,
            &mut params,
            "COALESCE(s.ended_us, 9223372036854775807)",
        );
        if filter.name.is_some() {
            let mut inner = String::from(
                " AND EXISTS (SELECT 1 FROM (
                     SELECT session, name, version FROM packages
                     UNION ALL SELECT session, name, version FROM blocked) p
                   WHERE p.session = s.session",
            );
            filter.package(&mut inner, &mut params, "p");
            inner.push(')');
            sql.push_str(&inner);
        }
        sql.push_str(" ORDER BY s.started_us, s.session");
        self.query(&sql, &params, |row| {
            Ok(SessionRow {
                session: row.get(0)?,
                agent: row.get(1)?,
                operator: row.get(2)?,
                host: row.get(3)?,
                backend: row.get(4)?,
                workspace: row.get(5)?,
                command: list(&row.get::<_, String>(6)?),
                policy: row.get(7)?,
                started: timestamp(row.get(8)?)?,
                ended: row.get::<_, Option<i64>>(9)?.map(timestamp).transpose()?,
                exit_code: row.get(10)?,
                signal: row.get(11)?,
                reason: row.get(12)?,
            })
        })
    }

    /// Rows of `table` joined with their session (none for anonymous requesters, who are left
    /// out as soon as an agent or operator is asked for).
    fn joined(
        &self,
        columns: &str,
        table: &str,
        filter: &Filter,
        time: &str,
    ) -> (String, Vec<rusqlite::types::Value>) {
        let mut sql = format!(
            "SELECT {columns}, s.agent, s.operator FROM {table} t
             LEFT JOIN sessions s ON s.session = t.session WHERE 1 = 1"
        );
        let mut params = Vec::new();
        filter.who(&mut sql, &mut params);
        filter.since(&mut sql, &mut params, time);
        (sql, params)
    }

    fn packages(&self, filter: &Filter) -> rusqlite::Result<Vec<PackageRow>> {
        let (mut sql, mut params) = self.joined(
            "t.ecosystem, t.name, t.version, t.identity, t.session, t.action, t.downloads,
             t.first_us, t.last_us",
            "packages",
            filter,
            "t.last_us",
        );
        filter.package(&mut sql, &mut params, "t");
        sql.push_str(" ORDER BY t.first_seq, t.identity");
        self.query(&sql, &params, |row| {
            Ok(PackageRow {
                ecosystem: row.get(0)?,
                name: row.get(1)?,
                version: row.get(2)?,
                identity: row.get(3)?,
                session: row.get(4)?,
                action: row.get(5)?,
                downloads: count(row.get(6)?),
                first: timestamp(row.get(7)?)?,
                last: timestamp(row.get(8)?)?,
                agent: row.get(9)?,
                operator: row.get(10)?,
            })
        })
    }

    fn blocked(&self, filter: &Filter) -> rusqlite::Result<Vec<BlockedRow>> {
        let (mut sql, mut params) = self.joined(
            "t.seq, t.time_us, t.identity, t.session, t.ecosystem, t.name, t.version, t.request,
             t.rules, t.advisories, t.approved, t.message, t.requests, t.last_us",
            "blocked",
            filter,
            "t.last_us",
        );
        filter.package(&mut sql, &mut params, "t");
        sql.push_str(" ORDER BY t.seq");
        self.query(&sql, &params, |row| {
            Ok(BlockedRow {
                seq: count(row.get(0)?),
                time: timestamp(row.get(1)?)?,
                identity: row.get(2)?,
                session: row.get(3)?,
                ecosystem: row.get(4)?,
                name: row.get(5)?,
                version: row.get(6)?,
                request: row.get(7)?,
                rules: list(&row.get::<_, String>(8)?),
                advisories: list(&row.get::<_, String>(9)?),
                approved: list(&row.get::<_, String>(10)?),
                message: row.get(11)?,
                requests: count(row.get(12)?),
                last: timestamp(row.get(13)?)?,
                agent: row.get(14)?,
                operator: row.get(15)?,
            })
        })
    }

    fn egress(&self, filter: &Filter) -> rusqlite::Result<Vec<EgressRow>> {
        if filter.name.is_some() {
            // A package question says nothing about hosts.
            return Ok(Vec::new());
        }
        let (mut sql, params) = self.joined(
            "t.host, t.identity, t.session, t.action, t.requests, t.first_us, t.last_us",
            "egress",
            filter,
            "t.last_us",
        );
        sql.push_str(" ORDER BY t.first_us, t.host, t.identity, t.action");
        self.query(&sql, &params, |row| {
            Ok(EgressRow {
                host: row.get(0)?,
                identity: row.get(1)?,
                session: row.get(2)?,
                action: row.get(3)?,
                requests: count(row.get(4)?),
                first: timestamp(row.get(5)?)?,
                last: timestamp(row.get(6)?)?,
                agent: row.get(7)?,
                operator: row.get(8)?,
            })
        })
    }
}

/// The record beside a data directory's audit log.
pub fn record_path(data_dir: &Path) -> PathBuf {
    data_dir.join(RECORD_FILE)
}
