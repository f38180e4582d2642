//! The one-time personal-data migration: the only rewrite of the log there is.
//!
//! Events written before personal data was sealed hold openids, unionids, client IPs, user
//! agents and block reasons in clear, and the claims table holds openids and unionids in clear.
//! This walks the log once, in position order, and
//!
//! - seals the personal fields ([`domain::personal::PERSONAL_FIELDS`]) and the metadata's client
//!   IP and user agent of every event of a user who still has a data key, making the key if
//!   the user never had one (keys used to be made at the first profile or phone share);
//! - blanks them for users who were erased (their key is gone: nothing could open them);
//! - strips the openid and client IP from `LoginRejected` (an app's stream: no one's key);
//! - strips `phone_index` from `PhoneNumberBound` (v1) and puts the living users' latest one
//!   (unless withdrawn since) in the phone look-up table, where erasure deletes it;
//! - re-keys the claims, and the WeChat session keys' addresses, to keyed hashes
//!   ([`super::LookupIndex`]);
//!
//! then `VACUUM`s SQLite (free pages may hold rows deleted before `secure_delete` was on),
//! empties its WAL of the old pages and records itself as done. It runs under a lock shared by
//! every instance ([`crate::store::LogRewrite::one_time_lock`]), and records
//! [`REBUILD_PENDING`] before its first rewrite, so a crash cannot skip the read models'
//! rebuild. An erased user never gets a key from it (nor from anything: migration 0015). Each batch is its
//! own transaction and every step is idempotent (sealed fields stay sealed, hashed claims stay
//! hashed), so a crash part-way is finished by the next run. Rewritten events get their type's
//! current `schema_version` (the store upcast them on reading). Read models built from the
//! clear events must be rebuilt afterwards: [`REBUILD_PENDING`] stays recorded until they are.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use domain::event_facts::StreamKind;
use domain::UserId;
use serde_json::Value;
use uuid::Uuid;

use super::codec::{blank_payload, seal_payload, PersonalKeys};
use super::{LookupIndex, PersonalData, PersonalDataError};
use crate::store::{RecordedEvent, Store};

/// The name it is recorded under.
pub const NAME: &str = "seal-personal-data";

/// Recorded before the first event is rewritten, forgotten once the read models are rebuilt
/// from the rewritten log (`api::startup::seal_personal_data`): a crash between the rewrite
/// and the rebuild leaves it, and the next start rebuilds.
pub const REBUILD_PENDING: &str = "rebuild-read-models-pending";

const PAGE: u32 = 500;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// It had run before: nothing was done.
    pub already_done: bool,
    pub events_sealed: u64,
    pub events_blanked: u64,
    pub rejections_stripped: u64,
    pub claims_rekeyed: u64,
    pub session_keys_dropped: u64,
    /// Living users' phone hashes moved from the log to the phone look-up table.
    pub phones_indexed: u64,
}

impl MigrationReport {
    pub fn rewrote_events(&self) -> bool {
        self.events_sealed + self.events_blanked + self.rejections_stripped > 0
    }
}

/// Whom an event's personal data belongs to.
enum Subject {
    User(UserId),
    /// An app's stream (`LoginRejected`): no one's key.
    App,
    None,
}

fn payload_uuid(event: &RecordedEvent, key: &str) -> Option<Uuid> {
    event
        .payload
        .get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::try_parse(s).ok())
}

/// Runs the migration unless it ran before.
pub async fn seal_personal_data(
    store: &dyn Store,
    data: &PersonalData,
    index: &LookupIndex,
    now: DateTime<Utc>,
) -> Result<MigrationReport, PersonalDataError> {
    let done = MigrationReport {
        already_done: true,
        ..MigrationReport::default()
    };
    if store.one_time_done(NAME).await? {
        return Ok(done);
    }
    // One instance at a time: a second one starting together waits, then finds it done.
    let _lock = store.one_time_lock().await?;
    if store.one_time_done(NAME).await? {
        return Ok(done);
    }
    let mut report = MigrationReport::default();
    let mut rebuild_recorded = false;

    // Who was erased: their events are blanked, never sealed under a new key.
    let mut erased = HashSet::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in page.iter().filter(|e| e.event_type == "UserErased") {
            erased.extend(StreamKind::User.id_in(event.stream_id.as_str()));
        }
    }

    let mut keys = PersonalKeys::new(data, store);
    // Each living user's bound phone, by its keyed hash (from v1 `PhoneNumberBound`): moved to
    // the look-up table, stripped from the log.
    let mut phones: HashMap<UserId, Option<String>> = HashMap::new();
    // A session's user, from its `UserLoggedIn` (always its stream's first event).
    let mut sessions: HashMap<Uuid, Uuid> = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        let mut rewritten = Vec::new();
        for event in page {
            if event.event_type == "UserLoggedIn" {
                if let (Some(session), Some(user)) = (
                    StreamKind::Session.id_in(event.stream_id.as_str()),
                    payload_uuid(&event, "user_id"),
                ) {
                    sessions.insert(session, user);
                }
            }
            let subject = match StreamKind::User.id_in(event.stream_id.as_str()) {
                Some(user) => Subject::User(UserId::from_uuid(user)),
                None => match StreamKind::Session
                    .id_in(event.stream_id.as_str())
                    .and_then(|s| sessions.get(&s))
                {
                    Some(user) => Subject::User(UserId::from_uuid(*user)),
                    None if event.stream_id.as_str().starts_with("app-") => Subject::App,
                    None => Subject::None,
                },
            };
            let mut changed = event.clone();
            if let (Subject::User(user), "PhoneNumberBound") = (&subject, event.event_type.as_str())
            {
                let hash = changed
                    .payload
                    .as_object_mut()
                    .and_then(|fields| fields.remove("phone_index"));
                if let Some(Value::String(hash)) = hash {
                    phones.insert(*user, Some(hash));
                }
            }
            if let (Subject::User(user), "AuthorizationRevoked") =
                (&subject, event.event_type.as_str())
            {
                if event.payload.get("authorization").and_then(Value::as_str) == Some("phone") {
                    phones.insert(*user, None);
                }
            }
            let counter = match subject {
                Subject::User(user) if erased.contains(&user.as_uuid()) => {
                    blank_payload(
                        &changed.event_type,
                        &mut changed.payload,
                        &mut changed.metadata,
                    );
                    &mut report.events_blanked
                }
                Subject::User(user) => {
                    let key = keys.get_or_create(user).await?;
                    seal_payload(
                        &changed.event_type,
                        &mut changed.payload,
                        &mut changed.metadata,
                        key,
                    );
                    &mut report.events_sealed
                }
                Subject::App => {
                    for field in ["openid", "client_ip"] {
                        if let Some(value) = changed.payload.get_mut(field) {
                            *value = Value::Null;
                        }
                    }
                    changed.metadata.client_ip = None;
                    changed.metadata.user_agent = None;
                    &mut report.rejections_stripped
                }
                Subject::None => continue,
            };
            if changed.payload != event.payload || changed.metadata != event.metadata {
                *counter += 1;
                rewritten.push(changed);
            }
        }
        if !rewritten.is_empty() {
            if !rebuild_recorded {
                store.record_one_time(REBUILD_PENDING, now).await?;
                rebuild_recorded = true;
            }
            store.rewrite_events(&rewritten).await?;
        }
    }

    let living_phones: Vec<(UserId, String)> = phones
        .into_iter()
        .filter(|(user, _)| !erased.contains(&user.as_uuid()))
        .filter_map(|(user, hash)| Some((user, hash?)))
        .collect();
    report.phones_indexed = living_phones.len() as u64;
    for chunk in living_phones.chunks(PAGE as usize) {
        store.put_phone_indexes(chunk).await?;
    }

    let rekeyed: Vec<(String, String, String)> = store
        .claims()
        .await?
        .into_iter()
        .filter(|c| !LookupIndex::is_hash(&c.value))
        .map(|c| {
            let hash = index.hash(&c.kind, &c.value);
            (c.kind, c.value, hash)
        })
        .collect();
    report.claims_rekeyed = rekeyed.len() as u64;
    for chunk in rekeyed.chunks(PAGE as usize) {
        store.rekey_claims(chunk).await?;
    }

    // WeChat session keys are addressed by the account's keyed hash now, and sealed bound to
    // that address; one sealed under the clear openid cannot be re-bound without the sealer,
    // so it is dropped: WeChat replaces it at the account's next `wx.login` anyway.
    let clear: Vec<(String, String)> = store
        .session_key_accounts()
        .await?
        .into_iter()
        .filter(|(_, openid)| !LookupIndex::is_hash(openid))
        .collect();
    report.session_keys_dropped = clear.len() as u64;
    store.drop_session_keys(&clear).await?;

    // Rows deleted before `secure_delete` was on (claims of users erased under the older
    // release, their data keys) still sit in SQLite's free pages: rewrite the file once.
    store.compact().await?;
    store.purge_deleted().await?;
    store.record_one_time(NAME, now).await?;
    Ok(report)
}
