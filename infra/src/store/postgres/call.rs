//! `append_event_batches`' arguments (migration 0017; 0020 keeps them): every batch of a group
//! in flat arrays, cut by cumulative ends; per batch streams in lock order, events in batch order, claims
//! sorted, and the side writes the function takes inline.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::Postgres;
use uuid::Uuid;

use crate::store::prepared::{metadata_to_json, schema_version_to_db, PreparedAppend};
use crate::store::{AppendError, ExpectedVersion, SideWrite};

/// One row per committed event (batch, position, version, no refusal) or per refused batch
/// (batch, no event, the error's code, message, detail and constraint).
pub(super) type ResultRow = (
    i32,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(super) const APPEND_EVENT_BATCHES: &str =
    "SELECT batch, event_position, event_stream_version, \
     refusal_code, refusal_message, refusal_detail, refusal_constraint \
     FROM append_event_batches($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
     $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)";

/// The side writes a batch's arguments carry: its first session key and its first data key.
/// Any other goes beside the call (see `append::goes_alone`).
pub(super) struct Inline<'a> {
    pub session_key: Option<(&'a str, &'a str, &'a [u8])>,
    pub data_key: Option<(Uuid, &'a [u8])>,
    pub beside: Vec<&'a SideWrite>,
}

impl<'a> Inline<'a> {
    pub fn of(writes: &'a [SideWrite]) -> Self {
        let mut inline = Self {
            session_key: None,
            data_key: None,
            beside: Vec::new(),
        };
        for write in writes {
            match write {
                SideWrite::SessionKey {
                    appid,
                    account,
                    sealed,
                } if inline.session_key.is_none() => {
                    inline.session_key =
                        Some((appid.as_str(), account.as_str(), sealed.as_slice()));
                }
                SideWrite::DataKey { user, sealed } if inline.data_key.is_none() => {
                    inline.data_key = Some((user.as_uuid(), sealed.as_slice()));
                }
                other => inline.beside.push(other),
            }
        }
        inline
    }
}

#[derive(Default)]
pub(super) struct GroupCall<'a> {
    stream_ends: Vec<i32>,
    event_ends: Vec<i32>,
    claim_ends: Vec<i32>,
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
    release_users: Vec<Option<Uuid>>,
    claim_kinds: Vec<&'static str>,
    claim_values: Vec<&'a str>,
    claim_owners: Vec<Uuid>,
    session_key_appids: Vec<Option<&'a str>>,
    session_key_openids: Vec<Option<&'a str>>,
    session_key_sealeds: Vec<Option<&'a [u8]>>,
    data_key_users: Vec<Option<Uuid>>,
    data_key_sealeds: Vec<Option<&'a [u8]>>,
}

impl<'a> GroupCall<'a> {
    pub fn batches(&self) -> usize {
        self.stream_ends.len()
    }

    /// Adds a batch (its side writes beyond what `Inline` takes are left out: the caller
    /// runs them). Nothing is added when it cannot be put into SQL.
    pub fn push(&mut self, prepared: &'a PreparedAppend) -> Result<(), AppendError> {
        let mut schema_versions = Vec::with_capacity(prepared.event_count());
        let mut metadatas = Vec::with_capacity(prepared.event_count());
        for (_, event, _) in prepared.events_with_later() {
            schema_versions.push(schema_version_to_db(event.schema_version)?);
            metadatas.push(metadata_to_json(&event.metadata)?);
        }
        let ends = [
            end(self.stream_ids.len() + prepared.streams.len())?,
            end(self.event_ids.len() + prepared.event_count())?,
            end(self.claim_kinds.len() + prepared.claims.len())?,
        ];
        self.schema_versions.extend(schema_versions);
        self.metadatas.extend(metadatas);

        for stream in prepared.lock_order.iter().map(|&i| &prepared.streams[i]) {
            self.stream_ids.push(stream.stream_id.as_str());
            let (expectation, version) = match stream.expected {
                ExpectedVersion::NoStream => ("none", 0),
                ExpectedVersion::Exactly(v) => ("exactly", v),
                ExpectedVersion::Any => ("any", 0),
            };
            self.expectations.push(expectation);
            self.expected_versions.push(version);
            self.added.push(stream.events.len() as i64);
        }
        for (stream, event, later) in prepared.events_with_later() {
            self.event_ids.push(event.event_id.as_uuid());
            self.event_streams.push(stream.stream_id.as_str());
            self.event_back.push(later);
            self.event_types.push(event.event_type.as_str());
            self.occurred_ats.push(event.occurred_at.trunc_subsecs(6));
            self.payloads.push(&event.payload);
        }
        for claim in &prepared.claims {
            self.claim_kinds.push(claim.kind);
            self.claim_values.push(claim.value.as_str());
            self.claim_owners.push(claim.owner.as_uuid());
        }
        self.release_users
            .push(prepared.release_claims_of.map(|u| u.as_uuid()));
        let inline = Inline::of(&prepared.side_writes);
        let key = inline.session_key;
        self.session_key_appids.push(key.map(|(appid, _, _)| appid));
        self.session_key_openids
            .push(key.map(|(_, account, _)| account));
        self.session_key_sealeds
            .push(key.map(|(_, _, sealed)| sealed));
        self.data_key_users
            .push(inline.data_key.map(|(user, _)| user));
        self.data_key_sealeds
            .push(inline.data_key.map(|(_, sealed)| sealed));

        let [streams, events, claims] = ends;
        self.stream_ends.push(streams);
        self.event_ends.push(events);
        self.claim_ends.push(claims);
        Ok(())
    }

    pub fn query(self) -> QueryAs<'a, Postgres, ResultRow, PgArguments> {
        sqlx::query_as(APPEND_EVENT_BATCHES)
            .bind(self.stream_ends)
            .bind(self.event_ends)
            .bind(self.claim_ends)
            .bind(self.stream_ids)
            .bind(self.expectations)
            .bind(self.expected_versions)
            .bind(self.added)
            .bind(self.event_ids)
            .bind(self.event_streams)
            .bind(self.event_back)
            .bind(self.event_types)
            .bind(self.schema_versions)
            .bind(self.occurred_ats)
            .bind(self.payloads)
            .bind(self.metadatas)
            .bind(self.release_users)
            .bind(self.claim_kinds)
            .bind(self.claim_values)
            .bind(self.claim_owners)
            .bind(self.session_key_appids)
            .bind(self.session_key_openids)
            .bind(self.session_key_sealeds)
            .bind(self.data_key_users)
            .bind(self.data_key_sealeds)
    }
}

/// A cumulative end, as the function's `integer` arrays hold it.
fn end(rows: usize) -> Result<i32, AppendError> {
    i32::try_from(rows)
        .map_err(|_| crate::store::StoreError::Corrupt(format!("{rows} rows in one call")).into())
}
