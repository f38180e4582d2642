//! The NATS relay's checkpoints and its per-batch lock on PostgreSQL.
//!
//! A batch holds a transaction with a transaction-scoped advisory lock while the relay
//! publishes to NATS. That transaction writes nothing until `advance`, so it has no
//! transaction id meanwhile and does not hold back what `read_all` may see (only transactions
//! with an id count in `pg_snapshot_xmin`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::PostgresStore;
use crate::store::{RelayCheckpoint, RelayCheckpointStore, RelayLease, StoreError};

/// The advisory lock key of a relay, per schema (test schemas and deployments sharing a
/// database do not contend), computed by the server.
const LOCK_KEY: &str = "hashtextextended(current_schema() || '.identity.relay.' || $1, 0)";

#[async_trait]
impl RelayCheckpointStore for PostgresStore {
    async fn relay_checkpoint(&self, name: &str) -> Result<Option<RelayCheckpoint>, StoreError> {
        let row: Option<(i64, DateTime<Utc>)> =
            sqlx::query_as("SELECT position, updated_at FROM relay_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(position, updated_at)| RelayCheckpoint {
            position,
            updated_at,
        }))
    }

    async fn try_lock_relay(&self, name: &str) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        let locked: bool =
            sqlx::query_scalar(&format!("SELECT pg_try_advisory_xact_lock({LOCK_KEY})"))
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
        Ok(Some(Box::new(Lease {
            tx,
            name: name.to_owned(),
            position: position.unwrap_or(0),
        })))
    }
}

struct Lease {
    tx: Transaction<'static, Postgres>,
    name: String,
    position: i64,
}

#[async_trait]
impl RelayLease for Lease {
    fn position(&self) -> i64 {
        self.position
    }

    async fn advance(self: Box<Self>, position: i64) -> Result<bool, StoreError> {
        let Lease {
            mut tx,
            name,
            position: before,
        } = *self;
        let moved = sqlx::query(
            "INSERT INTO relay_checkpoints (name, position, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at \
             WHERE relay_checkpoints.position = $3",
        )
        .bind(&name)
        .bind(position)
        .bind(before)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(moved.rows_affected() == 1)
    }
}
