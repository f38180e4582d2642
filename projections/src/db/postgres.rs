//! The read models on PostgreSQL: one pool for reads and writes; transaction-scoped advisory
//! locks (every projection's, taken by each batch) keep instances from applying a batch twice.
//! A rebuild loads its new generation's appended rows by `COPY` ([`Copier`]), which sqlx's
//! `Any` driver does not offer: on connections of its own.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use infra::sql::{open_pool, Liveness, PoolSettings};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::AnyConnection;

use super::{Begun, Db, Dialect, Loader, Val};
use crate::error::ProjectionError;

/// The advisory lock key of a projection, per schema (so test schemas and deployments sharing
/// a database do not contend), computed by the server.
const LOCK_KEY: &str = "hashtextextended(current_schema() || '.identity.projection.' || $1, 0)";

/// The advisory lock key instances starting together take to create the read models.
const INIT_LOCK_KEY: &str = "hashtextextended(current_schema() || '.identity.projections.init', 0)";

pub(super) async fn connect(url: &str, settings: &PoolSettings) -> Result<Db, ProjectionError> {
    let liveness = Liveness::default();
    let options = AnyConnectOptions::from_str(url)?;
    let pool = open_pool(
        liveness.tested(AnyPoolOptions::new()).max_connections(8),
        options,
        settings,
    )
    .await?;
    Ok(Db {
        dialect: Arc::new(Postgres {
            options: PgConnectOptions::from_str(url)?,
            acquire_timeout: settings.acquire_timeout,
        }),
        write: pool.clone(),
        read: pool,
        liveness,
    })
}

struct Postgres {
    /// The read models' database again, for a rebuild's [`Copier`].
    options: PgConnectOptions,
    acquire_timeout: Duration,
}

/// By hand: the connect options hold the database's password.
impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

impl Dialect for Postgres {
    /// `integer` would be 32 bits.
    fn int_type(&self) -> &'static str {
        "bigint"
    }

    /// Replacing in place keeps the view's identity, so concurrent queries simply wait for the
    /// swap to commit.
    fn point_view(&self, view: &str, select: &str) -> Vec<String> {
        vec![format!("CREATE OR REPLACE VIEW {view} AS {select}")]
    }

    fn begin<'a>(&'a self, db: &'a Db) -> BoxFuture<'a, Result<Begun, ProjectionError>> {
        Box::pin(async move { Ok((infra::sql::begin(&db.write).await?, None)) })
    }

    fn lock_init<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            // The function returns void, which `Any` cannot decode: discard it.
            let sql =
                format!("SELECT 1 FROM (SELECT pg_advisory_xact_lock({INIT_LOCK_KEY})) AS locked");
            sqlx::query(&sql).execute(conn).await?;
            Ok(())
        })
    }

    /// One lock per projection, as the rebuild's swap takes them one at a time: whoever
    /// holds all of them may write every read model. `pg_try_…` never waits, so taking
    /// several cannot deadlock.
    fn try_lock_all<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        names: &'a [&'a str],
    ) -> BoxFuture<'a, Result<bool, ProjectionError>> {
        Box::pin(async move {
            let locks: Vec<String> = (1..=names.len())
                .map(|i| {
                    let key = LOCK_KEY.replace("$1", &format!("${i}"));
                    format!("pg_try_advisory_xact_lock({key})::int")
                })
                .collect();
            // Every lock is attempted (no short circuit), so one round trip settles it.
            let sql = format!("SELECT ({}) = {}", locks.join(" + "), names.len());
            let mut query = sqlx::query_scalar(&sql);
            for name in names {
                query = query.bind(*name);
            }
            Ok(query.fetch_one(conn).await?)
        })
    }

    fn lock<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let sql = format!("SELECT 1 FROM (SELECT pg_advisory_xact_lock({LOCK_KEY})) AS locked");
            sqlx::query(&sql).bind(name).execute(conn).await?;
            Ok(())
        })
    }

    fn placeholders(&self, from: usize, count: usize) -> String {
        super::placeholders(from, count)
    }

    /// A new generation has no statistics until autovacuum gets to it: until then the planner
    /// guesses the live queries' plans after the swap from the tables' size alone.
    fn analyze(&self, table: &str) -> Option<String> {
        Some(format!("ANALYZE {table}"))
    }

    /// Two connections: a rebuild's batch loads `audit_log` and `login_history` at once (a
    /// third appended table would wait for one of them, each held only for its `COPY`).
    fn loader(&self) -> Option<Arc<dyn Loader>> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with(self.options.clone());
        Some(Arc::new(Copier { pool }))
    }
}

/// Loads rows by `COPY … FROM STDIN` in its text format: for PostgreSQL the cheapest way in
/// (`audit_log`'s rows of a 200k-event log: 0.88 s, against 1.75 s for one `INSERT` of
/// `unnest`ed arrays and 2.30 s by `json_populate_recordset`; BENCHMARKS.md).
struct Copier {
    pool: PgPool,
}

/// Bytes of rows sent to the server at a time.
const COPY_CHUNK_BYTES: usize = 1 << 20;

impl Loader for Copier {
    fn load<'a>(
        &'a self,
        table: &'a str,
        columns: &'a [&'static str],
        values: &'a [Val],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if values.is_empty() {
                return Ok(());
            }
            let mut conn = self.pool.acquire().await?;
            let statement = format!("COPY {table} ({}) FROM STDIN", columns.join(", "));
            let mut copy = conn.copy_in_raw(&statement).await?;
            let mut text = Vec::with_capacity(COPY_CHUNK_BYTES);
            for row in values.chunks(columns.len()) {
                copy_row(&mut text, row);
                if text.len() >= COPY_CHUNK_BYTES {
                    copy.send(text.as_slice()).await?;
                    text.clear();
                }
            }
            if !text.is_empty() {
                copy.send(text.as_slice()).await?;
            }
            copy.finish().await?;
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
}

/// One row in `COPY`'s text format: fields split by tabs, the row ended by a newline, `\N` for
/// NULL, and a backslash before what would otherwise end a field or a row (so no field can
/// read as the end-of-data marker `\.` either).
fn copy_row(out: &mut Vec<u8>, row: &[Val]) {
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match value {
            Val::Int(Some(n)) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            Val::Int(None) | Val::Text(None) => out.extend_from_slice(b"\\N"),
            Val::Text(Some(text)) => {
                for &byte in text.as_bytes() {
                    match byte {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.push(byte),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use sqlx::Row;

    #[test]
    fn copy_rows_escape_what_would_end_a_field_or_a_row() {
        let mut out = Vec::new();
        copy_row(
            &mut out,
            &[
                Val::from("a\tb\nc\rd\\.e"),
                Val::from(-7),
                Val::Text(None),
                Val::Int(None),
                Val::from(""),
            ],
        );
        assert_eq!(out, b"a\\tb\\nc\\rd\\\\.e\t-7\t\\N\t\\N\t\n");
    }

    /// What goes in by `COPY` reads back as written, NULLs and escapes included.
    #[tokio::test]
    async fn copied_rows_read_back_as_written() {
        let Some(url) = testkit::fresh_postgres_url().await else {
            return;
        };
        let db = Db::connect(&url, &PoolSettings::PATIENT).await.unwrap();
        sqlx::query("CREATE TABLE copied (n bigint, t text, u text)")
            .execute(&db.write)
            .await
            .unwrap();
        let awkward = "tab\there\nnewline\r\\N \\. back\\slash \u{e9}\u{1F600}";
        let rows = [
            (Some(1), Some(awkward), None),
            (Some(2), None, Some("")),
            (None, Some("\\"), Some("\\.")),
        ];
        let values: Vec<Val> = rows
            .iter()
            .flat_map(|(n, t, u)| {
                [
                    Val::from(*n),
                    Val::from(t.map(str::to_owned)),
                    Val::from(u.map(str::to_owned)),
                ]
            })
            .collect();
        let loader = db.dialect.loader().unwrap();
        loader
            .load("copied", &["n", "t", "u"], &values)
            .await
            .unwrap();
        let read: Vec<(Option<i64>, Option<String>, Option<String>)> =
            sqlx::query("SELECT n, t, u FROM copied ORDER BY n NULLS LAST")
                .fetch_all(&db.read)
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect();
        let written: Vec<(Option<i64>, Option<String>, Option<String>)> = rows
            .iter()
            .map(|(n, t, u)| (*n, t.map(str::to_owned), u.map(str::to_owned)))
            .collect();
        assert_eq!(read, written);
    }
}
