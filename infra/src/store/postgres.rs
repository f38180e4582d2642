//! PostgreSQL: the production store, shared by several service instances.
//!
//! Appends commit in any order, yet a reader must never pass over an event that commits later
//! with a lower position. So an append's first statement, `reserve_event_positions` (see the
//! migration), assigns the transaction's id and its positions under one short global lock:
//! position order is transaction-id order. A reader reads only events whose transaction id is
//! below its snapshot's xmin. Those transactions have all ended, and so has every transaction
//! holding a lower position (it has a lower id), so a reader sees a prefix of the final log,
//! with gaps only where appends rolled back.

mod append;
mod call;
mod codec;
mod group;
mod locks;
mod notify;
mod refusal;

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{StreamId, UserId};
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::prepared::PreparedAppend;
use super::shared::{event_columns, Pools, SqlStore};
use super::signal::AppendSignal;
use super::write_health::WriteHealth;
use super::{AppendBatch, AppendError, OneTimeLock, RecordedEvent, RelayLease, StoreError};
use crate::database_url::DatabaseUrl;
use crate::sql::{open_pool, Liveness, PoolSettings, Shelf};

/// The store's connections: appends (one group at a time), transactions and the log's readers
/// on the main pool, the reads of requests (the login's, every authenticated request's) on a
/// shelf of their own. Sixteen in all, as when both shared one pool: the reads that left it
/// were most of its checkouts (two of a login's three statements).
const CONNECTIONS: u32 = 8;
const READ_CONNECTIONS: u32 = 8;

pub struct PostgresStore {
    pool: PgPool,
    /// For the shared statements: writes on the same pool, reads (the login's and every
    /// authenticated request's) on a shelf of their own (`Shelf`).
    sql: Pools<sqlx::Postgres>,
    signal: AppendSignal,
    notifier: notify::Notifier,
    /// The append writer: concurrent appends commit together (see `group`).
    appends: group::GroupCommit,
}

impl PostgresStore {
    /// Connects and runs the migrations. The URL may select a schema, as the tests do with
    /// `?options=-csearch_path%3D<schema>`; everything, migrations included, then lives there.
    /// Waits for connections patiently (`PoolSettings::PATIENT`).
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        Self::connect_with(url, &PoolSettings::PATIENT).await
    }

    /// `connect`, waiting for connections as `settings` say.
    pub async fn connect_with(
        url: &DatabaseUrl,
        settings: &PoolSettings,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url.as_str())?;
        let liveness = Liveness::default();
        let pool = open_pool(
            liveness
                .tested(PgPoolOptions::new())
                .max_connections(CONNECTIONS),
            options.clone(),
            settings,
        )
        .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let reads = open_pool(
            liveness
                .tested(PgPoolOptions::new())
                .max_connections(READ_CONNECTIONS),
            // What it runs only reads; were that to change, the server refuses the write.
            options.options([("default_transaction_read_only", "on")]),
            settings,
        )
        .await?;
        let signal = AppendSignal::new();
        let notifier = notify::Notifier::start(&pool, &signal);
        let appends = group::GroupCommit::start(pool.clone(), liveness.clone());
        Ok(Self {
            sql: Pools {
                read: Shelf::new(reads, liveness.clone()),
                write: pool.clone(),
                turn: None,
                health: WriteHealth::default(),
                liveness,
            },
            pool,
            signal,
            notifier,
            appends,
        })
    }

    /// How many appends wait for the append writer while it writes a group: lets a test
    /// hold a group in flight and know who queued behind it.
    #[doc(hidden)]
    pub fn queued_appends(&self) -> usize {
        self.appends.queued()
    }
}

/// `read_all`: the log after a position, in position order. `pg_current_snapshot()` is the
/// statement's own snapshot, so the xmin bound and the rows' visibility agree: everything
/// below xmin has ended, and what committed is visible.
const READ_ALL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events \
     WHERE position > $1 AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY position LIMIT $2"
);

#[async_trait]
impl SqlStore for PostgresStore {
    type Sql = Pools<sqlx::Postgres>;

    /// Queued for the append writer, which commits it with the appends queued meanwhile; an
    /// append with side writes the call cannot carry goes alone.
    async fn write(&self, batch: AppendBatch) -> Result<Vec<RecordedEvent>, AppendError> {
        let prepared = PreparedAppend::new(batch);
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        if append::goes_alone(&prepared) {
            let written = append::append_alone(&self.pool, &prepared).await?;
            return Ok(prepared.into_records(written));
        }
        self.appends.append(prepared).await
    }

    /// `NOTIFY identity_events`, coalesced (see `notify`).
    fn announce(&self, position: i64) {
        self.notifier.committed(position);
    }

    fn sql(&self) -> &Self::Sql {
        &self.sql
    }

    fn signal(&self) -> &AppendSignal {
        &self.signal
    }

    /// One statement, whatever the number of streams: `= ANY($1)` of an array.
    async fn load_stream_rows(
        &self,
        streams: &[StreamId],
        user: UserId,
    ) -> Result<Vec<PgRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            event_columns!(),
            ", (SELECT sealed_key FROM user_data_keys WHERE user_id = $2) \
             FROM events WHERE stream_id = ANY($1) ORDER BY stream_id, stream_version"
        );
        let ids: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        let user = user.as_uuid();
        // Every authenticated request's read: read again if its connection was lost.
        self.sql
            .liveness
            .read(|| {
                self.sql.read.read(async |conn| {
                    Ok(sqlx::query(SQL)
                        .bind(&ids)
                        .bind(user)
                        .fetch_all(conn)
                        .await?)
                })
            })
            .await
    }

    fn read_all_rows(&self, after: i64, limit: u32) -> BoxStream<'_, Result<PgRow, sqlx::Error>> {
        let query = sqlx::query(READ_ALL).bind(after).bind(i64::from(limit));
        query.fetch(&self.pool)
    }

    /// PostgreSQL reuses dead tuples' space after `VACUUM` (autovacuum); a logical dump shows
    /// only live rows, so nothing is to be done.
    async fn purge_deleted(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        self.sql
            .liveness
            .read(|| async {
                Ok(sqlx::query_scalar("SELECT now()")
                    .fetch_one(&self.pool)
                    .await?)
            })
            .await
    }

    async fn try_lock_relay(&self, name: &str) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
        locks::try_lock_relay(&self.pool, &self.sql.health, name).await
    }

    async fn one_time_lock(&self) -> Result<OneTimeLock, StoreError> {
        locks::one_time_lock(&self.pool).await
    }

    /// Nothing (see docs/security.md §6: dead tuples stay until PostgreSQL's own VACUUM).
    async fn compact(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_reads_pool_refuses_writes() {
        let Some(url) = testkit::fresh_postgres_url().await else {
            return;
        };
        let url = DatabaseUrl::parse(&url).expect("a PostgreSQL URL");
        let store = PostgresStore::connect(&url).await.expect("a store");
        let wrote: Result<_, sqlx::Error> = store
            .sql
            .read
            .read(async |conn| {
                sqlx::query("CREATE TABLE scratch (x int)")
                    .execute(conn)
                    .await
            })
            .await;
        let refused = wrote.expect_err("a read-only transaction");
        // 25006: read_only_sql_transaction.
        assert_eq!(
            refused
                .as_database_error()
                .and_then(|e| e.code())
                .as_deref(),
            Some("25006"),
            "{refused}"
        );
    }
}
