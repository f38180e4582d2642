//! The locks of the relay and the one-time migrations on PostgreSQL: advisory locks, so that
//! one instance of several does the work.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::PgPool;

use crate::store::shared::{Arg, SqlTx, Tx, ADVANCE_RELAY};
use crate::store::write_health::WriteHealth;
use crate::store::{OneTimeLock, RelayLease, StoreError};

/// The advisory lock key of a relay, per schema (test schemas and deployments sharing a
/// database do not contend), computed by the server.
const RELAY_LOCK_KEY: &str = "hashtextextended(current_schema() || '.identity.relay.' || $1, 0)";

/// The advisory lock key of one-time migrations (any constant; this one spells "IDOT").
const ONE_TIME_LOCK: i64 = 0x4944_4f54;

/// A batch holds a transaction with a transaction-scoped advisory lock while the relay
/// publishes to NATS. That transaction writes nothing until `advance`, so it has no
/// transaction id meanwhile and does not hold back what `read_all` may see (only transactions
/// with an id count in `pg_snapshot_xmin`).
pub(super) async fn try_lock_relay(
    pool: &PgPool,
    health: &WriteHealth,
    name: &str,
) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
    let mut tx = crate::sql::begin(pool).await?;
    let locked: bool = sqlx::query_scalar(&format!(
        "SELECT pg_try_advisory_xact_lock({RELAY_LOCK_KEY})"
    ))
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    if !locked {
        return Ok(None);
    }
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM relay_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(Some(Box::new(RelayBatch {
        tx: Tx::new(tx, health.clone(), None),
        name: name.to_owned(),
        position: position.unwrap_or(0),
    })))
}

struct RelayBatch {
    tx: Tx<sqlx::Postgres>,
    name: String,
    position: i64,
}

#[async_trait]
impl RelayLease for RelayBatch {
    fn position(&self) -> i64 {
        self.position
    }

    async fn advance(self: Box<Self>, position: i64) -> Result<bool, StoreError> {
        let Self {
            mut tx,
            name,
            position: before,
        } = *self;
        let args = [
            Arg::Text(&name),
            Arg::Int(position),
            Arg::time(Utc::now()),
            Arg::Int(before),
        ];
        let moved = tx.execute(ADVANCE_RELAY, &args).await?;
        tx.commit().await?;
        Ok(moved == 1)
    }
}

/// A session lock on a connection of its own, out of the pool: the lock lasts as long as it,
/// and closing it (drop, or the process dying) releases the lock.
pub(super) async fn one_time_lock(pool: &PgPool) -> Result<OneTimeLock, StoreError> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(ONE_TIME_LOCK)
        .execute(&mut conn)
        .await?;
    Ok(OneTimeLock::new(std::sync::Mutex::new(conn)))
}
