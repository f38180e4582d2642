//! How PostgreSQL stores what the backends store differently (see `store::shared::Codec`):
//! times as `timestamptz`, user ids as `uuid`, JSON as `jsonb`; `LOCK TABLE` keeps writers
//! out of tables a transaction rewrites.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgQueryResult, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::database_url::Backend;
use crate::store::shared::{Codec, Coded, Query};
use crate::store::StoreError;

impl Codec for Postgres {
    const BACKEND: Backend = Backend::Postgres;
    const BEGIN_WRITE: Option<&'static str> = None;

    /// `EXCLUSIVE` still lets readers in.
    fn lock_tables(tables: &[&str]) -> Option<String> {
        (!tables.is_empty()).then(|| format!("LOCK TABLE {} IN EXCLUSIVE MODE", tables.join(", ")))
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn bind<'q>(query: Query<'q, Self>, value: Coded<'q>) -> Query<'q, Self> {
        match value {
            Coded::Time(v) => query.bind(v),
            Coded::OptTime(v) => query.bind(v),
            Coded::User(v) => query.bind(v.as_uuid()),
            Coded::Uuid(v) => query.bind(v),
            Coded::Json(v) => query.bind(v),
        }
    }

    fn time(row: &PgRow, i: usize) -> Result<DateTime<Utc>, StoreError> {
        Ok(row.try_get(i)?)
    }

    fn opt_time(row: &PgRow, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(row.try_get(i)?)
    }

    fn uuid(row: &PgRow, i: usize) -> Result<Uuid, StoreError> {
        Ok(row.try_get(i)?)
    }

    fn json<T: DeserializeOwned>(row: &PgRow, i: usize) -> Result<T, StoreError> {
        row.try_get::<Json<T>, _>(i)
            .map(|json| json.0)
            .map_err(|e| StoreError::Corrupt(format!("JSON column {i}: {e}")))
    }
}
