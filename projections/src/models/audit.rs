//! `audit_log`: every event, with who did what to whom and the payload's non-personal fields.
//! Session events name their user only in `UserLoggedIn`, so the projection keeps
//! `audit_sessions` (session → user) to give later session events their user as target.
//!
//! What the entry shows of the event (its app, client IP and details) is its audit view
//! (`infra::analytics::audit_view`), read from the one table of event facts
//! (`domain::event_facts`) that the analytics stream reads too: ids, fixed reasons and flags
//! stay; names, avatars, phone numbers, regions, device strings, WeChat identifiers and
//! encrypted blobs do not. A block reason and the client IP stay sealed: the admin API opens
//! them with the user's data key, and nothing opens them after an erasure.

use std::collections::{BTreeSet, HashMap};

use infra::analytics::audit_view;
use infra::store::RecordedEvent;
use sqlx::Row;
use uuid::Uuid;

use super::for_ids;
use crate::db::{Rows, Tx};
use crate::error::ProjectionError;
use crate::event::{self, USER_LOGGED_IN};
use crate::table::{table, Table};

table! {
    /// One entry per event.
    pub(crate) struct AuditEntry as AUDIT_LOG = "audit_log" {
        position: i64,
        occurred_at: i64,
        actor: String,
        action: String,
        target: String,
        stream_id: String,
        appid: Option<String>,
        client_ip: Option<String>,
        details: String,
    }
    key (position)
    indexes {
        target (target, occurred_at, position),
        actor (actor, occurred_at, position),
        action (action, occurred_at, position),
        time (occurred_at, position),
    }
    write_indexes ()
}

table! {
    /// The user of each session, from its `UserLoggedIn`.
    pub(crate) struct SessionUser as AUDIT_SESSIONS = "audit_sessions" {
        session_id: String,
        user_id: String,
    }
    key (session_id)
    indexes {}
    write_indexes ()
}

pub(crate) const TABLES: &[Table] = &[AUDIT_LOG, AUDIT_SESSIONS];

pub(super) async fn apply(
    tx: &mut Tx,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let mut sessions = session_users(tx, generation, events).await?;
    let mut log = Rows::new(generation);
    let mut new_sessions = Rows::new(generation);
    for e in events {
        let session = event::session_stream(e);
        if let (USER_LOGGED_IN, Some(session), Some(user)) = (
            e.event_type.as_str(),
            session,
            event::uuid_field(e, "user_id"),
        ) {
            if sessions.insert(session, user).is_none() {
                new_sessions.push(SessionUser {
                    session_id: session.to_string(),
                    user_id: user.to_string(),
                });
            }
        }
        let target = event::user_of(e)
            .or_else(|| session.and_then(|s| sessions.get(&s).copied()))
            .map_or_else(|| e.stream_id.to_string(), |user| user.to_string());
        let view = audit_view(e);
        log.push(AuditEntry {
            position: e.position,
            occurred_at: event::micros(e.occurred_at),
            actor: e.metadata.actor.to_string(),
            action: e.event_type.clone(),
            target,
            stream_id: e.stream_id.as_str().to_owned(),
            appid: view.appid,
            client_ip: view.client_ip,
            details: view.details.to_string(),
        });
    }
    log.append(tx).await?;
    if !new_sessions.is_empty() {
        new_sessions
            .insert(tx, "ON CONFLICT (session_id) DO NOTHING")
            .await?;
    }
    Ok(())
}

/// The users of the batch's sessions that logged in before the batch.
async fn session_users(
    tx: &mut Tx,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<HashMap<Uuid, Uuid>, ProjectionError> {
    let wanted: BTreeSet<String> = events
        .iter()
        .filter(|e| e.event_type != USER_LOGGED_IN)
        .filter_map(event::session_stream)
        .map(|id| id.to_string())
        .collect();
    let sql = format!(
        "SELECT session_id, user_id FROM {} WHERE session_id IN ({{ids}})",
        AUDIT_SESSIONS.physical(generation)
    );
    let mut found = HashMap::new();
    for row in for_ids(tx, &sql, wanted).await? {
        let session: String = row.try_get(0)?;
        let user: String = row.try_get(1)?;
        if let (Ok(session), Ok(user)) = (Uuid::try_parse(&session), Uuid::try_parse(&user)) {
            found.insert(session, user);
        }
    }
    Ok(found)
}
