//! The event store: one trait, two sqlx implementations (PostgreSQL, SQLite), picked from the
//! database URL at startup.
//!
//! Besides events, the same database keeps the few things that must not be events: uniqueness
//! claims (written in the append transaction), sealed WeChat session keys, and sealed token
//! signing keys.
//!
//! The SQL both backends share (the side tables, loading streams) is written once, in
//! `shared`; `postgres` and `sqlite` hold only what truly differs: appends, the ordered reads
//! of the log, locks, wake-ups, and how each stores times, ids and JSON.

mod attempts;
mod console_sessions;
mod fault;
mod postgres;
mod prepared;
mod rejections;
mod shared;
mod signal;
mod sqlite;
mod write_health;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{AvatarId, EventId, Metadata, StreamId, UserId};
use futures::stream::BoxStream;
use futures::TryStreamExt;

use crate::api_keys::StoredApiKey;
use crate::database_url::{Backend, DatabaseUrl, UnsupportedUrl};
pub use crate::personal_data::index::{AccountKey, ClaimKey};
use crate::sql::PoolSettings;

pub use attempts::AttemptCounter;
pub use console_sessions::{ConsoleSessionBounds, ConsoleSessionStore, StoredConsoleSession};
pub use fault::{is_connection_lost, is_database_failure, is_database_unavailable};
pub(crate) use fault::{is_pool_wait, is_sqlx_unavailable};
pub use postgres::PostgresStore;
pub use rejections::{LoginRejection, RejectionStore, FOLDED_IP, NO_IP};
pub use signal::AppendWaiter;
pub use sqlite::{
    write_turn as sqlite_write_turn, Checkpointer as SqliteCheckpointer,
    HeldTurn as SqliteHeldTurn, SqliteStore, WriteTurn as SqliteWriteTurn, SQLITE_PAGE_CACHE_KIB,
    SQLITE_WAL_SIZE_LIMIT, SQLITE_WRITER_SPILL_PAGES,
};

/// An event ready to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
}

/// An event as stored, with its place in its stream and in the global log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Global position: strictly increasing in commit order, never reused; gaps are allowed.
    pub position: i64,
    pub event_id: EventId,
    pub stream_id: StreamId,
    /// 1 for a stream's first event.
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
}

/// Optimistic concurrency for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version (≥ 1).
    Exactly(i64),
    /// Append whatever the stream holds (for streams nobody decides on, like `app-{appid}`).
    Any,
}

impl ExpectedVersion {
    /// The expectation matching a stream loaded with `events` events.
    pub fn after(events: usize) -> Self {
        match events {
            0 => Self::NoStream,
            n => Self::Exactly(n as i64),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// One atomic write: events to one or more streams, plus the uniqueness claims they make.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendBatch {
    pub streams: Vec<StreamAppend>,
    /// Keyed by hash ([`crate::personal_data::LookupIndex`]): no openid or unionid in clear.
    pub claims: Vec<(ClaimKey, UserId)>,
    /// Frees every claim this user holds (erasure): the person may register afresh.
    pub release_claims_of: Option<UserId>,
    /// Rows of side tables written in the same transaction as the events, so that they commit
    /// (or not) with them, at no extra transaction.
    pub side_writes: Vec<SideWrite>,
}

/// A write to a side table that must commit with the batch's events. Not an event: what it
/// writes is a credential or a look-up entry, never part of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideWrite {
    /// A sealed WeChat `session_key` for an account, replacing the one stored (as
    /// `SessionKeyVault::put_session_key`): a login's key commits with the login.
    SessionKey {
        appid: String,
        account: AccountKey,
        sealed: Vec<u8>,
    },
    /// The keyed hash of a phone number just bound, for admin look-ups, replacing the user's
    /// previous one in `phone_lookup` (migration 0014). Not a claim: two users may share a
    /// number. `UserErased` and a withdrawn phone delete it (triggers in the same transaction).
    PhoneIndex { user: UserId, hash: String },
    /// A new user's data key, sealed (`PersonalData::new_key`), inserted with the events that
    /// register them: a registration that loses its race leaves no key behind. Never
    /// replaces a key: a user who has one already fails the append. For an erased user the
    /// insert is skipped (migration 0015): they stay keyless.
    DataKey { user: UserId, sealed: Vec<u8> },
}

impl AppendBatch {
    pub fn stream(
        mut self,
        stream_id: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        if !events.is_empty() {
            self.streams.push(StreamAppend {
                stream_id,
                expected,
                events,
            });
        }
        self
    }

    pub fn claim(mut self, claim: ClaimKey, owner: UserId) -> Self {
        self.claims.push((claim, owner));
        self
    }

    /// Writes a side-table row in the append's transaction.
    pub fn side_write(mut self, write: SideWrite) -> Self {
        self.side_writes.push(write);
        self
    }

    /// `side_write(SideWrite::PhoneIndex { .. })`.
    pub fn phone_index(self, user: UserId, hash: String) -> Self {
        self.side_write(SideWrite::PhoneIndex { user, hash })
    }

    /// `side_write(SideWrite::DataKey { .. })`.
    pub fn data_key(self, user: UserId, sealed: Vec<u8>) -> Self {
        self.side_write(SideWrite::DataKey { user, sealed })
    }

    pub fn release_claims_of(mut self, user: UserId) -> Self {
        self.release_claims_of = Some(user);
        self
    }

    /// `side_write(SideWrite::SessionKey { .. })`.
    pub fn session_key(self, appid: &str, account: &AccountKey, sealed: Vec<u8>) -> Self {
        self.side_write(SideWrite::SessionKey {
            appid: appid.to_owned(),
            account: account.clone(),
            sealed,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the stream first: reload and decide again.
    #[error("stream {0} was changed concurrently")]
    VersionConflict(StreamId),
    /// The claim belongs to someone already (possibly written a moment ago by another instance).
    #[error("{kind} is already claimed")]
    ClaimTaken { kind: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// A write committed together with others (SQLite's group commit) failed with them.
    ///
    /// `unavailable` says whether the group's own error was the database's unavailability
    /// (then every member answers 503, as the first does), judged where that error was seen:
    /// the others get only its text.
    #[error("the transaction this write shared failed: {message}")]
    SharedWrite { message: String, unavailable: bool },
    /// Not tried: a write ahead of it in the process's SQLite write turn waited the whole busy
    /// wait for a lock another process held (see `sqlite::WriteTurn`); that one's error. The
    /// database is unavailable.
    #[error("not tried: the write ahead of it found the database busy: {0}")]
    QueuedBehindBusy(String),
    #[error(transparent)]
    UnsupportedUrl(#[from] UnsupportedUrl),
}

/// A sealed token-signing key as kept in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    /// The private key, sealed under the master key.
    pub sealed_private_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
    /// When it starts signing (stored at insert, by the database's clock); `None` for the
    /// first key (it signs at once) and keys made before migration 0013.
    pub activates_at: Option<DateTime<Utc>>,
    /// When it stops verifying and leaves the JWKS, set when the next key is added; `None`
    /// until then (and for keys retired before migration 0013: computed as before).
    pub retire_after: Option<DateTime<Utc>>,
    /// Set by `identityd keys retire`: the key neither signs, verifies nor is published.
    pub retired_at: Option<DateTime<Utc>>,
}

/// What `SigningKeyStore::retire_signing_key` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKeyRetirement {
    Retired,
    NotFound,
    AlreadyRetired,
    /// The key is the newest one not retired: the one that signs, or will. Refused.
    Signs,
}

/// A claim's holder as a login reads them (see `EventStore::load_claimant`).
#[derive(Debug)]
pub struct Claimant {
    pub user: UserId,
    /// Their stream's events, in version order.
    pub events: Vec<RecordedEvent>,
    /// Their data key, sealed; `None` once erased.
    pub sealed_key: Option<Vec<u8>>,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends every stream's events and writes the claims in one transaction, or nothing.
    async fn append(&self, batch: AppendBatch) -> Result<Vec<RecordedEvent>, AppendError>;

    /// A stream's events in version order (empty for a stream that does not exist).
    async fn load_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The holder of `claim`, or when nobody holds it of `or_else`, with their stream's events
    /// in version order and their sealed data key: a returning login's whole read, in one
    /// statement. `None` when nobody holds either.
    async fn load_claimant(
        &self,
        claim: &ClaimKey,
        or_else: Option<&ClaimKey>,
    ) -> Result<Option<Claimant>, StoreError>;

    /// Several streams' events, each stream's in version order, and `user`'s sealed data key
    /// (`None` once erased), in one statement: every authenticated request loads its session
    /// and its user, and opens what it shows with the user's key.
    async fn load_streams_and_key(
        &self,
        streams: &[StreamId],
        user: UserId,
    ) -> Result<(Vec<RecordedEvent>, Option<Vec<u8>>), StoreError>;

    /// Up to `limit` events with a position above `after`, in position order. Never skips an
    /// event: one that will still commit with a lower position is not passed over (readers
    /// see a prefix of the final log).
    async fn read_all(&self, after: i64, limit: u32) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all_stream(after, limit).try_collect().await
    }

    /// `read_all` one event at a time, as the database returns them: a reader that encodes
    /// each event (the event stream's pages) overlaps its work with the database's.
    fn read_all_stream(
        &self,
        after: i64,
        limit: u32,
    ) -> BoxStream<'_, Result<RecordedEvent, StoreError>>;

    /// The user holding a claim, if any.
    async fn find_claim(&self, claim: &ClaimKey) -> Result<Option<UserId>, StoreError>;
    /// The living users whose bound phone has this keyed hash (`phone_lookup`).
    async fn users_by_phone(&self, phone_index: &str) -> Result<Vec<UserId>, StoreError>;
}

/// Sealed WeChat `session_key`s, one per account: the newest replaces the old one. The service
/// addresses an account by its appid and the keyed hash of its openid
/// (`crate::personal_data::LookupIndex::account`), never the clear openid.
#[async_trait]
pub trait SessionKeyVault: Send + Sync {
    async fn put_session_key(
        &self,
        appid: &str,
        account: &AccountKey,
        sealed: &[u8],
    ) -> Result<(), StoreError>;
    async fn session_key(
        &self,
        appid: &str,
        account: &AccountKey,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Forgets the key (erasure, or retired after repeated decryption failures).
    async fn delete_session_key(&self, appid: &str, account: &AccountKey)
        -> Result<(), StoreError>;
}

/// The token signing keys shared by every instance.
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Every key, retired ones too, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    /// Inserts the key unless one already exists (another instance won the race); either way
    /// returns the keys now stored, newest first.
    async fn insert_first_signing_key(
        &self,
        key: StoredSigningKey,
    ) -> Result<Vec<StoredSigningKey>, StoreError>;
    /// Adds a key (`identityd keys rotate`); instances pick it up at their next reload. In one
    /// transaction, by the database's clock: the key's `created_at` is now, its `activates_at`
    /// now + `activation`, and the previous newest key's `retire_after` (unless set) that
    /// activation + `retention`. Returns the key as stored.
    async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        activation: std::time::Duration,
        retention: std::time::Duration,
    ) -> Result<StoredSigningKey, StoreError>;
    /// Marks the key retired now (`identityd keys retire`), unless it is the newest key not
    /// retired (the one that signs, or will): one statement, so two retirements racing
    /// cannot leave no key to sign with.
    async fn retire_signing_key(&self, kid: &str) -> Result<SigningKeyRetirement, StoreError>;
}

/// One entry of the keyring (see `crate::keyring`), sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringEntry {
    pub name: String,
    pub sealed_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// Re-sealing one keyring entry: applied only if the entry still holds `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringRewrap {
    pub name: String,
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

/// A row sealed under a subkey of the keyring's sealing root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedRow {
    /// `wechat_session_keys`, under `sealer("session-key")`, bound to `appid:openid`.
    SessionKey { appid: String, openid: String },
    /// `signing_keys`, under `sealer("signing-key")`, bound to the kid.
    SigningKey { kid: String },
    /// `user_data_keys`, under `sealer("user-data-key")`, bound to `user:{id}`.
    DataKey { user_id: String },
}

impl SealedRow {
    /// The subkey purpose the row is sealed under.
    pub fn purpose(&self) -> &'static str {
        match self {
            Self::SessionKey { .. } => "session-key",
            Self::SigningKey { .. } => crate::tokens::SIGNING_KEY_PURPOSE,
            Self::DataKey { .. } => "user-data-key",
        }
    }

    /// The context (AAD) the row is sealed with.
    pub fn context(&self) -> Vec<u8> {
        match self {
            Self::SessionKey { appid, openid } => format!("{appid}:{openid}").into_bytes(),
            Self::SigningKey { kid } => kid.clone().into_bytes(),
            Self::DataKey { user_id } => format!("user:{user_id}").into_bytes(),
        }
    }
}

/// Re-sealing one row: applied only if it still holds `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReseal {
    pub row: SealedRow,
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

/// A new sealing root (`identityd keys rotate-master --new-root`): every sealed row re-sealed,
/// the keyring entries re-wrapped and the new root stored, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reseal {
    pub rewraps: Vec<KeyringRewrap>,
    /// The sealing root's entry when the keyring has none yet (inserted, not replaced).
    pub insert: Option<KeyringEntry>,
    /// Every row of the three sealed tables: a row added meanwhile fails the reseal.
    pub rows: Vec<RowReseal>,
}

impl Reseal {
    /// How many rows of each table (session keys, signing keys, data keys) the plan covers.
    pub fn counts(&self) -> [i64; 3] {
        let mut counts = [0; 3];
        for r in &self.rows {
            counts[match r.row {
                SealedRow::SessionKey { .. } => 0,
                SealedRow::SigningKey { .. } => 1,
                SealedRow::DataKey { .. } => 2,
            }] += 1;
        }
        counts
    }
}

/// The keyring: the only rows sealed directly under the master key.
#[async_trait]
pub trait KeyringStore: Send + Sync {
    /// Every row sealed under a subkey of the sealing root, with its sealed value.
    async fn sealed_rows(&self) -> Result<Vec<(SealedRow, Vec<u8>)>, StoreError>;
    /// Applies the reseal in one transaction, with the sealed tables locked against writers;
    /// `false` (and nothing written) when a row or entry changed since it was read.
    async fn reseal(&self, plan: &Reseal) -> Result<bool, StoreError>;
    /// Every entry, by name.
    async fn keyring_entries(&self) -> Result<Vec<KeyringEntry>, StoreError>;
    /// Inserts the entry unless one of that name exists (another instance won the race);
    /// either way returns the sealed key now stored under the name.
    async fn insert_keyring_entry(&self, entry: &KeyringEntry) -> Result<Vec<u8>, StoreError>;
    /// Applies every rewrap in one transaction; `false` (and nothing written) when an entry
    /// no longer holds what the rewrap expected.
    async fn rewrap_keyring(&self, rewraps: &[KeyringRewrap]) -> Result<bool, StoreError>;
}

/// Admin and analytics API keys (hashed).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError>;
    async fn api_key(&self, key_id: &str) -> Result<Option<StoredApiKey>, StoreError>;
    /// Every key, revoked ones too, oldest first.
    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError>;
    /// Revokes the key as of `at` (a key revoked before keeps its first revocation time);
    /// the key as it now stands, or `None` when there is no such key.
    async fn revoke_api_key(
        &self,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<StoredApiKey>, StoreError>;
}

/// Per-user data keys (sealed under a keyring subkey) for crypto-shredding.
#[async_trait]
pub trait DataKeyStore: Send + Sync {
    /// The user's sealed data key, if it exists (and was not destroyed).
    async fn data_key(&self, user_id: UserId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `sealed` unless the user has a key already; returns the key now stored.
    async fn insert_data_key(&self, user_id: UserId, sealed: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Deletes the key: everything sealed under it becomes unreadable.
    async fn destroy_data_key(&self, user_id: UserId) -> Result<(), StoreError>;
}

/// An avatar image as stored: re-encoded, sealed under its owner's data key
/// (`UserKey::seal_bytes`, bound to `avatar:{avatar_id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAvatar {
    pub avatar_id: AvatarId,
    pub user_id: UserId,
    /// `image/png` or `image/jpeg`: what the sealed bytes are.
    pub content_type: String,
    pub sealed_image: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// Uploaded avatar images (`avatars`, migration 0016). A user keeps one: the use cases delete
/// the image an upload replaces, and erasure deletes them all (in the `UserErased` append's
/// transaction too).
#[async_trait]
pub trait AvatarStore: Send + Sync {
    async fn insert_avatar(&self, avatar: &StoredAvatar) -> Result<(), StoreError>;
    /// The image, or `None` when there is no such row (never stored, replaced, erased,
    /// rejected).
    async fn avatar(&self, avatar_id: AvatarId) -> Result<Option<StoredAvatar>, StoreError>;
    /// Deletes one image (replaced, or refused by WeChat's content check); whether it existed.
    async fn delete_avatar(&self, avatar_id: AvatarId) -> Result<bool, StoreError>;
    /// Deletes every image of the user (erasure); how many there were.
    async fn delete_avatars_of(&self, user_id: UserId) -> Result<u64, StoreError>;
}

/// Single-use nonces of signed requests (replay protection shared by every instance).
#[async_trait]
pub trait NonceStore: Send + Sync {
    /// Records the nonce; `false` if it was already used in `scope`. Forgets expired nonces.
    async fn use_nonce(
        &self,
        scope: &str,
        nonce: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Where the NATS relay got to: the position of the last event known to be stored in a
/// JetStream stream, with the time it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayCheckpoint {
    pub position: i64,
    pub updated_at: DateTime<Utc>,
}

/// The NATS relay's checkpoints (one per JetStream stream, by name) and the lock that keeps
/// one relay active per stream across instances. See `crate::relay`.
#[async_trait]
pub trait RelayCheckpointStore: Send + Sync {
    /// The checkpoint, or `None` before the relay's first batch.
    async fn relay_checkpoint(&self, name: &str) -> Result<Option<RelayCheckpoint>, StoreError>;
    /// Takes the relay's lock for one batch, or `None` when another instance holds it. On
    /// PostgreSQL a transaction-scoped advisory lock; on SQLite (one instance) no lock, and
    /// `advance` only moves a checkpoint nobody moved meanwhile.
    async fn try_lock_relay(&self, name: &str) -> Result<Option<Box<dyn RelayLease>>, StoreError>;
}

/// One batch's hold on a relay checkpoint. Dropping it releases the lock and changes nothing.
#[async_trait]
pub trait RelayLease: Send {
    /// The checkpoint's position as read under the lock (0 before the first batch).
    fn position(&self) -> i64;
    /// Moves the checkpoint to `position` and releases the lock; false (nothing written) when
    /// the checkpoint is no longer where `position()` said.
    async fn advance(self: Box<Self>, position: i64) -> Result<bool, StoreError>;
}

/// A uniqueness claim as stored: its kind, its value (a keyed hash, or clear before the
/// personal-data migration) and its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClaim {
    pub kind: String,
    pub value: String,
    pub user_id: UserId,
}

/// Held while a one-time migration runs ([`LogRewrite::one_time_lock`]); dropping it releases
/// the lock.
pub struct OneTimeLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl OneTimeLock {
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self(Box::new(held))
    }
}

/// The one rewrite of the log there is: sealing the personal data of events written before it
/// was sealed (`crate::personal_data::migration`), each batch in one transaction, recorded
/// once done. Nothing else ever changes a stored event.
#[async_trait]
pub trait LogRewrite: Send + Sync {
    /// Whether the named one-time migration has run.
    async fn one_time_done(&self, name: &str) -> Result<bool, StoreError>;
    /// Records that it has.
    async fn record_one_time(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Forgets that record (a flag, such as "rebuild pending", once acted on).
    async fn forget_one_time(&self, name: &str) -> Result<(), StoreError>;
    /// Serialises one-time migrations across instances: held until dropped. PostgreSQL: a
    /// session advisory lock on a connection of its own (closed, so released, on drop or a
    /// crash); SQLite: an exclusive lock on a file beside the database.
    async fn one_time_lock(&self) -> Result<OneTimeLock, StoreError>;
    /// Rewrites the database so that no free page keeps a deleted row: SQLite's `VACUUM`
    /// (`secure_delete` only zeroes what is deleted after it was turned on). PostgreSQL: nothing
    /// (see docs/security.md §6: dead tuples stay until its own VACUUM).
    async fn compact(&self) -> Result<(), StoreError>;
    /// Replaces the payload, metadata and schema version of stored events (by position).
    async fn rewrite_events(&self, events: &[RecordedEvent]) -> Result<(), StoreError>;
    /// Every claim.
    async fn claims(&self) -> Result<Vec<StoredClaim>, StoreError>;
    /// Replaces claims' values: `(kind, old value, new value)`.
    async fn rekey_claims(&self, changes: &[(String, String, String)]) -> Result<(), StoreError>;
    /// Fills the phone look-up table from old events: `(user, keyed hash)`, replacing the
    /// user's entry.
    async fn put_phone_indexes(&self, entries: &[(UserId, String)]) -> Result<(), StoreError>;
    /// Every `(appid, openid)` the session-key vault holds a key for.
    async fn session_key_accounts(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Deletes session keys by their raw address `(appid, openid column)`: the one-time
    /// migration's way to drop rows still addressed by a clear openid.
    async fn drop_session_keys(&self, accounts: &[(String, String)]) -> Result<(), StoreError>;
}

/// An asynchronous image check submitted to WeChat (`media_check_async`), waiting for the
/// verdict WeChat pushes back naming its trace id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMediaCheck {
    pub appid: String,
    pub user_id: UserId,
    pub avatar_id: domain::AvatarId,
    pub created_at: DateTime<Utc>,
}

/// Pending media checks (`media_checks`). Per user, only those of images still stored (the
/// current avatar's, and uploads in flight: a replaced image's verdict no longer matters),
/// none older than the purge horizon, none of an erased user (deleted by the append of
/// `UserErased`): the table stays bounded.
#[async_trait]
pub trait MediaCheckStore: Send + Sync {
    /// Remembers `trace_id`, after forgetting the user's checks of images no longer stored and
    /// every check submitted before `purge_before` (WeChat answers within about 30 minutes).
    async fn record_media_check(
        &self,
        trace_id: &str,
        check: &PendingMediaCheck,
        purge_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The pending check `trace_id` of app `appid`, if any.
    async fn media_check(
        &self,
        appid: &str,
        trace_id: &str,
    ) -> Result<Option<PendingMediaCheck>, StoreError>;
    /// Forgets a check whose verdict was handled.
    async fn forget_media_check(&self, trace_id: &str) -> Result<(), StoreError>;
}

/// Everything the service keeps in its database.
#[async_trait]
pub trait Store:
    EventStore
    + LogRewrite
    + SessionKeyVault
    + SigningKeyStore
    + KeyringStore
    + ApiKeyStore
    + DataKeyStore
    + AvatarStore
    + NonceStore
    + RelayCheckpointStore
    + AttemptCounter
    + RejectionStore
    + MediaCheckStore
    + ConsoleSessionStore
{
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether the database takes writes, for readiness checks: true unless the last write
    /// failed for want of the database (a full disk, say) and none succeeded since; then a
    /// one-row probe write decides (so an instance that gets no traffic still finds out).
    async fn writes_work(&self) -> bool;
    /// `"postgres"` or `"sqlite"`.
    fn backend(&self) -> Backend;

    /// Leaves no older copy of deleted rows (an erased user's data key) in the database's
    /// files, as far as the backend allows. On SQLite freed pages are zeroed (`secure_delete`),
    /// but the WAL still holds the pages as they were: this copies it into the database and
    /// truncates it. PostgreSQL reuses dead tuples' space after `VACUUM` (autovacuum); what a
    /// logical dump shows is only live rows, so nothing is to be done there.
    async fn purge_deleted(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Changes after every append this process commits and, on PostgreSQL, whenever another
    /// instance announces one (`NOTIFY identity_events`). The value is the highest position
    /// known to be committed. A wake-up only: read the log to see what is new, and keep polling
    /// slowly as well (a notification can be lost, and on PostgreSQL a committed event becomes
    /// readable only once older transactions have ended).
    fn appended(&self) -> tokio::sync::watch::Receiver<i64>;
}

/// Opens the database named by the URL, creating a SQLite file if missing, and runs the
/// embedded migrations. Waits for PostgreSQL connections patiently (`PoolSettings::PATIENT`):
/// the service uses `connect_with` and its configured timeout.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    connect_with(url, &PoolSettings::PATIENT).await
}

/// `connect`, with the database waited for as `settings` say: PostgreSQL's pooled
/// connections, SQLite's locks held by another process and its read connections.
pub async fn connect_with(
    url: &str,
    settings: &PoolSettings,
) -> Result<Arc<dyn Store>, StoreError> {
    let url = DatabaseUrl::parse(url)?;
    Ok(match url.backend() {
        Backend::Postgres => Arc::new(PostgresStore::connect_with(&url, settings).await?),
        Backend::Sqlite => Arc::new(SqliteStore::connect_with(&url, settings).await?),
    })
}
