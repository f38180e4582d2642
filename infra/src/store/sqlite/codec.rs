//! How SQLite stores what the backends store differently (see `store::shared::Codec`): times
//! as fixed-width RFC 3339 UTC text (so they also sort as text), user ids and JSON as text.
//! Its write transactions begin `IMMEDIATE`, which takes the database's one write lock.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use sqlx::sqlite::{SqliteQueryResult, SqliteRow};
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use crate::database_url::Backend;
use crate::store::shared::{Codec, Coded, Query};
use crate::store::StoreError;

pub(super) fn time_to_db(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time_from_db(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("time {text:?}: {e}")))
}

impl Codec for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    /// IMMEDIATE takes the write lock up front, so the transaction never has to upgrade a read
    /// lock (which could fail with SQLITE_BUSY if another process were writing).
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");

    /// Nothing to add: `BEGIN IMMEDIATE` holds the whole database's write lock.
    fn lock_tables(_tables: &[&str]) -> Option<String> {
        None
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn bind<'q>(query: Query<'q, Self>, value: Coded<'q>) -> Query<'q, Self> {
        match value {
            Coded::Time(v) => query.bind(time_to_db(v)),
            Coded::OptTime(v) => query.bind(v.map(time_to_db)),
            Coded::User(v) => query.bind(v.to_string()),
            Coded::Uuid(v) => query.bind(v.to_string()),
            Coded::Json(v) => query.bind(v.to_string()),
        }
    }

    fn time(row: &SqliteRow, i: usize) -> Result<DateTime<Utc>, StoreError> {
        time_from_db(row.try_get(i)?)
    }

    fn opt_time(row: &SqliteRow, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        row.try_get::<Option<&str>, _>(i)?
            .map(time_from_db)
            .transpose()
    }

    fn uuid(row: &SqliteRow, i: usize) -> Result<Uuid, StoreError> {
        let text: &str = row.try_get(i)?;
        Uuid::try_parse(text).map_err(|e| StoreError::Corrupt(format!("uuid {text:?}: {e}")))
    }

    fn json<T: DeserializeOwned>(row: &SqliteRow, i: usize) -> Result<T, StoreError> {
        serde_json::from_str(row.try_get(i)?)
            .map_err(|e| StoreError::Corrupt(format!("JSON column {i}: {e}")))
    }
}
