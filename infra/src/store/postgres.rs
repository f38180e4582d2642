//! PostgreSQL: the production store, shared by several service instances.
//!
//! Appends commit in any order, yet a reader must never pass over an event that commits later
//! with a lower position. So an append's first statement, `reserve_event_positions` (see the
//! migration), assigns the transaction's id and its positions under one short global lock:
//! position order is transaction-id order. A reader reads only events whose transaction id is
//! below its snapshot's xmin. Those transactions have all ended, and so has every transaction
//! holding a lower position (it has a lower id), so a reader sees a prefix of the final log,
//! with gaps only where appends rolled back.

mod api_keys;
mod append;
mod attempts;
mod keyring;
mod notify;
mod rejections;
mod relay;
mod rewrite;

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{EventId, Metadata, StreamId, UserId};
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use uuid::Uuid;

use super::prepared::{schema_version_from_db, upcast};
use super::signal::AppendSignal;

use super::{
    AccountKey, AppendBatch, AppendError, ClaimKey, DataKeyStore, EventStore, NonceStore,
    RecordedEvent, SessionKeyVault, SigningKeyRetirement, SigningKeyStore, Store, StoreError,
    StoredSigningKey,
};

pub struct PostgresStore {
    pool: PgPool,
    signal: AppendSignal,
    notifier: notify::Notifier,
}

impl PostgresStore {
    /// Connects and runs the migrations. The URL may select a schema, as the tests do with
    /// `?options=-csearch_path%3D<schema>`; everything, migrations included, then lives there.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let signal = AppendSignal::new();
        let notifier = notify::Notifier::start(&pool, &signal);
        Ok(Self {
            pool,
            signal,
            notifier,
        })
    }
}

const EVENT_COLUMNS: &str =
    "position, event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata";

/// `read_all`: the log after a position, in position order. `pg_current_snapshot()` is the
/// statement's own snapshot, so the xmin bound and the rows' visibility agree: everything
/// below xmin has ended, and what committed is visible.
static READ_ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE position > $1 AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY position LIMIT $2"
    )
});

/// Columns by index, in `EVENT_COLUMNS` order (by name costs a lookup per value).
fn decode_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    Ok(upcast(RecordedEvent {
        position: row.try_get(0)?,
        event_id: EventId::from_uuid(row.try_get(1)?),
        stream_id: StreamId::from_stored(row.try_get(2)?),
        stream_version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: schema_version_from_db(row.try_get::<i32, _>(5)?.into())?,
        occurred_at: row.try_get(6)?,
        payload: row.try_get(7)?,
        // Straight into the struct: no JSON tree in between.
        metadata: row
            .try_get::<sqlx::types::Json<Metadata>, _>(8)
            .map_err(|e| StoreError::Corrupt(format!("event metadata: {e}")))?
            .0,
    }))
}

#[async_trait]
impl EventStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all, fields(streams = batch.streams.len()))]
    async fn append(&self, batch: AppendBatch) -> Result<Vec<RecordedEvent>, AppendError> {
        let events: Vec<RecordedEvent> = append::append(&self.pool, batch)
            .await?
            .into_iter()
            .map(upcast)
            .collect();
        if let Some(last) = events.iter().map(|e| e.position).max() {
            self.signal.bump(last);
            self.notifier.committed(last);
        }
        Ok(events)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(stream = %stream))]
    async fn load_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn load_claimant(
        &self,
        claim: &ClaimKey,
    ) -> Result<Option<(UserId, Vec<RecordedEvent>)>, StoreError> {
        let (kind, value) = (claim.kind, claim.value.as_str());
        // The user id follows the event columns, so `decode_event` reads the row as it is.
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, claims.user_id FROM claims \
             JOIN events ON events.stream_id = $3 || claims.user_id::text \
             WHERE claims.kind = $1 AND claims.value = $2 ORDER BY stream_version"
        );
        let rows = sqlx::query(&sql)
            .bind(kind)
            .bind(value)
            .bind(UserId::STREAM_PREFIX)
            .fetch_all(&self.pool)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let user = UserId::from_uuid(first.try_get(9)?);
        let events = rows.iter().map(decode_event).collect::<Result<_, _>>()?;
        Ok(Some((user, events)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(streams = streams.len()))]
    async fn load_streams(&self, streams: &[StreamId]) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1) \
             ORDER BY stream_id, stream_version"
        );
        let ids: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        let rows = sqlx::query(&sql).bind(ids).fetch_all(&self.pool).await?;
        rows.iter().map(decode_event).collect()
    }

    fn read_all_stream(
        &self,
        after: i64,
        limit: u32,
    ) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        sqlx::query(&READ_ALL)
            .bind(after)
            .bind(i64::from(limit))
            .fetch(&self.pool)
            .map(|row| decode_event(&row?))
            .boxed()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_claim(&self, claim: &ClaimKey) -> Result<Option<UserId>, StoreError> {
        let (kind, value) = (claim.kind, claim.value.as_str());
        let owner: Option<Uuid> =
            sqlx::query_scalar("SELECT user_id FROM claims WHERE kind = $1 AND value = $2")
                .bind(kind)
                .bind(value)
                .fetch_optional(&self.pool)
                .await?;
        Ok(owner.map(UserId::from_uuid))
    }

    async fn users_by_phone(&self, phone_index: &str) -> Result<Vec<UserId>, StoreError> {
        let users: Vec<Uuid> =
            sqlx::query_scalar("SELECT user_id FROM phone_lookup WHERE phone_index = $1")
                .bind(phone_index)
                .fetch_all(&self.pool)
                .await?;
        Ok(users.into_iter().map(UserId::from_uuid).collect())
    }
}

/// Stores a sealed `session_key`, replacing the account's previous one (alone, or inside an
/// append's transaction).
async fn upsert_session_key(
    conn: &mut PgConnection,
    appid: &str,
    account: &AccountKey,
    sealed: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at) VALUES ($1, $2, $3, now()) \
         ON CONFLICT (appid, openid) DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at",
    )
    .bind(appid)
    .bind(account.as_str())
    .bind(sealed)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl SessionKeyVault for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_session_key(
        &self,
        appid: &str,
        account: &AccountKey,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        upsert_session_key(&mut conn, appid, account, sealed).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn session_key(
        &self,
        appid: &str,
        account: &AccountKey,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let sealed = sqlx::query_scalar(
            "SELECT sealed FROM wechat_session_keys WHERE appid = $1 AND openid = $2",
        )
        .bind(appid)
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(sealed)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_session_key(
        &self,
        appid: &str,
        account: &AccountKey,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM wechat_session_keys WHERE appid = $1 AND openid = $2")
            .bind(appid)
            .bind(account.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SigningKeyStore for PostgresStore {
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        type Row = (
            String,
            Vec<u8>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT kid, sealed_private_key, created_at, activates_at, retire_after, retired_at \
             FROM signing_keys ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(kid, sealed_private_key, created_at, activates_at, retire_after, retired_at)| {
                    StoredSigningKey {
                        kid,
                        sealed_private_key,
                        created_at,
                        activates_at,
                        retire_after,
                        retired_at,
                    }
                },
            )
            .collect())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_first_signing_key(
        &self,
        key: StoredSigningKey,
    ) -> Result<Vec<StoredSigningKey>, StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        // Instances starting together must not each add a key. The lock (which still lets
        // readers in) makes the emptiness check and the insert one step; the insert's own
        // snapshot, taken after the lock is granted, sees a key a rival just committed.
        sqlx::query("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, sealed_private_key, created_at) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        )
        .bind(&key.kid)
        .bind(&key.sealed_private_key)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.signing_keys().await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        activation: std::time::Duration,
        retention: std::time::Duration,
    ) -> Result<StoredSigningKey, StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        // The database's clock, the one every instance shares: not the CLI host's.
        let (created_at, activates_at): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO signing_keys (kid, sealed_private_key, created_at, activates_at) \
             VALUES ($1, $2, now(), now() + make_interval(secs => $3)) \
             RETURNING created_at, activates_at",
        )
        .bind(&key.kid)
        .bind(&key.sealed_private_key)
        .bind(activation.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE signing_keys SET retire_after = $1 WHERE retire_after IS NULL AND kid = \
             (SELECT kid FROM signing_keys WHERE kid <> $2 ORDER BY created_at DESC, kid DESC LIMIT 1)")
        .bind(activates_at + retention)
        .bind(&key.kid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StoredSigningKey {
            created_at,
            activates_at: Some(activates_at),
            retire_after: None,
            retired_at: None,
            ..key.clone()
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn retire_signing_key(&self, kid: &str) -> Result<SigningKeyRetirement, StoreError> {
        let retired = sqlx::query(
            "UPDATE signing_keys SET retired_at = now() WHERE kid = $1 AND retired_at IS NULL \
             AND EXISTS (SELECT 1 FROM signing_keys AS newer WHERE newer.retired_at IS NULL \
             AND (newer.created_at, newer.kid) > (signing_keys.created_at, signing_keys.kid))",
        )
        .bind(kid)
        .execute(&self.pool)
        .await?;
        if retired.rows_affected() == 1 {
            return Ok(SigningKeyRetirement::Retired);
        }
        let row: Option<(Option<DateTime<Utc>>,)> =
            sqlx::query_as("SELECT retired_at FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            None => SigningKeyRetirement::NotFound,
            Some((Some(_),)) => SigningKeyRetirement::AlreadyRetired,
            Some((None,)) => SigningKeyRetirement::Signs,
        })
    }
}

#[async_trait]
impl DataKeyStore for PostgresStore {
    async fn data_key(&self, user_id: UserId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT sealed_key FROM user_data_keys WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn insert_data_key(&self, user_id: UserId, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        // One round trip when the key is new (every registration makes one); a second read
        // only when a concurrent insert won.
        let inserted: Option<Vec<u8>> = sqlx::query_scalar(
            "INSERT INTO user_data_keys (user_id, sealed_key, created_at) VALUES ($1, $2, now()) \
             ON CONFLICT (user_id) DO NOTHING RETURNING sealed_key",
        )
        .bind(user_id.as_uuid())
        .bind(sealed)
        .fetch_optional(&self.pool)
        .await?;
        match inserted {
            Some(key) => Ok(key),
            None => self
                .data_key(user_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("data key vanished after insert".into())),
        }
    }

    async fn destroy_data_key(&self, user_id: UserId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM user_data_keys WHERE user_id = $1")
            .bind(user_id.as_uuid())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl NonceStore for PostgresStore {
    async fn use_nonce(
        &self,
        scope: &str,
        nonce: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM request_nonces WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO request_nonces (scope, nonce, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, nonce) DO NOTHING",
        )
        .bind(scope)
        .bind(nonce)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> crate::database_url::Backend {
        crate::database_url::Backend::Postgres
    }

    fn appended(&self) -> tokio::sync::watch::Receiver<i64> {
        self.signal.subscribe()
    }
}
