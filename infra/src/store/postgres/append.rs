//! One append, one call of `append_events` (migration 0007), which is the whole transaction:
//! reserve positions (first, under the global lock), bump each stream's version against its
//! expectation, insert the events, write the claims and a login's session key. One round trip
//! per append instead of one per statement: on a shared machine PostgreSQL's cost per
//! statement, not per row, is what a login pays for.

use chrono::{DateTime, SubsecRound, Utc};
use domain::StreamId;
use sqlx::postgres::{PgDatabaseError, PgPool};
use sqlx::Postgres;
use uuid::Uuid;

use crate::store::prepared::{metadata_to_json, schema_version_to_db, PreparedAppend};
use crate::store::shared::Driver;
use crate::store::{
    AppendBatch, AppendError, ExpectedVersion, RecordedEvent, SideWrite, StoreError,
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
    let call = Call::new(&prepared)?;
    // A login's session key rides in `append_events`' own parameters, so a login stays one
    // round trip; any other side write (a phone's look-up entry: rare) runs beside the call,
    // in one transaction with it.
    let (key, beside) = inline_session_key(&prepared.side_writes);
    // The call is the whole (implicit) transaction: see migration 0007.
    let query = sqlx::query_as::<_, (i64, i64)>(
        "SELECT event_position, event_stream_version FROM append_events(\
         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(call.stream_ids)
    .bind(call.expectations)
    .bind(call.expected_versions)
    .bind(call.added)
    .bind(call.event_ids)
    .bind(call.event_streams)
    .bind(call.event_back)
    .bind(call.event_types)
    .bind(call.schema_versions)
    .bind(call.occurred_ats)
    .bind(call.payloads)
    .bind(call.metadatas)
    .bind(prepared.release_claims_of.map(|u| u.as_uuid()))
    .bind(call.claim_kinds)
    .bind(call.claim_values)
    .bind(call.claim_owners)
    .bind(key.map(|(appid, _, _)| appid))
    .bind(key.map(|(_, account, _)| account))
    .bind(key.map(|(_, _, sealed)| sealed));
    let refused = |e| refused(e, &prepared, conflict_on.clone());
    let mut written = if beside.is_empty() {
        query.fetch_all(pool).await.map_err(refused)?
    } else {
        let mut tx = crate::sql::begin(pool).await.map_err(refused)?;
        let written = query.fetch_all(&mut *tx).await.map_err(refused)?;
        for write in beside {
            let (sql, args) = write.statement();
            <Postgres as Driver>::run(&mut tx, sql, &args).await?;
        }
        tx.commit().await.map_err(refused)?;
        written
    };
    // Positions were reserved in batch order.
    written.sort_unstable();
    if written.len() != prepared.event_count() {
        return Err(StoreError::Corrupt(format!(
            "{} events written of {}",
            written.len(),
            prepared.event_count()
        ))
        .into());
    }
    Ok(prepared.into_records(written))
}

/// A session key as `append_events` takes it: appid, account, sealed key.
type InlineKey<'a> = (&'a str, &'a str, &'a [u8]);

/// The first session key of the side writes, as `append_events`' last three arguments
/// (appid, account, sealed), and the side writes left to run beside the call.
fn inline_session_key(writes: &[SideWrite]) -> (Option<InlineKey<'_>>, Vec<&SideWrite>) {
    let mut key = None;
    let mut beside = Vec::new();
    for write in writes {
        match write {
            SideWrite::SessionKey {
                appid,
                account,
                sealed,
            } if key.is_none() => key = Some((appid.as_str(), account.as_str(), sealed.as_slice())),
            other => beside.push(other),
        }
    }
    (key, beside)
}

/// `append_events`' arguments: streams in lock order, events in batch order, claims sorted.
struct Call<'a> {
    stream_ids: Vec<&'a str>,
    expectations: Vec<&'static str>,
    expected_versions: Vec<i64>,
    added: Vec<i64>,
    event_ids: Vec<Uuid>,
    event_streams: Vec<&'a str>,
    event_back: Vec<i64>,
    event_types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    occurred_ats: Vec<DateTime<Utc>>,
    payloads: Vec<&'a serde_json::Value>,
    metadatas: Vec<serde_json::Value>,
    claim_kinds: Vec<&'static str>,
    claim_values: Vec<&'a str>,
    claim_owners: Vec<Uuid>,
}

impl<'a> Call<'a> {
    fn new(prepared: &'a PreparedAppend) -> Result<Self, AppendError> {
        let streams = prepared.lock_order.iter().map(|&i| &prepared.streams[i]);
        let (mut stream_ids, mut expectations, mut expected_versions, mut added) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for stream in streams {
            stream_ids.push(stream.stream_id.as_str());
            let (expectation, version) = match stream.expected {
                ExpectedVersion::NoStream => ("none", 0),
                ExpectedVersion::Exactly(v) => ("exactly", v),
                ExpectedVersion::Any => ("any", 0),
            };
            expectations.push(expectation);
            expected_versions.push(version);
            added.push(stream.events.len() as i64);
        }

        let count = prepared.event_count();
        let mut call = Self {
            stream_ids,
            expectations,
            expected_versions,
            added,
            event_ids: Vec::with_capacity(count),
            event_streams: Vec::with_capacity(count),
            event_back: Vec::with_capacity(count),
            event_types: Vec::with_capacity(count),
            schema_versions: Vec::with_capacity(count),
            occurred_ats: Vec::with_capacity(count),
            payloads: Vec::with_capacity(count),
            metadatas: Vec::with_capacity(count),
            claim_kinds: prepared.claims.iter().map(|c| c.kind).collect(),
            claim_values: prepared.claims.iter().map(|c| c.value.as_str()).collect(),
            claim_owners: prepared.claims.iter().map(|c| c.owner.as_uuid()).collect(),
        };
        for (stream, event, later) in prepared.events_with_later() {
            call.event_ids.push(event.event_id.as_uuid());
            call.event_streams.push(stream.stream_id.as_str());
            call.event_back.push(later);
            call.event_types.push(event.event_type.as_str());
            call.schema_versions
                .push(schema_version_to_db(event.schema_version)?);
            call.occurred_ats.push(event.occurred_at.trunc_subsecs(6));
            call.payloads.push(&event.payload);
            call.metadatas.push(metadata_to_json(&event.metadata)?);
        }
        Ok(call)
    }
}

/// `append_events`' refusals (IA001, IA002) and the database errors that can only mean
/// "another writer changed these streams first".
fn refused(
    e: sqlx::Error,
    prepared: &PreparedAppend,
    conflict_on: Option<StreamId>,
) -> AppendError {
    if let sqlx::Error::Database(db_err) = &e {
        let detail = db_err
            .try_downcast_ref::<PgDatabaseError>()
            .and_then(PgDatabaseError::detail);
        match (db_err.code().as_deref(), detail) {
            (Some("IA001"), Some(stream)) => {
                return AppendError::VersionConflict(StreamId::from_stored(stream.to_owned()))
            }
            (Some("IA002"), Some(kind)) => {
                if let Some(claim) = prepared.claims.iter().find(|c| c.kind == kind) {
                    return AppendError::ClaimTaken { kind: claim.kind };
                }
            }
            _ => {}
        }
    }
    classify(db(e), conflict_on)
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
