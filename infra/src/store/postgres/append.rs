//! One append, one transaction: reserve positions (first, under the global lock), bump each
//! stream's version against its expectation, insert the events, write the claims.

use chrono::{DateTime, Utc};
use domain::StreamId;
use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;

use crate::store::prepared::{metadata_to_json, schema_version_to_db, ClaimRow, PreparedAppend};
use crate::store::{
    AppendBatch, AppendError, ExpectedVersion, RecordedEvent, StoreError, StreamAppend,
};

pub(super) async fn append(
    pool: &PgPool,
    batch: AppendBatch,
) -> Result<Vec<RecordedEvent>, AppendError> {
    let prepared = PreparedAppend::new(batch);
    if prepared.is_empty() {
        return Ok(Vec::new());
    }
    let conflict_on = prepared.first_locked_stream();
    let mut tx = pool.begin().await.map_err(db)?;
    match write(&mut tx, prepared).await {
        Ok(events) => {
            tx.commit()
                .await
                .map_err(|e| classify(db(e), conflict_on))?;
            Ok(events)
        }
        Err(e) => {
            // A failed rollback means a broken connection, which the pool discards anyway.
            let _ = tx.rollback().await;
            Err(classify(e, conflict_on))
        }
    }
}

async fn write(
    conn: &mut PgConnection,
    prepared: PreparedAppend,
) -> Result<Vec<RecordedEvent>, AppendError> {
    // Must stay the transaction's first statement: it assigns the transaction id under the
    // same lock as the positions.
    let count = prepared.event_count();
    let wanted = i32::try_from(count)
        .map_err(|_| StoreError::Corrupt(format!("{count} events in one append")))?;
    let positions: Vec<i64> = if count == 0 {
        Vec::new()
    } else {
        sqlx::query_scalar("SELECT reserve_event_positions($1)")
            .bind(wanted)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?
    };
    if positions.len() != count {
        return Err(StoreError::Corrupt(format!(
            "reserved {} positions for {count} events",
            positions.len()
        ))
        .into());
    }

    let mut first_versions = vec![0; prepared.streams.len()];
    for &i in &prepared.lock_order {
        first_versions[i] = bump_version(conn, &prepared.streams[i]).await?;
    }

    let mut events = PreparedAppend::records(prepared.streams, &first_versions);
    for (event, position) in events.iter_mut().zip(positions) {
        event.position = position;
    }
    insert_events(conn, &events).await?;
    if let Some(user) = prepared.release_claims_of {
        sqlx::query("DELETE FROM claims WHERE user_id = $1")
            .bind(user.as_uuid())
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
/// version of the first new event. Zero rows touched means another writer got there first.
async fn bump_version(conn: &mut PgConnection, stream: &StreamAppend) -> Result<i64, AppendError> {
    let id = stream.stream_id.as_str();
    let added = stream.events.len() as i64;
    let conflict = || AppendError::VersionConflict(stream.stream_id.clone());
    match stream.expected {
        ExpectedVersion::NoStream => {
            let done = sqlx::query(
                "INSERT INTO streams (stream_id, version) VALUES ($1, $2) ON CONFLICT (stream_id) DO NOTHING",
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
                "UPDATE streams SET version = $3 WHERE stream_id = $1 AND version = $2",
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
                "INSERT INTO streams (stream_id, version) VALUES ($1, $2) \
                 ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version \
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

/// All events in one statement, one array per column.
async fn insert_events(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), AppendError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut positions = Vec::with_capacity(events.len());
    let mut event_ids = Vec::with_capacity(events.len());
    let mut stream_ids = Vec::with_capacity(events.len());
    let mut versions = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut schema_versions = Vec::with_capacity(events.len());
    let mut times: Vec<DateTime<Utc>> = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut metadata = Vec::with_capacity(events.len());
    for e in events {
        positions.push(e.position);
        event_ids.push(e.event_id.as_uuid());
        stream_ids.push(e.stream_id.as_str());
        versions.push(e.stream_version);
        types.push(e.event_type.as_str());
        schema_versions.push(schema_version_to_db(e.schema_version)?);
        times.push(e.occurred_at);
        payloads.push(e.payload.clone());
        metadata.push(metadata_to_json(&e.metadata)?);
    }
    sqlx::query(
        "INSERT INTO events \
         (position, event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata) \
         SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::integer[], \
                              $7::timestamptz[], $8::jsonb[], $9::jsonb[])",
    )
    .bind(positions)
    .bind(event_ids)
    .bind(stream_ids)
    .bind(versions)
    .bind(types)
    .bind(schema_versions)
    .bind(times)
    .bind(payloads)
    .bind(metadata)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Claims already held by someone else refuse the whole append; a claim the same user already
/// holds is fine (a user re-registering what is theirs).
async fn insert_claims(conn: &mut PgConnection, claims: &[ClaimRow]) -> Result<(), AppendError> {
    if claims.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = claims.iter().map(|c| c.kind).collect();
    let values: Vec<&str> = claims.iter().map(|c| c.value.as_str()).collect();
    let owners: Vec<Uuid> = claims.iter().map(|c| c.owner.as_uuid()).collect();
    // Rows go in in sorted order, so rival appends wait on each other rather than deadlock.
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO claims (kind, value, user_id) SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[]) \
         ON CONFLICT (kind, value) DO NOTHING RETURNING kind, value",
    )
    .bind(kinds)
    .bind(values)
    .bind(owners)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    if inserted.len() == claims.len() {
        return Ok(());
    }
    for claim in claims {
        if inserted
            .iter()
            .any(|(k, v)| k == claim.kind && *v == claim.value)
        {
            continue;
        }
        // A new statement, so a new snapshot: it sees the rival's committed row that made the
        // insert skip this claim.
        let holder: Option<Uuid> =
            sqlx::query_scalar("SELECT user_id FROM claims WHERE kind = $1 AND value = $2")
                .bind(claim.kind)
                .bind(&claim.value)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
        if holder != Some(claim.owner.as_uuid()) {
            return Err(AppendError::ClaimTaken { kind: claim.kind });
        }
    }
    Ok(())
}

fn db(e: sqlx::Error) -> AppendError {
    AppendError::Store(StoreError::Database(e))
}

/// Database errors that can only mean "another writer changed these streams first" become a
/// version conflict, which callers answer by reloading and deciding again. The database does
/// not say which stream, so the first one in lock order is named.
fn classify(err: AppendError, conflict_on: Option<StreamId>) -> AppendError {
    let AppendError::Store(StoreError::Database(sqlx::Error::Database(db_err))) = &err else {
        return err;
    };
    let concurrent = match db_err.code().as_deref() {
        // Serialization failure, deadlock.
        Some("40001" | "40P01") => true,
        // Unique violation on a stream's versions.
        Some("23505") => matches!(
            db_err.constraint(),
            Some("events_stream_version_unique" | "streams_pkey")
        ),
        _ => false,
    };
    match conflict_on {
        Some(stream) if concurrent => AppendError::VersionConflict(stream),
        _ => err,
    }
}
