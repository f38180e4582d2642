//! One append, one `BEGIN IMMEDIATE` transaction on the single write connection: bump each
//! stream's version against its expectation, insert the events, write the claims.

use sqlx::sqlite::{SqliteConnection, SqlitePool};

use super::time_to_db;
use crate::store::prepared::{metadata_to_json, schema_version_to_db, ClaimRow, PreparedAppend};
use crate::store::{
    AppendBatch, AppendError, ExpectedVersion, RecordedEvent, StoreError, StreamAppend,
};

pub(super) async fn append(
    pool: &SqlitePool,
    batch: AppendBatch,
) -> Result<Vec<RecordedEvent>, AppendError> {
    let prepared = PreparedAppend::new(batch);
    if prepared.is_empty() {
        return Ok(Vec::new());
    }
    // IMMEDIATE takes the write lock up front, so the transaction never has to upgrade a read
    // lock (which could fail with SQLITE_BUSY if another process were writing).
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    match write(&mut tx, prepared).await {
        Ok(events) => {
            tx.commit().await.map_err(db)?;
            Ok(events)
        }
        Err(e) => {
            // A failed rollback means a broken connection, which the pool discards anyway.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn write(
    conn: &mut SqliteConnection,
    prepared: PreparedAppend,
) -> Result<Vec<RecordedEvent>, AppendError> {
    let mut first_versions = vec![0; prepared.streams.len()];
    for &i in &prepared.lock_order {
        first_versions[i] = bump_version(conn, &prepared.streams[i]).await?;
    }
    let mut events = PreparedAppend::records(prepared.streams, &first_versions);
    for event in &mut events {
        event.position = insert_event(conn, event).await?;
    }
    if let Some(user) = prepared.release_claims_of {
        sqlx::query("DELETE FROM claims WHERE user_id = ?1")
            .bind(user.to_string())
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
    }
    insert_claims(conn, &prepared.claims).await?;
    if let Some(key) = &prepared.session_key {
        super::upsert_session_key(&mut *conn, &key.appid, &key.openid, &key.sealed)
            .await
            .map_err(db)?;
    }
    Ok(events)
}

/// Moves the stream's version past its new events if the expectation holds; returns the
/// version of the first new event.
async fn bump_version(
    conn: &mut SqliteConnection,
    stream: &StreamAppend,
) -> Result<i64, AppendError> {
    let id = stream.stream_id.as_str();
    let added = stream.events.len() as i64;
    let conflict = || AppendError::VersionConflict(stream.stream_id.clone());
    match stream.expected {
        ExpectedVersion::NoStream => {
            let done = sqlx::query(
                "INSERT INTO streams (stream_id, version) VALUES (?1, ?2) ON CONFLICT (stream_id) DO NOTHING",
            )
            .bind(id)
            .bind(added)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(conflict());
            }
            Ok(1)
        }
        ExpectedVersion::Exactly(version) => {
            let done = sqlx::query(
                "UPDATE streams SET version = ?3 WHERE stream_id = ?1 AND version = ?2",
            )
            .bind(id)
            .bind(version)
            .bind(version + added)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(conflict());
            }
            Ok(version + 1)
        }
        ExpectedVersion::Any => {
            let version: i64 = sqlx::query_scalar(
                "INSERT INTO streams (stream_id, version) VALUES (?1, ?2) \
                 ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + excluded.version \
                 RETURNING version",
            )
            .bind(id)
            .bind(added)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
            Ok(version - added + 1)
        }
    }
}

/// Inserts one event and returns its position. (Statements are cached per connection, so
/// row-at-a-time costs little in SQLite.)
async fn insert_event(
    conn: &mut SqliteConnection,
    event: &RecordedEvent,
) -> Result<i64, AppendError> {
    let position = sqlx::query_scalar(
        "INSERT INTO events \
         (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING position",
    )
    .bind(event.event_id.to_string())
    .bind(event.stream_id.as_str())
    .bind(event.stream_version)
    .bind(&event.event_type)
    .bind(schema_version_to_db(event.schema_version)?)
    .bind(time_to_db(event.occurred_at))
    .bind(event.payload.to_string())
    .bind(metadata_to_json(&event.metadata)?.to_string())
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    Ok(position)
}

/// Claims already held by someone else refuse the whole append; a claim the same user already
/// holds is fine.
async fn insert_claims(
    conn: &mut SqliteConnection,
    claims: &[ClaimRow],
) -> Result<(), AppendError> {
    for claim in claims {
        let owner = claim.owner.to_string();
        let done = sqlx::query(
            "INSERT INTO claims (kind, value, user_id) VALUES (?1, ?2, ?3) ON CONFLICT (kind, value) DO NOTHING",
        )
        .bind(claim.kind)
        .bind(&claim.value)
        .bind(&owner)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            continue;
        }
        let holder: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM claims WHERE kind = ?1 AND value = ?2")
                .bind(claim.kind)
                .bind(&claim.value)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
        if holder.as_deref() != Some(owner.as_str()) {
            return Err(AppendError::ClaimTaken { kind: claim.kind });
        }
    }
    Ok(())
}

fn db(e: sqlx::Error) -> AppendError {
    AppendError::Store(StoreError::Database(e))
}
