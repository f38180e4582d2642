//! The read models on PostgreSQL: one pool for reads and writes; transaction-scoped advisory
//! locks (every projection's, taken by each batch) keep instances from applying a batch twice.

use std::str::FromStr;
use std::sync::Arc;

use futures::future::BoxFuture;
use infra::sql::{open_pool, Liveness, PoolSettings};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyConnection;

use super::{Begun, Db, Dialect};
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
        dialect: Arc::new(Postgres),
        write: pool.clone(),
        read: pool,
        liveness,
    })
}

#[derive(Debug)]
struct Postgres;

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
}
