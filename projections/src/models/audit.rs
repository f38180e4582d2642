//! `audit_log`: every event, with who did what to whom and the payload's non-personal fields.
//! Session events name their user only in `UserLoggedIn`, so the projection keeps
//! `audit_sessions` (session → user) to give later session events their user as target.
//!
//! The details keep what the analytics allow-list keeps (`infra::analytics::redact_for_audit`),
//! so one policy decides what is personal: ids, reasons and flags stay; names, avatars, phone
//! numbers, regions, device strings, WeChat identifiers and encrypted blobs do not. A kept
//! field's sealed value (a block reason) stays sealed: the admin API opens it with the user's
//! data key, and nothing opens it after an erasure.

use std::collections::{BTreeSet, HashMap};

use infra::store::RecordedEvent;
use sqlx::AnyConnection;
use sqlx::Row;
use uuid::Uuid;

use crate::db::{bind, bound_placeholders, Rows, Val};
use crate::error::ProjectionError;
use crate::event::{self, USER_LOGGED_IN};
use crate::schema::{Col, Table};

pub(crate) const AUDIT_LOG: Table = Table {
    name: "audit_log",
    columns: &[
        ("position", Col::Int),
        ("occurred_at", Col::Int),
        ("actor", Col::Text),
        ("action", Col::Text),
        ("target", Col::Text),
        ("stream_id", Col::Text),
        ("appid", Col::TextNull),
        ("client_ip", Col::TextNull),
        ("details", Col::Text),
    ],
    key: &["position"],
    indexes: &[
        ("target", &["target", "occurred_at", "position"]),
        ("actor", &["actor", "occurred_at", "position"]),
        ("action", &["action", "occurred_at", "position"]),
        ("time", &["occurred_at", "position"]),
    ],
    write_indexes: &[],
};

pub(crate) const AUDIT_SESSIONS: Table = Table {
    name: "audit_sessions",
    columns: &[("session_id", Col::Text), ("user_id", Col::Text)],
    key: &["session_id"],
    indexes: &[],
    write_indexes: &[],
};

pub(crate) const TABLES: &[Table] = &[AUDIT_LOG, AUDIT_SESSIONS];

const LOAD_CHUNK: usize = 500;

pub(super) async fn apply(
    conn: &mut AnyConnection,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let mut sessions = session_users(conn, generation, events).await?;
    let mut log = Rows::new(&AUDIT_LOG, generation);
    let mut new_sessions = Rows::new(&AUDIT_SESSIONS, generation);
    for e in events {
        let session = event::stream_uuid(e, "session");
        if let (USER_LOGGED_IN, Some(session), Some(user)) = (
            e.event_type.as_str(),
            session,
            event::uuid_field(e, "user_id"),
        ) {
            if sessions.insert(session, user).is_none() {
                new_sessions.push([Val::from(session.to_string()), user.to_string().into()]);
            }
        }
        let target = event::user_of(e)
            .or_else(|| session.and_then(|s| sessions.get(&s).copied()))
            .map_or_else(|| e.stream_id.to_string(), |user| user.to_string());
        log.push([
            Val::from(e.position),
            event::micros(e.occurred_at).into(),
            e.metadata.actor.to_string().into(),
            e.event_type.as_str().into(),
            target.into(),
            e.stream_id.as_str().into(),
            event::appid(e).into(),
            event::client_ip(e).into(),
            infra::analytics::redact_for_audit(&e.payload)
                .to_string()
                .into(),
        ]);
    }
    log.insert(conn, "").await?;
    if !new_sessions.is_empty() {
        new_sessions
            .insert(conn, "ON CONFLICT (session_id) DO NOTHING")
            .await?;
    }
    Ok(())
}

/// The users of the batch's sessions that logged in before the batch.
async fn session_users(
    conn: &mut AnyConnection,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<HashMap<Uuid, Uuid>, ProjectionError> {
    let wanted: BTreeSet<String> = events
        .iter()
        .filter(|e| e.event_type != USER_LOGGED_IN)
        .filter_map(|e| event::stream_uuid(e, "session"))
        .map(|id| id.to_string())
        .collect();
    let wanted: Vec<String> = wanted.into_iter().collect();
    let mut found = HashMap::new();
    for chunk in wanted.chunks(LOAD_CHUNK) {
        let sql = format!(
            "SELECT session_id, user_id FROM {} WHERE session_id IN ({})",
            AUDIT_SESSIONS.physical(generation),
            bound_placeholders(conn, 1, chunk.len())
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == LOAD_CHUNK);
        for id in chunk {
            query = bind(query, Val::from(id.as_str()));
        }
        for row in query.fetch_all(&mut *conn).await? {
            let session: String = row.try_get(0)?;
            let user: String = row.try_get(1)?;
            if let (Ok(session), Ok(user)) = (Uuid::try_parse(&session), Uuid::try_parse(&user)) {
                found.insert(session, user);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use infra::analytics::{redact_for_audit, REDACTED};
    use serde_json::json;

    #[test]
    fn personal_fields_are_redacted_ids_and_reasons_kept() {
        let payload = json!({
            "user_id": "u1", "appid": "wx1", "reason": "spam", "is_new_user": true,
            "nickname": "张三", "avatar_url": "https://x", "phone_number": "+8613800000000",
            "city": "Shenzhen", "encrypted_profile": "AAAA", "device": "iPhone",
            "openid": "o_1", "unionid": "u_1", "phone_id": "p1",
            "profile": {"nickname": "n"}, "count": 3, "gone": null
        });
        let out = redact_for_audit(&payload);
        assert_eq!(out["user_id"], "u1");
        assert_eq!(out["appid"], "wx1");
        assert_eq!(out["reason"], "spam");
        assert_eq!(out["is_new_user"], true);
        for key in [
            "nickname",
            "avatar_url",
            "phone_number",
            "city",
            "encrypted_profile",
            "device",
            "openid",
            "unionid",
            "phone_id",
        ] {
            assert_eq!(out[key], REDACTED, "{key}");
        }
        assert_eq!(out["profile"]["nickname"], REDACTED);
        assert_eq!(out["count"], 3);
        assert!(out["gone"].is_null());
        assert!(!out.to_string().contains("张三"));
    }
}
