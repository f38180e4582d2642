//! `users` (one row per user: status, unionid, phone index, profile, times) and
//! `user_accounts` (the WeChat accounts `(appid, openid)` each user holds).
//!
//! A batch is folded in memory: the rows of the users it touches are loaded once, changed
//! event by event, and written back with one multi-row upsert, so a batch costs a few
//! statements however many events it holds.

use std::collections::{BTreeMap, BTreeSet};

use infra::store::RecordedEvent;
use serde_json::{Map, Value};
use sqlx::Row;
use uuid::Uuid;

use super::for_ids;
use crate::db::{Rows, Tx};
use crate::error::ProjectionError;
use crate::event::{self, *};
use crate::queries::uuid_at;
use crate::table::{table, Table};

table! {
    /// One user, as [`UserRow`] leaves it.
    pub(crate) struct StoredUser as USERS = "users" {
        user_id: String,
        status: String,
        unionid: Option<String>,
        phone_index: Option<String>,
        profile: Option<String>,
        created_at: i64,
        updated_at: i64,
        last_login_at: Option<i64>,
    }
    key (user_id)
    indexes {
        unionid (unionid),
        phone (phone_index),
        status (status, user_id),
    }
    write_indexes ()
}

table! {
    /// A WeChat account and the user holding it.
    pub(crate) struct Account as USER_ACCOUNTS = "user_accounts" {
        appid: String,
        openid: String,
        user_id: String,
        linked_at: i64,
    }
    key (appid, openid)
    indexes {
        user (user_id),
        openid (openid),
    }
    // Erasure deletes the user's accounts by `user_id`.
    write_indexes (user)
}

pub(crate) const TABLES: &[Table] = &[USERS, USER_ACCOUNTS];

pub(crate) const ACTIVE: &str = "active";
pub(crate) const BLOCKED: &str = "blocked";
pub(crate) const ERASED: &str = "erased";

#[derive(Debug, Clone)]
struct UserRow {
    status: String,
    unionid: Option<String>,
    phone_index: Option<String>,
    profile: Option<Map<String, Value>>,
    created_at: i64,
    updated_at: i64,
    last_login_at: Option<i64>,
    changed: bool,
}

pub(super) async fn apply(
    tx: &mut Tx,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let touched: BTreeSet<Uuid> = events.iter().filter_map(subject).collect();
    if touched.is_empty() {
        return Ok(());
    }
    let mut users = load(tx, generation, &touched).await?;
    let mut accounts = Rows::new(generation);
    let mut linked = BTreeSet::new();
    for e in events {
        let Some(id) = subject(e) else { continue };
        let at = event::micros(e.occurred_at);
        if e.event_type == USER_REGISTERED {
            users.entry(id).or_insert_with(|| UserRow {
                status: ACTIVE.to_owned(),
                unionid: None,
                phone_index: None,
                profile: None,
                created_at: at,
                updated_at: at,
                last_login_at: None,
                changed: true,
            });
        }
        // Events of users we never saw registered (a damaged log) are skipped.
        let Some(user) = users.get_mut(&id) else {
            continue;
        };
        if e.event_type == USER_LOGGED_IN {
            user.last_login_at = Some(user.last_login_at.map_or(at, |t| t.max(at)));
            user.changed = true;
            continue;
        }
        if !change(user, e) {
            continue;
        }
        user.updated_at = user.updated_at.max(at);
        user.changed = true;
        if e.event_type == USER_ERASED {
            // The person's accounts are free again (a later login registers a new user): write
            // what this batch linked so far, then drop the erased user's accounts.
            let pending = std::mem::replace(&mut accounts, Rows::new(generation));
            if !pending.is_empty() {
                pending
                    .insert(tx, "ON CONFLICT (appid, openid) DO NOTHING")
                    .await?;
            }
            let sql = format!(
                "DELETE FROM {} WHERE user_id = $1",
                USER_ACCOUNTS.physical(generation)
            );
            sqlx::query(&sql)
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?;
            linked.clear();
            continue;
        }
        if matches!(
            e.event_type.as_str(),
            USER_REGISTERED | WECHAT_ACCOUNT_LINKED
        ) {
            if let (Some(appid), Some(openid)) = (event::text(e, "appid"), event::text(e, "openid"))
            {
                if linked.insert((appid.to_owned(), openid.to_owned())) {
                    accounts.push(Account {
                        appid: appid.to_owned(),
                        openid: openid.to_owned(),
                        user_id: id.to_string(),
                        linked_at: at,
                    });
                }
            }
        }
    }
    save(tx, generation, users).await?;
    if !accounts.is_empty() {
        accounts
            .insert(tx, "ON CONFLICT (appid, openid) DO NOTHING")
            .await?;
    }
    Ok(())
}

/// The user whose row an event changes, if any.
fn subject(e: &RecordedEvent) -> Option<Uuid> {
    if e.event_type == USER_LOGGED_IN {
        return event::uuid_field(e, "user_id");
    }
    event::user_stream(e)
}

/// Applies a user-stream event to the row; false for events that change nothing here.
fn change(user: &mut UserRow, e: &RecordedEvent) -> bool {
    match e.event_type.as_str() {
        USER_REGISTERED | WECHAT_ACCOUNT_LINKED => {}
        UNIONID_LINKED => user.unionid = event::text(e, "unionid").map(str::to_owned),
        USER_BLOCKED if user.status == ACTIVE => user.status = BLOCKED.to_owned(),
        USER_UNBLOCKED if user.status == BLOCKED => user.status = ACTIVE.to_owned(),
        PROFILE_AUTHORIZED | PROFILE_UPDATED => merge_profile(user, e),
        // Carries the profile without the avatar only when the avatar was still the current one.
        // The nickname's review flag stays: the rejection is about the avatar only.
        AVATAR_REJECTED if e.payload.get("profile").is_some_and(Value::is_string) => {
            let review = user.profile.as_mut().and_then(|p| p.remove("review"));
            merge_profile(user, e);
            if let (Some(profile), Some(review)) = (user.profile.as_mut(), review) {
                profile.insert("review".into(), review);
            }
        }
        PHONE_NUMBER_BOUND => user.phone_index = event::text(e, "phone_index").map(str::to_owned),
        AUTHORIZATION_REVOKED => match revoked_scope(&e.payload) {
            Some("profile") => user.profile = None,
            Some("phone") => user.phone_index = None,
            _ => return false,
        },
        USER_ERASED => {
            user.status = ERASED.to_owned();
            user.profile = None;
            user.phone_index = None;
            user.unionid = None;
        }
        _ => return false,
    }
    true
}

/// Profile data comes sealed (`profile` is ciphertext under the user's data key, which only
/// the API can open), each event carrying the whole current profile: the row keeps
/// `{"sealed": …, "fields": […]}`, the newest replacing what came before, plus `"review": […]`
/// when the event flags fields WeChat's content check did not clear (until the next change).
fn merge_profile(user: &mut UserRow, e: &RecordedEvent) {
    let mut profile = Map::new();
    if let Some(sealed) = e.payload.get("profile").filter(|v| v.is_string()) {
        profile.insert("sealed".into(), sealed.clone());
    }
    let fields = e
        .payload
        .get("fields")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    profile.insert("fields".into(), fields);
    if let Some(review) = e
        .payload
        .get("review")
        .filter(|r| r.as_array().is_some_and(|r| !r.is_empty()))
    {
        profile.insert("review".into(), review.clone());
    }
    user.profile = Some(profile);
}

/// Which authorization was withdrawn: `profile` or `phone`.
fn revoked_scope(payload: &Value) -> Option<&str> {
    payload.get("authorization").and_then(Value::as_str)
}

async fn load(
    tx: &mut Tx,
    generation: i64,
    ids: &BTreeSet<Uuid>,
) -> Result<BTreeMap<Uuid, UserRow>, ProjectionError> {
    let sql = format!(
        "SELECT user_id, status, unionid, phone_index, profile, created_at, updated_at, \
         last_login_at FROM {} WHERE user_id IN ({{ids}})",
        USERS.physical(generation)
    );
    let mut users = BTreeMap::new();
    for row in for_ids(tx, &sql, ids.iter().map(Uuid::to_string)).await? {
        let id = uuid_at(&row, "user_id")?;
        let profile: Option<String> = row.try_get("profile")?;
        let profile = match profile {
            Some(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => Some(map),
                _ => return Err(ProjectionError::Corrupt(format!("profile of user {id}"))),
            },
            None => None,
        };
        users.insert(
            id,
            UserRow {
                status: row.try_get("status")?,
                unionid: row.try_get("unionid")?,
                phone_index: row.try_get("phone_index")?,
                profile,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                last_login_at: row.try_get("last_login_at")?,
                changed: false,
            },
        );
    }
    Ok(users)
}

async fn save(
    tx: &mut Tx,
    generation: i64,
    users: BTreeMap<Uuid, UserRow>,
) -> Result<(), ProjectionError> {
    let mut rows = Rows::new(generation);
    for (id, user) in users.into_iter().filter(|(_, u)| u.changed) {
        rows.push(StoredUser {
            user_id: id.to_string(),
            status: user.status,
            unionid: user.unionid,
            phone_index: user.phone_index,
            profile: user.profile.map(|p| Value::Object(p).to_string()),
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_login_at: user.last_login_at,
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    rows.insert(
        tx,
        "ON CONFLICT (user_id) DO UPDATE SET status = excluded.status, \
         unionid = excluded.unionid, phone_index = excluded.phone_index, \
         profile = excluded.profile, updated_at = excluded.updated_at, \
         last_login_at = excluded.last_login_at",
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{EventId, Metadata, StreamId};
    use serde_json::json;

    fn event(event_type: &str, payload: Value) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            event_id: EventId::from_uuid(Uuid::from_u128(1)),
            stream_id: StreamId::from_stored(format!("user-{}", Uuid::from_u128(2))),
            stream_version: 1,
            event_type: event_type.into(),
            schema_version: 1,
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            payload,
            metadata: Metadata::system(Uuid::from_u128(3)),
        }
    }

    fn row() -> UserRow {
        UserRow {
            status: ACTIVE.into(),
            unionid: None,
            phone_index: None,
            profile: None,
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
            changed: false,
        }
    }

    #[test]
    fn a_rejected_avatar_leaves_the_profile_as_the_event_states_it() {
        let mut user = row();
        let updated = event(
            PROFILE_UPDATED,
            json!({"profile": "pd1.with", "fields": ["avatar_url", "nickname"],
                   "avatar_id": Uuid::from_u128(9), "review": ["nickname"]}),
        );
        assert!(change(&mut user, &updated));
        let profile = Value::Object(user.profile.clone().unwrap());
        assert_eq!(
            profile,
            json!({"sealed": "pd1.with", "fields": ["avatar_url", "nickname"], "review": ["nickname"]})
        );
        // A rejection of an avatar no longer shown changes nothing.
        let stale = event(
            AVATAR_REJECTED,
            json!({"avatar_id": Uuid::from_u128(8), "label": 20002}),
        );
        assert!(!change(&mut user, &stale));
        let rejected = event(
            AVATAR_REJECTED,
            json!({"avatar_id": Uuid::from_u128(9), "label": 20002,
                   "profile": "pd1.without", "fields": ["nickname"]}),
        );
        assert!(change(&mut user, &rejected));
        assert_eq!(
            Value::Object(user.profile.unwrap()),
            json!({"sealed": "pd1.without", "fields": ["nickname"], "review": ["nickname"]})
        );
    }
}
