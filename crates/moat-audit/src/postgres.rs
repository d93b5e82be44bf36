//! PostgreSQL: the schema, connections, and the writer's batch under the log's lock.
//!
//! Several gates may write one log. Each batch is one transaction that first takes the log's
//! advisory lock (`pg_advisory_xact_lock`, held until commit), then reads where the log ends
//! now: if another gate appended since, the writer reloads its tree from the stored nodes and
//! checks it against the last signed checkpoint before signing on top of it. Sequence numbers
//! are assigned under the lock, so they stay gapless across gates; every gate must hold the same
//! signing key. Commits are durable (`synchronous_commit = on`).
//!
//! The synchronous client drives its own single-threaded runtime and panics when used or
//! dropped on a thread that runs an asynchronous runtime, so each client lives on a thread of
//! its own: the writer thread, and one reader thread per handle ([`PgReader`]).
//!
//! A writer role needs no UPDATE, DELETE or TRUNCATE; the schema is created by the first open as
//! a role that may create tables (the owner). See [`SCHEMA`] for the grants.

use std::str::FromStr as _;
use std::sync::mpsc;
use std::time::Duration;

use postgres::{Client, Config, IsolationLevel, NoTls, Statement};

use crate::merkle::Frontier;
use crate::note::{Checkpoint, SignerKey, VerifierKey, note_hash};
use crate::store::{Pg, PostgresUrl, Read as _, describe};
use crate::writer::Pending;
use crate::{AuditError, tree};

/// The schema version this crate writes, in `moat_audit_schema`. PostgreSQL stays at version 2,
/// nodes keyed by `(level, idx)`: SQLite's version 3 rekeyed them for its small page cache,
/// and converting a shared PostgreSQL log would need its owner, not the gates' writer role.
const SCHEMA_VERSION: i32 = 2;

/// The advisory lock every writer of a log takes for its batch: one log per database.
const LOG_LOCK: i64 = 0x6d6f_6174_2d61_7564; // "moat-aud"

/// Waited for at most when connecting, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The tables and columns of the SQLite store (as of its version 2: nodes keyed by
/// `(level, idx)`), with `bytea` hashes, a schema version record,
/// and statement triggers that abort any UPDATE, DELETE or TRUNCATE (the owner's included).
///
/// The gates should connect as a writer role that cannot change history in the first place:
///
/// ```sql
/// -- as the owner, once the first open has created the schema
/// CREATE ROLE moat_gate LOGIN PASSWORD '...';
/// GRANT CONNECT ON DATABASE moat_audit TO moat_gate;
/// GRANT USAGE ON SCHEMA public TO moat_gate;
/// GRANT SELECT, INSERT ON events, nodes, checkpoints TO moat_gate;
/// GRANT SELECT ON moat_audit_schema TO moat_gate;
/// -- no UPDATE, DELETE or TRUNCATE: those fail with "permission denied"
/// ```
pub const SCHEMA: &str = "
CREATE TABLE events (
    seq       BIGINT PRIMARY KEY,
    time      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    ecosystem TEXT,
    package   TEXT,
    version   TEXT,
    action    TEXT,
    body      TEXT NOT NULL
);
CREATE TABLE nodes (
    level INTEGER NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL
);
CREATE TABLE moat_audit_schema (
    version INTEGER NOT NULL
);
CREATE FUNCTION moat_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit % are append-only', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION moat_audit_append_only();
CREATE TRIGGER nodes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON nodes
    FOR EACH STATEMENT EXECUTE FUNCTION moat_audit_append_only();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION moat_audit_append_only();
CREATE TRIGGER moat_audit_schema_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON moat_audit_schema FOR EACH STATEMENT EXECUTE FUNCTION moat_audit_append_only();
INSERT INTO moat_audit_schema (version) VALUES (2);
";

const INSERT_EVENTS: &str =
    "INSERT INTO events (seq, time, kind, ecosystem, package, version, action, body)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                          $6::text[], $7::text[], $8::text[])";

const INSERT_NODES: &str = "INSERT INTO nodes (level, idx, hash)
     SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bytea[])";

const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (size, note) VALUES ($1, $2)";

/// Run `work` on a thread without an asynchronous runtime (see the module docs).
pub(crate) fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn config(url: &PostgresUrl) -> Result<Config, AuditError> {
    let mut config = Config::from_str(url.expose()).map_err(|e| {
        AuditError::Store(format!("invalid PostgreSQL URL {url}: {}", describe(&e)))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("moat-audit");
    Ok(config)
}

/// Connect with durable commits.
fn connect(config: &Config, url: &PostgresUrl) -> Result<Client, AuditError> {
    let mut client = config
        .connect(NoTls)
        .map_err(|e| AuditError::Store(format!("cannot connect to {url}: {}", describe(&e))))?;
    client
        .batch_execute("SET synchronous_commit = on")
        .map_err(|e| AuditError::Store(format!("cannot set up {url}: {}", describe(&e))))?;
    Ok(client)
}

fn not_a_store(url: &PostgresUrl, found: &str) -> AuditError {
    AuditError::Store(format!(
        "{url} is not a moat audit store of schema version {SCHEMA_VERSION} ({found})"
    ))
}

/// The stored schema version, `None` when the database has no moat schema.
fn schema_version(client: &mut impl postgres::GenericClient) -> Result<Option<i32>, AuditError> {
    let error = |e: postgres::Error| {
        AuditError::Store(format!("cannot read the schema version: {}", describe(&e)))
    };
    let exists: bool = client
        .query_one("SELECT to_regclass('moat_audit_schema') IS NOT NULL", &[])
        .and_then(|row| row.try_get(0))
        .map_err(error)?;
    if !exists {
        return Ok(None);
    }
    client
        .query_opt("SELECT max(version) FROM moat_audit_schema", &[])
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .map(Option::flatten)
        .map_err(error)
}

/// Connect the writer and create the schema when the database has none (under the log's lock,
/// so gates starting together create it once). Refuses other schema versions.
pub(crate) fn open_writer(url: &PostgresUrl) -> Result<Client, AuditError> {
    let mut client = connect(&config(url)?, url)?;
    let error =
        |e: postgres::Error| AuditError::Store(format!("cannot set up {url}: {}", describe(&e)));
    let mut tx = client.transaction().map_err(error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
        .map_err(error)?;
    match schema_version(&mut tx)? {
        None => {
            let taken: bool = tx
                .query_one("SELECT to_regclass('events') IS NOT NULL", &[])
                .and_then(|row| row.try_get(0))
                .map_err(error)?;
            if taken {
                return Err(not_a_store(url, "it has an events table of another kind"));
            }
            tx.batch_execute(SCHEMA).map_err(error)?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(AuditError::Store(format!(
                "{url} has schema version {other}; this moat supports {SCHEMA_VERSION}"
            )));
        }
    }
    tx.commit().map_err(error)?;
    Ok(client)
}

/// A job for the reader thread.
type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// A reader connection on a thread of its own; jobs run one at a time, in order.
pub(crate) struct PgReader {
    jobs: mpsc::Sender<Job>,
}

impl PgReader {
    /// Connect on a new thread and check the schema version there.
    pub(crate) fn start(url: &PostgresUrl) -> Result<PgReader, AuditError> {
        let config = config(url)?;
        let url = url.clone();
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("moat-audit-reader".to_owned())
            .spawn(move || {
                let opened = connect(&config, &url).and_then(|mut client| {
                    match schema_version(&mut client)? {
                        Some(SCHEMA_VERSION) => Ok(client),
                        Some(other) => Err(not_a_store(&url, &format!("found {other}"))),
                        None => Err(not_a_store(&url, "no moat_audit_schema table")),
                    }
                });
                let mut client = match opened {
                    Ok(client) => client,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                for job in receiver {
                    if client.is_closed() {
                        if let Ok(again) = connect(&config, &url) {
                            client = again;
                        }
                    }
                    job(&mut client);
                }
            })
            .map_err(|e| AuditError::Store(format!("cannot start the audit reader thread: {e}")))?;
        started
            .recv()
            .map_err(|_| AuditError::Store("the audit reader thread died".to_owned()))??;
        Ok(PgReader { jobs })
    }

    /// Run `read` on the reader's connection and wait for its answer.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Client) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let gone = || AuditError::Store("the audit reader thread is gone".to_owned());
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |client| {
                let _ = reply.send(read(client));
            }))
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    /// Run `read` inside one read-only, repeatable-read transaction: one snapshot of the log.
    pub(crate) fn run_snapshot<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Pg<'_, postgres::Transaction<'_>>) -> Result<T, AuditError>
        + Send
        + 'static,
    ) -> Result<T, AuditError> {
        self.run(move |client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(|e| AuditError::Store(format!("cannot start a read: {}", describe(&e))))?;
            read(&mut Pg(&mut tx))
        })
    }
}

/// The writer's connection and its prepared statements.
pub(crate) struct PgWriter {
    url: PostgresUrl,
    config: Config,
    client: Client,
    statements: Option<[Statement; 3]>,
    verifier: VerifierKey,
}

impl PgWriter {
    pub(crate) fn new(
        url: &PostgresUrl,
        client: Client,
        verifier: VerifierKey,
    ) -> Result<PgWriter, AuditError> {
        Ok(PgWriter {
            url: url.clone(),
            config: config(url)?,
            client,
            statements: None,
            verifier,
        })
    }

    /// Write one batch after whatever the log holds now; returns the first seq it got and the
    /// tree after it. `committed` is this writer's tree as of its last commit.
    pub(crate) fn write(
        &mut self,
        committed: &Frontier,
        batch: &[Pending],
        key: &SignerKey,
    ) -> Result<(u64, Frontier), AuditError> {
        if self.client.is_closed() {
            self.client = connect(&self.config, &self.url)?;
            self.statements = None;
        }
        let error = |e: postgres::Error| AuditError::Store(describe(&e));
        let [insert_events, insert_nodes, insert_checkpoint] = match &self.statements {
            Some(statements) => statements.clone(),
            None => {
                let statements = [
                    self.client.prepare(INSERT_EVENTS).map_err(error)?,
                    self.client.prepare(INSERT_NODES).map_err(error)?,
                    self.client.prepare(INSERT_CHECKPOINT).map_err(error)?,
                ];
                self.statements = Some(statements.clone());
                statements
            }
        };
        let mut tx = self.client.transaction().map_err(error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
            .map_err(error)?;
        let size = Pg(&mut tx).last_seq()?;
        let mut frontier = if size == committed.size() {
            committed.clone()
        } else {
            // Another gate appended (or a commit of ours was reported failed but landed):
            // continue from the stored tree, once it matches the last signed checkpoint.
            tree::check_head(&mut Pg(&mut tx), &self.verifier)?
        };
        let first = size + 1;

        let mut seqs = Vec::with_capacity(batch.len());
        let mut levels = Vec::with_capacity(batch.len() * 2);
        let mut indexes = Vec::with_capacity(batch.len() * 2);
        let mut hashes: Vec<&[u8]> = Vec::with_capacity(batch.len() * 2);
        let mut node_hashes = Vec::with_capacity(batch.len() * 2);
        for (offset, (row, _)) in batch.iter().enumerate() {
            seqs.push(to_i64(first + offset as u64)?);
            frontier.push(row.leaf, |level, index, hash| {
                levels.push(i32::try_from(level).unwrap_or(i32::MAX));
                indexes.push(to_i64(index)?);
                node_hashes.push(*hash);
                Ok::<_, AuditError>(())
            })?;
        }
        hashes.extend(node_hashes.iter().map(|hash| hash.0.as_slice()));
        let column = |get: fn(&crate::writer::Row) -> Option<&str>| -> Vec<Option<&str>> {
            batch.iter().map(|(row, _)| get(row)).collect()
        };
        let times = column(|row| Some(row.time.as_str()));
        let kinds = column(|row| Some(row.kind));
        let ecosystems = column(|row| row.ecosystem.as_deref());
        let packages = column(|row| row.package.as_deref());
        let versions = column(|row| row.version.as_deref());
        let actions = column(|row| row.action.as_deref());
        let bodies = column(|row| Some(row.body.as_str()));
        tx.execute(
            &insert_events,
            &[
                &seqs,
                &times,
                &kinds,
                &ecosystems,
                &packages,
                &versions,
                &actions,
                &bodies,
            ],
        )
        .map_err(error)?;
        tx.execute(&insert_nodes, &[&levels, &indexes, &hashes])
            .map_err(error)?;

        let previous = Pg(&mut tx).last_checkpoint()?;
        let checkpoint = Checkpoint {
            origin: key.name().to_owned(),
            size: frontier.size(),
            root: frontier.root(),
            previous: previous.map(|(_, note)| note_hash(&note)),
        };
        let note = key.sign(&checkpoint.to_text());
        tx.execute(&insert_checkpoint, &[&to_i64(checkpoint.size)?, &note])
            .map_err(error)?;
        tx.commit().map_err(error)?;
        Ok((first, frontier))
    }
}

fn to_i64(value: u64) -> Result<i64, AuditError> {
    i64::try_from(value).map_err(|_| AuditError::Store(format!("{value} is too large to store")))
}
