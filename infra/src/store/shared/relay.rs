//! The NATS relay's checkpoints. Its per-batch lock differs by backend
//! ([`SqlStore::try_lock_relay`]): both move a checkpoint with [`ADVANCE_RELAY`].

use async_trait::async_trait;

use super::{first, Arg, Sql, SqlRow, SqlStore};
use crate::store::{RelayCheckpoint, RelayCheckpointStore, RelayLease, StoreError};

/// Moves a relay's checkpoint `$1` to `$2` at `$3`, only from where the lease read it (`$4`):
/// zero rows when someone else moved it meanwhile.
pub(in crate::store) const ADVANCE_RELAY: &str =
    "INSERT INTO relay_checkpoints (name, position, updated_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at \
     WHERE relay_checkpoints.position = $4";

#[async_trait]
impl<B: SqlStore> RelayCheckpointStore for B {
    async fn relay_checkpoint(&self, name: &str) -> Result<Option<RelayCheckpoint>, StoreError> {
        let sql = "SELECT position, updated_at FROM relay_checkpoints WHERE name = $1";
        let rows = self.sql().fetch(sql, &[Arg::Text(name)]).await?;
        first(rows).map(|row| checkpoint(&row)).transpose()
    }

    async fn try_lock_relay(&self, name: &str) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
        SqlStore::try_lock_relay(self, name).await
    }
}

fn checkpoint(row: &impl SqlRow) -> Result<RelayCheckpoint, StoreError> {
    Ok(RelayCheckpoint {
        position: row.int(0)?,
        updated_at: row.time(1)?,
    })
}
