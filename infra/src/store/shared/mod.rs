//! What both backends share: the store's SQL, written once. Every statement here runs on
//! PostgreSQL and SQLite alike (`$N` placeholders, `ON CONFLICT`, `RETURNING` and `excluded`
//! mean the same on both), so the side tables (session keys, signing keys, the keyring, data
//! keys, nonces, API keys, avatars, relay checkpoints, attempt counters, rejection tallies, the
//! one-time log rewrite) and the event store's plain reads exist once.
//!
//! What differs is kept per backend, in `postgres/` and `sqlite/`, behind two traits:
//!
//! - [`Codec`], for the sqlx database: how the types whose columns differ are stored (times:
//!   `timestamptz` or RFC 3339 text; user ids: `uuid` or text; JSON: `jsonb` or text), how a
//!   write transaction begins and locks tables;
//! - [`SqlStore`], for the store: its pools ([`Pools`]: SQLite reads on a read pool and writes on
//!   its one write connection, in the store file's write turn), and what truly differs: appends,
//!   the ordered reads of the log, the relay's and the one-time migrations' locks, the clock
//!   keys are dated by, compaction, wake-ups.
//!
//! A type implementing `SqlStore` is a whole [`Store`](super::Store): the blanket impls in this
//! module's children implement every store trait once for both.

mod api_keys;
mod avatars;
mod console_sessions;
mod data_keys;
mod events;
mod keyring;
mod media_checks;
mod relay;
mod rewrite;
mod run;
mod session_keys;
mod side_writes;
mod signing_keys;
mod tallies;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use domain::UserId;
use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use sqlx::{ColumnIndex, Database, Decode, Type};
use uuid::Uuid;

use super::signal::AppendSignal;
use super::{AppendBatch, AppendError, OneTimeLock, RecordedEvent, RelayLease, StoreError};
use crate::database_url::Backend;

pub(super) use events::event_columns;
pub(super) use relay::ADVANCE_RELAY;
pub(super) use run::{Driver, Pools, Sql, SqlTx, Tx};

/// A value bound to a shared statement. The kinds both databases store alike are bound as
/// they are; a [`Coded`] one goes through the backend's [`Codec`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    OptBytes(Option<&'a [u8]>),
    Int(i64),
    Coded(Coded<'a>),
}

/// The values whose column types differ between the backends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Coded<'a> {
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
    User(UserId),
    /// Any other id stored as `uuid` on PostgreSQL (an avatar's).
    Uuid(Uuid),
    Json(&'a serde_json::Value),
}

impl<'a> Arg<'a> {
    pub fn time(time: DateTime<Utc>) -> Self {
        Self::Coded(Coded::Time(time))
    }

    pub fn opt_time(time: Option<DateTime<Utc>>) -> Self {
        Self::Coded(Coded::OptTime(time))
    }

    pub fn user(user: UserId) -> Self {
        Self::Coded(Coded::User(user))
    }

    pub fn uuid(id: Uuid) -> Self {
        Self::Coded(Coded::Uuid(id))
    }

    pub fn json(value: &'a serde_json::Value) -> Self {
        Self::Coded(Coded::Json(value))
    }
}

/// The query type the shared statements are built as.
pub(crate) type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// How a backend stores what the two store differently, and how its write transactions
/// begin. Implemented for `sqlx::Postgres` and `sqlx::Sqlite`.
pub(crate) trait Codec: Database {
    const BACKEND: Backend;
    /// The statement that begins a write transaction (`None`: a plain `BEGIN`).
    const BEGIN_WRITE: Option<&'static str>;
    /// The statement that keeps other writers out of `tables` until the transaction ends,
    /// if one is needed.
    fn lock_tables(tables: &[&str]) -> Option<String>;
    fn rows_affected(result: &Self::QueryResult) -> u64;
    fn bind<'q>(query: Query<'q, Self>, value: Coded<'q>) -> Query<'q, Self>;
    fn time(row: &Self::Row, i: usize) -> Result<DateTime<Utc>, StoreError>;
    fn opt_time(row: &Self::Row, i: usize) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn uuid(row: &Self::Row, i: usize) -> Result<Uuid, StoreError>;
    fn json<T: DeserializeOwned>(row: &Self::Row, i: usize) -> Result<T, StoreError>;
}

/// A row of a shared statement, read by column index.
pub(crate) trait SqlRow: Send + Sync {
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError>;
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError>;
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn int32(&self, i: usize) -> Result<i32, StoreError>;
    fn time(&self, i: usize) -> Result<DateTime<Utc>, StoreError>;
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn uuid(&self, i: usize) -> Result<Uuid, StoreError>;
    fn user(&self, i: usize) -> Result<UserId, StoreError> {
        self.uuid(i).map(UserId::from_uuid)
    }
    fn json<T: DeserializeOwned>(&self, i: usize) -> Result<T, StoreError>;
}

impl<R> SqlRow for R
where
    R: sqlx::Row + Send + Sync,
    R::Database: Codec<Row = R>,
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i32: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn int32(&self, i: usize) -> Result<i32, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn time(&self, i: usize) -> Result<DateTime<Utc>, StoreError> {
        R::Database::time(self, i)
    }

    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        R::Database::opt_time(self, i)
    }

    fn uuid(&self, i: usize) -> Result<Uuid, StoreError> {
        R::Database::uuid(self, i)
    }

    fn json<T: DeserializeOwned>(&self, i: usize) -> Result<T, StoreError> {
        R::Database::json(self, i)
    }
}

/// A backend's store: what differs, for the shared code to build every store trait on.
#[async_trait]
pub(crate) trait SqlStore: Send + Sync + 'static {
    type Sql: Sql;

    /// Where the shared statements run.
    fn sql(&self) -> &Self::Sql;
    /// Wakes this process's log readers (see `Store::appended`).
    fn signal(&self) -> &AppendSignal;

    /// Writes the batch (see `EventStore::append`); the events as given, numbered.
    async fn write(&self, batch: AppendBatch) -> Result<Vec<RecordedEvent>, AppendError>;
    /// After events up to `position` committed and this process's readers were woken: tells
    /// other instances, where there can be any.
    fn announce(&self, _position: i64) {}
    /// Several streams' rows (`event_columns!()`, then `user`'s sealed data key or NULL), each
    /// stream's in version order, in one statement (see `EventStore::load_streams_and_key`).
    async fn load_stream_rows(
        &self,
        streams: &[domain::StreamId],
        user: domain::UserId,
    ) -> Result<Vec<<Self::Sql as Sql>::Row>, StoreError>;
    /// The log's rows (`event_columns!()`) after `after`, in position order, as the database
    /// returns them (see `EventStore::read_all_stream`).
    fn read_all_rows(
        &self,
        after: i64,
        limit: u32,
    ) -> BoxStream<'_, Result<<Self::Sql as Sql>::Row, sqlx::Error>>;
    /// See `Store::purge_deleted`.
    async fn purge_deleted(&self) -> Result<(), StoreError>;

    /// The clock keys are dated by: PostgreSQL's, the one every instance shares (not a CLI
    /// host's); on SQLite, with one instance, this host's is the database's.
    async fn now(&self) -> Result<DateTime<Utc>, StoreError>;
    /// See `RelayCheckpointStore::try_lock_relay`.
    async fn try_lock_relay(&self, name: &str) -> Result<Option<Box<dyn RelayLease>>, StoreError>;
    /// See `LogRewrite::one_time_lock`.
    async fn one_time_lock(&self) -> Result<OneTimeLock, StoreError>;
    /// See `LogRewrite::compact`.
    async fn compact(&self) -> Result<(), StoreError>;
}

/// Both databases keep microseconds: a time cut to them reads back equal.
fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// The one row a statement returned, if any.
fn first<R>(rows: Vec<R>) -> Option<R> {
    rows.into_iter().next()
}
