//! The NATS relay's checkpoints on SQLite: one instance, so no lock. A lease is the
//! checkpoint as read, and `advance` moves it only from there (compare and set), so two relays
//! in one process could not move it backwards.
//!
//! No transaction spans the batch on purpose: it would hold SQLite's single write lock, and
//! so stop every append, while the relay waits for NATS.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::SqlitePool;

use super::{time_from_db, time_to_db, SqliteStore};
use crate::store::{RelayCheckpoint, RelayCheckpointStore, RelayLease, StoreError};

#[async_trait]
impl RelayCheckpointStore for SqliteStore {
    async fn relay_checkpoint(&self, name: &str) -> Result<Option<RelayCheckpoint>, StoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT position, updated_at FROM relay_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.read)
                .await?;
        row.map(|(position, updated_at)| {
            Ok(RelayCheckpoint {
                position,
                updated_at: time_from_db(&updated_at)?,
            })
        })
        .transpose()
    }

    async fn try_lock_relay(&self, name: &str) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
        let position = self.relay_checkpoint(name).await?.map_or(0, |c| c.position);
        Ok(Some(Box::new(Lease {
            write: self.write.clone(),
            name: name.to_owned(),
            position,
        })))
    }
}

struct Lease {
    write: SqlitePool,
    name: String,
    position: i64,
}

#[async_trait]
impl RelayLease for Lease {
    fn position(&self) -> i64 {
        self.position
    }

    async fn advance(self: Box<Self>, position: i64) -> Result<bool, StoreError> {
        let moved = sqlx::query(
            "INSERT INTO relay_checkpoints (name, position, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at \
             WHERE relay_checkpoints.position = $4",
        )
        .bind(&self.name)
        .bind(position)
        .bind(time_to_db(Utc::now()))
        .bind(self.position)
        .execute(&self.write)
        .await?;
        Ok(moved.rows_affected() == 1)
    }
}
