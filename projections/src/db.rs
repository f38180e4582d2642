//! The read models' connection to the event store's database, through sqlx's `Any` driver so
//! that one set of SQL statements serves both backends: read-model tables use only text and
//! 64-bit integers (times are microseconds since the epoch), and `$N` placeholders, which
//! SQLite accepts too.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyConnection;
use sqlx::{Any, AnyPool, Executor, Transaction};

use infra::database_url::DatabaseUrl;

use crate::error::ProjectionError;
use crate::schema::Table;

pub(crate) type Tx = Transaction<'static, Any>;

pub(crate) use infra::database_url::Backend;

/// The type of integer columns: SQLite needs exactly `INTEGER` for a primary key to be the
/// rowid; PostgreSQL's `integer` would be 32 bits.
pub(crate) fn int_type(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "bigint",
        Backend::Sqlite => "INTEGER",
    }
}

/// Two pools: on SQLite all read-model writes queue on one connection (SQLite has one writer
/// anyway, and a queue beats busy-waiting); on PostgreSQL both are the same pool.
#[derive(Debug)]
pub(crate) struct Db {
    pub backend: Backend,
    pub write: AnyPool,
    pub read: AnyPool,
    /// On SQLite, this process's turn at the database file's write lock (see
    /// `infra::store::sqlite_write_turn`), which the event store's appends take too.
    pub turn: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self, ProjectionError> {
        sqlx::any::install_default_drivers();
        let url = DatabaseUrl::parse(url).map_err(|_| ProjectionError::UnsupportedUrl)?;
        if url.backend() == Backend::Postgres {
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url.as_str())
                .await?;
            return Ok(Self {
                backend: Backend::Postgres,
                write: pool.clone(),
                read: pool,
                turn: None,
            });
        }
        let url = url.as_str();
        // Create the file if missing, as the store does.
        let url = if url.contains("mode=") {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        let options = || {
            AnyPoolOptions::new().after_connect(|conn, _| {
                Box::pin(async move {
                    // Safe in WAL mode (a crash may lose the last commits, never corrupt), and
                    // it spares an fsync per projection batch.
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // The event store's checkpointer copies the WAL into the database, beside
                    // the writers: a checkpoint inside a projection's commit would hold the
                    // write turn that appends wait for.
                    conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    // Read-model rows deleted at an erasure are overwritten, not left in
                    // free pages of the file.
                    conn.execute("PRAGMA secure_delete = ON").await?;
                    Ok(())
                })
            })
        };
        let write = options()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await?;
        // Persistent, and a no-op when the store already set it.
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&write)
            .await?;
        let read = options().max_connections(4).connect(&url).await?;
        let path = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
            .get_filename()
            .to_path_buf();
        Ok(Self {
            backend: Backend::Sqlite,
            write,
            read,
            turn: Some(infra::store::sqlite_write_turn(&path)),
        })
    }

    /// A write transaction. On SQLite it takes the write lock at once, with a write as its
    /// first statement, so nothing it reads can be stale by the time it writes (a deferred
    /// transaction that reads first may fail to upgrade).
    ///
    /// Not `BEGIN IMMEDIATE` through `begin_with`: sqlx checks a custom BEGIN after it ran,
    /// and a task aborted in between would leave the pooled connection inside a transaction
    /// that nobody ends. `infra::sql::begin` cannot be cut short (see there why).
    pub async fn begin(&self) -> Result<Tx, ProjectionError> {
        let mut tx = infra::sql::begin(&self.write).await?;
        if self.backend == Backend::Sqlite {
            // Matches no row, yet takes the write lock (waiting out the busy timeout).
            sqlx::query("UPDATE projection_checkpoints SET updated_at = updated_at WHERE 0")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }
}

/// The advisory lock key of a projection, per schema (so test schemas and deployments sharing
/// a database do not contend), computed by the server.
const LOCK_KEY: &str = "hashtextextended(current_schema() || '.identity.projection.' || $1, 0)";

/// Takes the projection's transaction-scoped lock if free. On SQLite, `Db::begin`
/// already made the transaction the only writer, so this is always true.
pub(crate) async fn try_lock(
    conn: &mut AnyConnection,
    backend: Backend,
    name: &str,
) -> Result<bool, ProjectionError> {
    if backend == Backend::Sqlite {
        return Ok(true);
    }
    let sql = format!("SELECT pg_try_advisory_xact_lock({LOCK_KEY})");
    Ok(sqlx::query_scalar(&sql).bind(name).fetch_one(conn).await?)
}

/// Waits for the projection's transaction-scoped lock.
pub(crate) async fn lock(
    conn: &mut AnyConnection,
    backend: Backend,
    name: &str,
) -> Result<(), ProjectionError> {
    if backend == Backend::Postgres {
        // The function returns void, which `Any` cannot decode: discard it.
        let sql = format!("SELECT 1 FROM (SELECT pg_advisory_xact_lock({LOCK_KEY})) AS locked");
        sqlx::query(&sql).bind(name).execute(conn).await?;
    }
    Ok(())
}

/// A bound value of a read-model column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}

impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

pub(crate) fn bind(query: AnyQuery<'_>, value: Val) -> AnyQuery<'_> {
    match value {
        Val::Int(v) => query.bind(v),
        Val::Text(v) => query.bind(v),
    }
}

/// `$from, $from+1, …` for `count` parameters.
pub(crate) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parameters per statement: well under SQLite's 32766 and PostgreSQL's 65535.
const MAX_PARAMS: usize = 4000;

/// The placeholders of parameters `from..from + count` in a statement on `conn` whose
/// parameters are all written by this function, in order: `$from, …` on PostgreSQL, `?, …` on
/// SQLite.
///
/// Anonymous on SQLite because sqlx asks SQLite for each parameter's name when binding, and
/// SQLite finds a name by walking the statement's list of named parameters: binding n `$N`
/// parameters costs O(n²), which with thousands per multi-row `INSERT` was most of a
/// rebuild's time. Anonymous parameters have no names to walk.
pub(crate) fn bound_placeholders(conn: &AnyConnection, from: usize, count: usize) -> String {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        vec!["?"; count].join(", ")
    } else {
        placeholders(from, count)
    }
}

/// Rows for multi-row `INSERT`s, sent in as few statements as the parameter limits allow
/// (one round trip per few hundred rows instead of one per row).
pub(crate) struct Rows {
    table: String,
    columns: Vec<&'static str>,
    values: Vec<Val>,
}

impl Rows {
    /// Rows for every column of the table's `generation`.
    pub fn new(table: &Table, generation: i64) -> Self {
        Self {
            table: table.physical(generation),
            columns: table.column_names(),
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, row: impl IntoIterator<Item = Val>) {
        let before = self.values.len();
        self.values.extend(row);
        debug_assert_eq!(self.values.len() - before, self.columns.len());
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Inserts every row; `suffix` follows the `VALUES` list (`ON CONFLICT …`, `RETURNING …`).
    /// Returns what the statements return.
    pub async fn insert(
        self,
        conn: &mut AnyConnection,
        suffix: &str,
    ) -> Result<Vec<AnyRow>, ProjectionError> {
        let width = self.columns.len();
        let per_statement = (MAX_PARAMS / width).max(1);
        let mut returned = Vec::new();
        let mut values = self.values.into_iter().peekable();
        while values.peek().is_some() {
            let chunk: Vec<Val> = values.by_ref().take(per_statement * width).collect();
            let rows = chunk.len() / width;
            let tuples: Vec<String> = (0..rows)
                .map(|r| format!("({})", bound_placeholders(conn, r * width + 1, width)))
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {} {suffix}",
                self.table,
                self.columns.join(", "),
                tuples.join(", ")
            );
            // Full chunks repeat and are worth a cached prepared statement; the last,
            // odd-sized one would only crowd the cache.
            let mut query = sqlx::query(&sql).persistent(rows == per_statement);
            for value in chunk {
                query = bind(query, value);
            }
            returned.extend(query.fetch_all(&mut *conn).await?);
        }
        Ok(returned)
    }
}
