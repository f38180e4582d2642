//! SQLite: the embedded default, one service instance.
//!
//! Every write goes through a pool of one connection, and appends go through one writer task
//! that commits whatever appends queued meanwhile in one `BEGIN IMMEDIATE` transaction (group
//! commit, each append in its own savepoint; see `append`). Writers are serialised, so an
//! event's position (the rowid) follows commit order. Reads use a separate pool; in WAL mode
//! they run beside the writer and each statement sees a committed prefix of the log.

mod api_keys;
mod append;
mod attempts;
mod checkpoint;
mod keyring;
mod rejections;
mod relay;
mod rewrite;

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{EventId, StreamId, UserId};
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::Row;
use uuid::Uuid;

use super::prepared::{schema_version_from_db, upcast};
use super::signal::AppendSignal;

use super::{
    AccountKey, AppendBatch, AppendError, ClaimKey, DataKeyStore, EventStore, NonceStore,
    RecordedEvent, SessionKeyVault, SigningKeyRetirement, SigningKeyStore, Store, StoreError,
    StoredSigningKey,
};

pub struct SqliteStore {
    /// One connection: all writes queue here.
    write: SqlitePool,
    read: SqlitePool,
    signal: AppendSignal,
    /// See `Store::write_turn`.
    write_turn: Arc<tokio::sync::Mutex<()>>,
    /// The queue of the task that writes appends (`append::writer`).
    appends: tokio::sync::mpsc::Sender<append::Job>,
    /// Dropped with the store: stops the WAL checkpointer (`checkpoint::run`).
    _stop_checkpoints: tokio::sync::oneshot::Sender<()>,
    /// The database file (its one-time migration lock file lies beside it).
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `sqlite://path` or `sqlite:path`,
    /// and runs the migrations. In-memory databases are refused: the two pools would each get
    /// their own.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(crate::database_url::UnsupportedUrl.into());
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An append is answered once it is on disk: `FULL` syncs the WAL at each commit
            // (once per group of appends). With `NORMAL` a power cut or OS crash could take
            // back logins already answered: tokens naming a user who no longer exists, and
            // the same openid registered again as someone else.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted rows (an erased user's data key, a released claim) are overwritten with
            // zeros, not left in free pages of the file.
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(5));
        let path = options.get_filename().to_path_buf();
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // Checkpoints run beside the writer, not inside its commits (see `checkpoint`).
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", "0")
                    .pragma("journal_size_limit", checkpoint::WAL_SIZE_LIMIT),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().pragma("query_only", "ON"))
            .await?;
        let (stop_checkpoints, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(checkpoint::run(options, stopped));
        let write_turn = Arc::default();
        let (appends, queue) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(append::writer(
            write.clone(),
            Arc::clone(&write_turn),
            queue,
        ));
        Ok(Self {
            write,
            read,
            signal: AppendSignal::new(),
            write_turn,
            appends,
            _stop_checkpoints: stop_checkpoints,
            path,
        })
    }
}

/// Times are stored as fixed-width RFC 3339 UTC text, so they also sort as text.
fn time_to_db(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time_from_db(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("time {text:?}: {e}")))
}

fn uuid_from_db(text: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(text).map_err(|e| StoreError::Corrupt(format!("uuid {text:?}: {e}")))
}

const EVENT_COLUMNS: &str =
    "position, event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata";

/// `read_all`: the log after a position, in position order.
static READ_ALL: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2")
});

/// Columns by index, in `EVENT_COLUMNS` order (by name costs a lookup per value).
fn decode_event(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    Ok(upcast(RecordedEvent {
        position: row.try_get(0)?,
        event_id: EventId::from_uuid(uuid_from_db(row.try_get(1)?)?),
        stream_id: StreamId::from_stored(row.try_get(2)?),
        stream_version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: schema_version_from_db(row.try_get(5)?)?,
        occurred_at: time_from_db(row.try_get(6)?)?,
        payload: serde_json::from_str(row.try_get(7)?)
            .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?,
        // Straight into the struct: no JSON tree in between.
        metadata: serde_json::from_str(row.try_get(8)?)
            .map_err(|e| StoreError::Corrupt(format!("event metadata: {e}")))?,
    }))
}

#[async_trait]
impl EventStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(streams = batch.streams.len()))]
    async fn append(&self, batch: AppendBatch) -> Result<Vec<RecordedEvent>, AppendError> {
        let (reply, appended) = tokio::sync::oneshot::channel();
        let gone = || StoreError::SharedWrite("the SQLite writer has stopped".into());
        self.appends
            .send(append::Job { batch, reply })
            .await
            .map_err(|_| gone())?;
        let appended = appended.await.map_err(|_| gone())?;
        let events: Vec<RecordedEvent> = appended?.into_iter().map(upcast).collect();
        if let Some(last) = events.iter().map(|e| e.position).max() {
            self.signal.bump(last);
        }
        Ok(events)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(stream = %stream))]
    async fn load_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 ORDER BY stream_version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream.as_str())
            .fetch_all(&self.read)
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
             JOIN events ON events.stream_id = ?3 || claims.user_id \
             WHERE claims.kind = ?1 AND claims.value = ?2 ORDER BY stream_version"
        );
        let rows = sqlx::query(&sql)
            .bind(kind)
            .bind(value)
            .bind(UserId::STREAM_PREFIX)
            .fetch_all(&self.read)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let user = UserId::from_uuid(uuid_from_db(first.try_get(9)?)?);
        let events = rows.iter().map(decode_event).collect::<Result<_, _>>()?;
        Ok(Some((user, events)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(streams = streams.len()))]
    async fn load_streams(&self, streams: &[StreamId]) -> Result<Vec<RecordedEvent>, StoreError> {
        let placeholders = vec!["?"; streams.len()].join(", ");
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id IN ({placeholders}) \
             ORDER BY stream_id, stream_version"
        );
        let mut query = sqlx::query(&sql);
        for stream in streams {
            query = query.bind(stream.as_str());
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter().map(decode_event).collect()
    }

    fn read_all_stream(
        &self,
        after: i64,
        limit: u32,
    ) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        // Decoded as the rows arrive: sqlx steps the statement on the connection's own thread,
        // so the reader's work overlaps with SQLite producing the next rows.
        sqlx::query(&READ_ALL)
            .bind(after)
            .bind(limit)
            .fetch(&self.read)
            .map(|row| decode_event(&row?))
            .boxed()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_claim(&self, claim: &ClaimKey) -> Result<Option<UserId>, StoreError> {
        let (kind, value) = (claim.kind, claim.value.as_str());
        let owner: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM claims WHERE kind = ?1 AND value = ?2")
                .bind(kind)
                .bind(value)
                .fetch_optional(&self.read)
                .await?;
        owner
            .map(|id| uuid_from_db(&id).map(UserId::from_uuid))
            .transpose()
    }

    async fn users_by_phone(&self, phone_index: &str) -> Result<Vec<UserId>, StoreError> {
        let users: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM phone_lookup WHERE phone_index = ?1")
                .bind(phone_index)
                .fetch_all(&self.read)
                .await?;
        users
            .iter()
            .map(|id| uuid_from_db(id).map(UserId::from_uuid))
            .collect()
    }
}

/// Stores a sealed `session_key`, replacing the account's previous one (alone, or inside an
/// append's transaction).
async fn upsert_session_key(
    conn: &mut SqliteConnection,
    appid: &str,
    account: &AccountKey,
    sealed: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (appid, openid) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
    )
    .bind(appid)
    .bind(account.as_str())
    .bind(sealed)
    .bind(time_to_db(Utc::now()))
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl SessionKeyVault for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_session_key(
        &self,
        appid: &str,
        account: &AccountKey,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn.lock().await;
        let mut conn = self.write.acquire().await?;
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
            "SELECT sealed FROM wechat_session_keys WHERE appid = ?1 AND openid = ?2",
        )
        .bind(appid)
        .bind(account.as_str())
        .fetch_optional(&self.read)
        .await?;
        Ok(sealed)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_session_key(
        &self,
        appid: &str,
        account: &AccountKey,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM wechat_session_keys WHERE appid = ?1 AND openid = ?2")
            .bind(appid)
            .bind(account.as_str())
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SigningKeyStore for SqliteStore {
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        type Row = (
            String,
            Vec<u8>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT kid, sealed_private_key, created_at, activates_at, retire_after, retired_at \
             FROM signing_keys ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(&self.read)
        .await?;
        let time = |t: Option<String>| t.as_deref().map(time_from_db).transpose();
        rows.into_iter()
            .map(
                |(kid, sealed_private_key, created_at, activates_at, retire_after, retired_at)| {
                    Ok(StoredSigningKey {
                        kid,
                        sealed_private_key,
                        created_at: time_from_db(&created_at)?,
                        activates_at: time(activates_at)?,
                        retire_after: time(retire_after)?,
                        retired_at: time(retired_at)?,
                    })
                },
            )
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_first_signing_key(
        &self,
        key: StoredSigningKey,
    ) -> Result<Vec<StoredSigningKey>, StoreError> {
        // One statement is atomic, and writers are serialised: only the first key goes in.
        sqlx::query(
            "INSERT INTO signing_keys (kid, sealed_private_key, created_at) \
             SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        )
        .bind(&key.kid)
        .bind(&key.sealed_private_key)
        .bind(time_to_db(key.created_at))
        .execute(&self.write)
        .await?;
        self.signing_keys().await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        activation: std::time::Duration,
        retention: std::time::Duration,
    ) -> Result<StoredSigningKey, StoreError> {
        // One instance on SQLite: this host's clock is the database's.
        let created_at = Utc::now();
        let activates_at = created_at + activation;
        let _turn = self.write_turn.lock().await;
        let mut tx = crate::sql::begin_with(&self.write, "BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, sealed_private_key, created_at, activates_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&key.kid)
        .bind(&key.sealed_private_key)
        .bind(time_to_db(created_at))
        .bind(time_to_db(activates_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE signing_keys SET retire_after = ?1 WHERE retire_after IS NULL AND kid = \
             (SELECT kid FROM signing_keys WHERE kid <> ?2 ORDER BY created_at DESC, kid DESC LIMIT 1)")
        .bind(time_to_db(activates_at + retention))
        .bind(&key.kid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StoredSigningKey {
            created_at: time_from_db(&time_to_db(created_at))?,
            activates_at: Some(time_from_db(&time_to_db(activates_at))?),
            retire_after: None,
            retired_at: None,
            ..key.clone()
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn retire_signing_key(&self, kid: &str) -> Result<SigningKeyRetirement, StoreError> {
        // One instance on SQLite: this host's clock is the database's.
        let retired = sqlx::query(
            "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1 AND retired_at IS NULL \
             AND EXISTS (SELECT 1 FROM signing_keys AS newer WHERE newer.retired_at IS NULL \
             AND (newer.created_at, newer.kid) > (signing_keys.created_at, signing_keys.kid))",
        )
        .bind(kid)
        .bind(time_to_db(Utc::now()))
        .execute(&self.write)
        .await?;
        if retired.rows_affected() == 1 {
            return Ok(SigningKeyRetirement::Retired);
        }
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT retired_at FROM signing_keys WHERE kid = ?1")
                .bind(kid)
                .fetch_optional(&self.write)
                .await?;
        Ok(match row {
            None => SigningKeyRetirement::NotFound,
            Some((Some(_),)) => SigningKeyRetirement::AlreadyRetired,
            Some((None,)) => SigningKeyRetirement::Signs,
        })
    }
}

#[async_trait]
impl DataKeyStore for SqliteStore {
    async fn data_key(&self, user_id: UserId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT sealed_key FROM user_data_keys WHERE user_id = ?1")
                .bind(user_id.to_string())
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn insert_data_key(&self, user_id: UserId, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        // One statement when the key is new (every registration makes one); a second read
        // only when a concurrent insert won.
        let inserted: Option<Vec<u8>> = sqlx::query_scalar(
            "INSERT INTO user_data_keys (user_id, sealed_key, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user_id) DO NOTHING RETURNING sealed_key",
        )
        .bind(user_id.to_string())
        .bind(sealed)
        .bind(time_to_db(Utc::now()))
        .fetch_optional(&self.write)
        .await?;
        if let Some(key) = inserted {
            return Ok(key);
        }
        // Read through the writer: the read pool may not see the insert yet.
        sqlx::query_scalar("SELECT sealed_key FROM user_data_keys WHERE user_id = ?1")
            .bind(user_id.to_string())
            .fetch_optional(&self.write)
            .await?
            .ok_or_else(|| StoreError::Corrupt("data key vanished after insert".into()))
    }

    async fn destroy_data_key(&self, user_id: UserId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM user_data_keys WHERE user_id = ?1")
            .bind(user_id.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl NonceStore for SqliteStore {
    async fn use_nonce(
        &self,
        scope: &str,
        nonce: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM request_nonces WHERE expires_at < ?1")
            .bind(time_to_db(now))
            .execute(&self.write)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO request_nonces (scope, nonce, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (scope, nonce) DO NOTHING",
        )
        .bind(scope)
        .bind(nonce)
        .bind(time_to_db(expires_at))
        .execute(&self.write)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    fn backend(&self) -> crate::database_url::Backend {
        crate::database_url::Backend::Sqlite
    }

    async fn purge_deleted(&self) -> Result<(), StoreError> {
        checkpoint::truncate(&self.write).await
    }

    fn appended(&self) -> tokio::sync::watch::Receiver<i64> {
        self.signal.subscribe()
    }

    fn write_turn(&self) -> Option<Arc<tokio::sync::Mutex<()>>> {
        Some(self.write_turn.clone())
    }
}
