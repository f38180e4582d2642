//! The event store on top of a backend: appends and the ordered reads of the log are the
//! backend's own; loading a stream, a claimant and the side look-ups are shared.

use async_trait::async_trait;
use domain::{EventId, StreamId, UserId};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{first, Arg, Sql, SqlRow, SqlStore};
use crate::database_url::Backend;
use crate::store::prepared::{schema_version_from_db, upcast};
use crate::store::{
    AppendBatch, AppendError, ClaimKey, Claimant, EventStore, RecordedEvent, Store, StoreError,
};

/// The columns `decode_event` reads, in its order; a macro so statements stay `&'static str`.
macro_rules! event_columns {
    () => {
        "position, event_id, stream_id, stream_version, event_type, schema_version, \
         occurred_at, payload, metadata"
    };
}
pub(in crate::store) use event_columns;

/// How many columns `event_columns!()` names: what a statement selects after them starts here.
pub(in crate::store) const EVENT_COLUMNS: usize = 9;

/// Columns by index, in `event_columns!()` order (by name costs a lookup per value).
fn decode_event(row: &impl SqlRow) -> Result<RecordedEvent, StoreError> {
    Ok(upcast(RecordedEvent {
        position: row.int(0)?,
        event_id: EventId::from_uuid(row.uuid(1)?),
        stream_id: StreamId::from_stored(row.text(2)?),
        stream_version: row.int(3)?,
        event_type: row.text(4)?,
        schema_version: schema_version_from_db(row.int32(5)?.into())?,
        occurred_at: row.time(6)?,
        payload: row.json(7)?,
        // Straight into the struct: no JSON tree in between.
        metadata: row.json(8)?,
    }))
}

#[async_trait]
impl<B: SqlStore> EventStore for B {
    #[tracing::instrument(level = "debug", skip_all, fields(streams = batch.streams.len()))]
    async fn append(&self, batch: AppendBatch) -> Result<Vec<RecordedEvent>, AppendError> {
        let written = self.write(batch).await;
        self.sql().health().record(&written);
        let events: Vec<RecordedEvent> = written?.into_iter().map(upcast).collect();
        if let Some(last) = events.iter().map(|e| e.position).max() {
            self.signal().bump(last);
            self.announce(last);
        }
        Ok(events)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(stream = %stream))]
    async fn load_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        self.sql()
            .fetch(
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE stream_id = $1 ORDER BY stream_version"
                ),
                &[Arg::Text(stream.as_str())],
            )
            .await?
            .iter()
            .map(decode_event)
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn load_claimant(
        &self,
        claim: &ClaimKey,
        or_else: Option<&ClaimKey>,
    ) -> Result<Option<Claimant>, StoreError> {
        let or_else = or_else.unwrap_or(claim);
        // The holder's id and sealed key follow the event columns, so `decode_event` reads
        // each row as it is; `preference` makes the first claim win when both are held.
        let rows = self
            .sql()
            .fetch(
                concat!(
                    "WITH holder AS (SELECT user_id FROM (\
                       SELECT user_id, 0 AS preference FROM claims WHERE kind = $1 AND value = $2 \
                       UNION ALL \
                       SELECT user_id, 1 AS preference FROM claims WHERE kind = $3 AND value = $4\
                     ) AS held ORDER BY preference LIMIT 1) \
                     SELECT ",
                    event_columns!(),
                    ", holder.user_id, user_data_keys.sealed_key FROM holder \
                     JOIN events ON events.stream_id = $5 || CAST(holder.user_id AS text) \
                     LEFT JOIN user_data_keys ON user_data_keys.user_id = holder.user_id \
                     ORDER BY stream_version"
                ),
                &[
                    Arg::Text(claim.kind),
                    Arg::Text(&claim.value),
                    Arg::Text(or_else.kind),
                    Arg::Text(&or_else.value),
                    Arg::Text(UserId::STREAM_PREFIX),
                ],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Claimant {
            user: row.user(EVENT_COLUMNS)?,
            sealed_key: row.opt_bytes(EVENT_COLUMNS + 1)?,
            events: rows.iter().map(decode_event).collect::<Result<_, _>>()?,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(streams = streams.len()))]
    async fn load_streams_and_key(
        &self,
        streams: &[StreamId],
        user: UserId,
    ) -> Result<(Vec<RecordedEvent>, Option<Vec<u8>>), StoreError> {
        let rows = self.load_stream_rows(streams, user).await?;
        let key = match rows.first() {
            Some(row) => row.opt_bytes(EVENT_COLUMNS)?,
            // No events, no key read: nothing to open.
            None => None,
        };
        let events = rows.iter().map(decode_event).collect::<Result<_, _>>()?;
        Ok((events, key))
    }

    fn read_all_stream(
        &self,
        after: i64,
        limit: u32,
    ) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        self.read_all_rows(after, limit)
            .map(|row| decode_event(&row?))
            .boxed()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_claim(&self, claim: &ClaimKey) -> Result<Option<UserId>, StoreError> {
        let rows = self
            .sql()
            .fetch(
                "SELECT user_id FROM claims WHERE kind = $1 AND value = $2",
                &[Arg::Text(claim.kind), Arg::Text(&claim.value)],
            )
            .await?;
        first(rows).map(|row| row.user(0)).transpose()
    }

    async fn users_by_phone(&self, phone_index: &str) -> Result<Vec<UserId>, StoreError> {
        self.sql()
            .fetch(
                "SELECT user_id FROM phone_lookup WHERE phone_index = $1",
                &[Arg::Text(phone_index)],
            )
            .await?
            .iter()
            .map(|row| row.user(0))
            .collect()
    }
}

#[async_trait]
impl<B: SqlStore> Store for B {
    async fn ping(&self) -> Result<(), StoreError> {
        self.sql().fetch("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn writes_work(&self) -> bool {
        self.sql().writes_work().await
    }

    fn backend(&self) -> Backend {
        <B::Sql as Sql>::BACKEND
    }

    async fn purge_deleted(&self) -> Result<(), StoreError> {
        SqlStore::purge_deleted(self).await
    }

    fn appended(&self) -> tokio::sync::watch::Receiver<i64> {
        self.signal().subscribe()
    }
}
