//! The storage seam: where a log lives ([`StoreLocation`]) and the reads every backend answers
//! ([`Read`]), implemented for SQLite ([`Lite`]) and PostgreSQL ([`Pg`]). The readers above it
//! (listing, proofs, `verify`, the head check) and the writer's recovery are written once
//! against [`Read`]; only the SQL differs.

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension as _, ToSql, params};

use crate::schema::NodeKey;
use crate::{AuditError, ListQuery};

/// Where an audit log is stored.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file; the signing key is `audit.key` beside it.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by every gate that writes the log.
    Postgres(PostgresUrl),
}

impl StoreLocation {
    /// `postgres://…` or `postgresql://…` is a PostgreSQL database, anything else a SQLite file.
    pub fn parse(text: &str) -> StoreLocation {
        if PostgresUrl::is_postgres(text) {
            StoreLocation::Postgres(PostgresUrl(text.to_owned()))
        } else {
            StoreLocation::Sqlite(PathBuf::from(text))
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreLocation::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

impl StoreLocation {
    /// Where this log's signing key lives: beside a SQLite file, in `data_dir` for PostgreSQL
    /// (never in the database).
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        match self {
            StoreLocation::Sqlite(path) => sqlite_key_path(path),
            StoreLocation::Postgres(_) => data_dir.join(crate::KEY_FILE),
        }
    }
}

/// A `postgres://` connection URL. It may carry a password, so `Debug` and `Display` print it
/// with the password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Take `url` if it is a `postgres://` or `postgresql://` URL.
    pub fn parse(url: &str) -> Option<PostgresUrl> {
        PostgresUrl::is_postgres(url).then(|| PostgresUrl(url.to_owned()))
    }

    fn is_postgres(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The URL with its password, for connecting.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return url.clone();
        };
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((name, _)) if name == "password" => format!("{name}=***"),
                        Some(_) | None => pair.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_owned(),
        };
        format!("{}{authority}{tail}", &url[..scheme_end])
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// A SQLite signing key path: `audit.key` beside the store.
pub(crate) fn sqlite_key_path(path: &Path) -> PathBuf {
    path.with_file_name(crate::KEY_FILE)
}

/// Reads of the stored log. Sequence numbers and sizes are the stored `i64`s; the callers turn
/// them into `u64` and report negative ones.
pub(crate) trait Read {
    /// The highest sequence number stored, 0 for an empty log.
    fn last_seq(&mut self) -> Result<u64, AuditError>;
    /// The stored hash of complete subtree `(level, index)`, as stored.
    fn node(&mut self, level: u32, index: i64) -> Result<Option<Vec<u8>>, AuditError>;
    /// The stored hashes of the subtrees `(level, index)`, in the order asked.
    fn nodes(&mut self, wanted: &[(u32, i64)]) -> Result<Vec<Option<Vec<u8>>>, AuditError> {
        wanted
            .iter()
            .map(|&(level, index)| self.node(level, index))
            .collect()
    }
    /// The newest checkpoint: `(size, note)`.
    fn last_checkpoint(&mut self) -> Result<Option<(i64, String)>, AuditError>;
    /// Up to `limit` checkpoint notes of a size above `after`, smallest first.
    fn checkpoints_after(&mut self, after: i64, limit: i64) -> Result<Vec<String>, AuditError>;
    /// The stored body of event `seq`.
    fn event(&mut self, seq: i64) -> Result<Option<String>, AuditError>;
    /// Up to `limit` `(seq, body)` with a seq above `after`, oldest first.
    fn events_after(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, String)>, AuditError>;
    /// `(seq, body)` matching `query`, newest first.
    fn list(&mut self, query: &ListQuery) -> Result<Vec<(i64, String)>, AuditError>;
    /// `(seq, body)` of the events of `kind` whose body contains `text`, oldest first: a scan
    /// (there is no index), for rare lookups.
    fn containing(&mut self, kind: &str, text: &str) -> Result<Vec<(i64, String)>, AuditError>;
    /// Every event, in seq order, as `(seq, body bytes)`.
    fn each_event(&mut self, each: &mut dyn FnMut(i64, &[u8])) -> Result<(), AuditError>;
    /// Every node as `(level, index, hash)`, in an order where each level's indexes ascend and a
    /// leaf comes before every node above it (level then index, or last leaf then level).
    fn each_node(&mut self, each: &mut dyn FnMut(i64, i64, &[u8])) -> Result<(), AuditError>;
    /// Every checkpoint `(size, note)`, smallest first.
    fn checkpoints(&mut self) -> Result<Vec<(i64, String)>, AuditError>;
}

fn error<E: fmt::Display>(what: &'static str) -> impl Fn(E) -> AuditError {
    move |e| AuditError::Store(format!("{what}: {e}"))
}

const LIST_COLUMNS: [&str; 3] = ["ecosystem", "package", "action"];

fn list_filters(query: &ListQuery) -> [(&'static str, &Option<String>); 3] {
    [
        (LIST_COLUMNS[0], &query.ecosystem),
        (LIST_COLUMNS[1], &query.package),
        (LIST_COLUMNS[2], &query.action),
    ]
}

fn limit(limit: Option<usize>) -> Option<i64> {
    limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX))
}

/// Reads through a SQLite connection (or a transaction on one) to a store whose nodes are keyed
/// as the [`NodeKey`] says.
pub(crate) struct Lite<'a>(pub(crate) &'a rusqlite::Connection, pub(crate) NodeKey);

impl Read for Lite<'_> {
    fn last_seq(&mut self) -> Result<u64, AuditError> {
        crate::schema::last_seq(self.0).map_err(error("cannot count events"))
    }

    fn node(&mut self, level: u32, index: i64) -> Result<Option<Vec<u8>>, AuditError> {
        let sql = match self.1 {
            NodeKey::LevelIndex => "SELECT hash FROM nodes WHERE level = ?1 AND idx = ?2",
            NodeKey::LastLeaf => {
                "SELECT hash FROM nodes WHERE last = ((?2 + 1) << ?1) - 1 AND level = ?1"
            }
        };
        self.0
            .prepare_cached(sql)
            .and_then(|mut statement| {
                statement
                    .query_row(params![level, index], |row| row.get(0))
                    .optional()
            })
            .map_err(error("cannot read a tree node"))
    }

    fn last_checkpoint(&mut self) -> Result<Option<(i64, String)>, AuditError> {
        self.0
            .query_row(
                "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(error("cannot read the last checkpoint"))
    }

    fn checkpoints_after(&mut self, after: i64, limit: i64) -> Result<Vec<String>, AuditError> {
        let error = error("cannot read checkpoints");
        let mut statement = self
            .0
            .prepare_cached("SELECT note FROM checkpoints WHERE size > ?1 ORDER BY size LIMIT ?2")
            .map_err(&error)?;
        statement
            .query_map(params![after, limit], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(&error)
    }

    fn event(&mut self, seq: i64) -> Result<Option<String>, AuditError> {
        self.0
            .query_row("SELECT body FROM events WHERE seq = ?1", [seq], |row| {
                row.get(0)
            })
            .optional()
            .map_err(error("cannot read the event"))
    }

    fn events_after(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, String)>, AuditError> {
        let error = error("cannot read events");
        let mut statement = self
            .0
            .prepare_cached("SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(&error)?;
        statement
            .query_map([after, limit], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(&error)
    }

    fn list(&mut self, query: &ListQuery) -> Result<Vec<(i64, String)>, AuditError> {
        let mut sql = String::from("SELECT seq, body FROM events WHERE 1 = 1");
        let mut params: Vec<&dyn ToSql> = Vec::new();
        for (column, value) in list_filters(query) {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                params.push(value);
            }
        }
        // SQLite reads a negative limit as "no limit".
        let limit = limit(query.limit).unwrap_or(-1);
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        params.push(&limit);

        let error = error("cannot list events");
        let mut statement = self.0.prepare_cached(&sql).map_err(&error)?;
        statement
            .query_map(params.as_slice(), |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(&error)
    }

    fn containing(&mut self, kind: &str, text: &str) -> Result<Vec<(i64, String)>, AuditError> {
        let error = error("cannot search events");
        let mut statement = self
            .0
            .prepare_cached(
                "SELECT seq, body FROM events WHERE kind = ?1 AND instr(body, ?2) > 0 ORDER BY seq",
            )
            .map_err(&error)?;
        statement
            .query_map([kind, text], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(&error)
    }

    fn each_event(&mut self, each: &mut dyn FnMut(i64, &[u8])) -> Result<(), AuditError> {
        let error = error("cannot read the log");
        let mut statement = self
            .0
            .prepare("SELECT seq, body FROM events ORDER BY seq")
            .map_err(&error)?;
        let mut rows = statement.query([]).map_err(&error)?;
        while let Some(row) = rows.next().map_err(&error)? {
            let seq: i64 = row.get(0).map_err(&error)?;
            let bytes = match row.get_ref(1).map_err(&error)? {
                rusqlite::types::ValueRef::Text(bytes) | rusqlite::types::ValueRef::Blob(bytes) => {
                    bytes
                }
                rusqlite::types::ValueRef::Null
                | rusqlite::types::ValueRef::Integer(_)
                | rusqlite::types::ValueRef::Real(_) => &[],
            };
            each(seq, bytes);
        }
        Ok(())
    }

    fn each_node(&mut self, each: &mut dyn FnMut(i64, i64, &[u8])) -> Result<(), AuditError> {
        let error = error("cannot read the log");
        // In key order: within a level, ascending indexes either way.
        let sql = match self.1 {
            NodeKey::LevelIndex => "SELECT level, idx, hash FROM nodes ORDER BY level, idx",
            NodeKey::LastLeaf => "SELECT level, idx, hash FROM nodes ORDER BY last, level",
        };
        let mut statement = self.0.prepare(sql).map_err(&error)?;
        let mut rows = statement.query([]).map_err(&error)?;
        while let Some(row) = rows.next().map_err(&error)? {
            let level: i64 = row.get(0).map_err(&error)?;
            let index: i64 = row.get(1).map_err(&error)?;
            let hash: Vec<u8> = row.get(2).map_err(&error)?;
            each(level, index, &hash);
        }
        Ok(())
    }

    fn checkpoints(&mut self) -> Result<Vec<(i64, String)>, AuditError> {
        let error = error("cannot read the log");
        let mut statement = self
            .0
            .prepare("SELECT size, note FROM checkpoints ORDER BY size")
            .map_err(&error)?;
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(&error)
    }
}

/// Reads through a PostgreSQL client or transaction.
pub(crate) struct Pg<'a, C>(pub(crate) &'a mut C);

type PgParam<'a> = &'a (dyn postgres::types::ToSql + Sync);

impl<C: postgres::GenericClient> Pg<'_, C> {
    /// The rows of `sql` with `params`, as pairs of their first two columns (`(seq, body)`,
    /// `(size, note)`); errors say `what` could not be read.
    fn pairs(
        &mut self,
        sql: &str,
        params: &[PgParam<'_>],
        what: &'static str,
    ) -> Result<Vec<(i64, String)>, AuditError> {
        let error = pg_error(what);
        self.0
            .query(sql, params)
            .map_err(&error)?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()
            .map_err(&error)
    }
}

impl<C: postgres::GenericClient> Read for Pg<'_, C> {
    fn last_seq(&mut self) -> Result<u64, AuditError> {
        let error = pg_error("cannot count events");
        let seq: i64 = self
            .0
            .query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM events", &[])
            .and_then(|row| row.try_get(0))
            .map_err(&error)?;
        u64::try_from(seq).map_err(|_| AuditError::Store(format!("negative seq {seq} stored")))
    }

    fn node(&mut self, level: u32, index: i64) -> Result<Option<Vec<u8>>, AuditError> {
        let level = i32::try_from(level).unwrap_or(i32::MAX);
        self.0
            .query_opt(
                "SELECT hash FROM nodes WHERE level = $1 AND idx = $2",
                &[&level, &index],
            )
            .and_then(|row| row.map(|row| row.try_get(0)).transpose())
            .map_err(pg_error("cannot read a tree node"))
    }

    fn nodes(&mut self, wanted: &[(u32, i64)]) -> Result<Vec<Option<Vec<u8>>>, AuditError> {
        let error = pg_error("cannot read tree nodes");
        let levels: Vec<i32> = wanted
            .iter()
            .map(|&(level, _)| i32::try_from(level).unwrap_or(i32::MAX))
            .collect();
        let indexes: Vec<i64> = wanted.iter().map(|&(_, index)| index).collect();
        let rows = self
            .0
            .query(
                "SELECT level, idx, hash FROM nodes
                 WHERE (level, idx) IN (SELECT * FROM unnest($1::integer[], $2::bigint[]))",
                &[&levels, &indexes],
            )
            .map_err(&error)?;
        let mut found = std::collections::HashMap::new();
        for row in rows {
            let level: i32 = row.try_get(0).map_err(&error)?;
            let index: i64 = row.try_get(1).map_err(&error)?;
            found.insert(
                (level, index),
                row.try_get::<_, Vec<u8>>(2).map_err(&error)?,
            );
        }
        Ok(levels
            .iter()
            .zip(&indexes)
            .map(|(&level, &index)| found.remove(&(level, index)))
            .collect())
    }

    fn last_checkpoint(&mut self) -> Result<Option<(i64, String)>, AuditError> {
        let error = pg_error("cannot read the last checkpoint");
        let row = self
            .0
            .query_opt(
                "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )
            .map_err(&error)?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .transpose()
            .map_err(&error)
    }

    fn checkpoints_after(&mut self, after: i64, limit: i64) -> Result<Vec<String>, AuditError> {
        let error = pg_error("cannot read checkpoints");
        self.0
            .query(
                "SELECT note FROM checkpoints WHERE size > $1 ORDER BY size LIMIT $2",
                &[&after, &limit],
            )
            .map_err(&error)?
            .iter()
            .map(|row| row.try_get(0).map_err(&error))
            .collect()
    }

    fn event(&mut self, seq: i64) -> Result<Option<String>, AuditError> {
        self.0
            .query_opt("SELECT body FROM events WHERE seq = $1", &[&seq])
            .and_then(|row| row.map(|row| row.try_get(0)).transpose())
            .map_err(pg_error("cannot read the event"))
    }

    fn events_after(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, String)>, AuditError> {
        self.pairs(
            "SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &limit],
            "cannot read events",
        )
    }

    fn list(&mut self, query: &ListQuery) -> Result<Vec<(i64, String)>, AuditError> {
        let mut sql = String::from("SELECT seq, body FROM events WHERE TRUE");
        let mut params: Vec<PgParam<'_>> = Vec::new();
        for (column, value) in list_filters(query) {
            if let Some(value) = value {
                params.push(value);
                sql.push_str(&format!(" AND {column} = ${}", params.len()));
            }
        }
        // `LIMIT NULL` is no limit.
        let limit = limit(query.limit);
        params.push(&limit);
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", params.len()));
        self.pairs(&sql, &params, "cannot list events")
    }

    fn containing(&mut self, kind: &str, text: &str) -> Result<Vec<(i64, String)>, AuditError> {
        self.pairs(
            "SELECT seq, body FROM events WHERE kind = $1 AND strpos(body, $2) > 0 ORDER BY seq",
            &[&kind, &text],
            "cannot search events",
        )
    }

    fn each_event(&mut self, each: &mut dyn FnMut(i64, &[u8])) -> Result<(), AuditError> {
        use postgres::fallible_iterator::FallibleIterator as _;
        let error = pg_error("cannot read the log");
        let mut rows = self
            .0
            .query_raw("SELECT seq, body FROM events ORDER BY seq", no_params())
            .map_err(&error)?;
        while let Some(row) = rows.next().map_err(&error)? {
            let seq: i64 = row.try_get(0).map_err(&error)?;
            let body: Option<&str> = row.try_get(1).map_err(&error)?;
            each(seq, body.unwrap_or_default().as_bytes());
        }
        Ok(())
    }

    fn each_node(&mut self, each: &mut dyn FnMut(i64, i64, &[u8])) -> Result<(), AuditError> {
        use postgres::fallible_iterator::FallibleIterator as _;
        let error = pg_error("cannot read the log");
        let mut rows = self
            .0
            .query_raw(
                "SELECT level::bigint, idx, hash FROM nodes ORDER BY level, idx",
                no_params(),
            )
            .map_err(&error)?;
        while let Some(row) = rows.next().map_err(&error)? {
            let level: i64 = row.try_get(0).map_err(&error)?;
            let index: i64 = row.try_get(1).map_err(&error)?;
            let hash: Option<&[u8]> = row.try_get(2).map_err(&error)?;
            each(level, index, hash.unwrap_or_default());
        }
        Ok(())
    }

    fn checkpoints(&mut self) -> Result<Vec<(i64, String)>, AuditError> {
        self.pairs(
            "SELECT size, note FROM checkpoints ORDER BY size",
            &[],
            "cannot read the log",
        )
    }
}

/// A PostgreSQL error with the server's message (its `Display` alone says only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn pg_error(what: &'static str) -> impl Fn(postgres::Error) -> AuditError {
    move |e| AuditError::Store(format!("{what}: {}", describe(&e)))
}

fn no_params() -> std::iter::Empty<PgParam<'static>> {
    std::iter::empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_prints_without_its_password() {
        let url = PostgresUrl::parse("postgres://gate:s3cret@db.internal:5432/audit").unwrap();
        insta::assert_snapshot!(url, @"postgres://gate:***@db.internal:5432/audit");
        insta::assert_snapshot!(format!("{url:?}"), @r#""postgres://gate:***@db.internal:5432/audit""#);
        let query = PostgresUrl::parse("postgresql://gate@h/audit?sslmode=disable&password=x")
            .unwrap()
            .to_string();
        assert_eq!(
            query,
            "postgresql://gate@h/audit?sslmode=disable&password=***"
        );
        assert!(!format!("{:?}", StoreLocation::parse(url.expose())).contains("s3cret"));
    }

    #[test]
    fn anything_but_a_postgres_url_is_a_sqlite_file() {
        assert_eq!(
            StoreLocation::parse("/var/lib/moat/audit.db"),
            StoreLocation::Sqlite(PathBuf::from("/var/lib/moat/audit.db"))
        );
        assert!(matches!(
            StoreLocation::parse("postgres://moat@127.0.0.1/moat"),
            StoreLocation::Postgres(_)
        ));
    }
}
