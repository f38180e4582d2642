//! Loading aggregates from their streams and wrapping decided events for the store.

use chrono::{DateTime, Utc};
use domain::events::from_stored;
use domain::{
    DomainEvent, EventId, Metadata, Session, SessionEvent, SessionId, User, UserEvent, UserId,
};
use infra::store::{EventStore, NewEvent, RecordedEvent};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::http::ApiError;

fn decode<E: DomainEvent + DeserializeOwned>(stored: &[RecordedEvent]) -> Result<Vec<E>, ApiError> {
    stored
        .iter()
        .map(|e| {
            from_stored::<E>(&e.event_type, &e.payload).map_err(|err| {
                ApiError::internal(anyhow::anyhow!("event {} undecodable: {err}", e.event_id))
            })
        })
        .collect()
}

/// A user's state and the number of events it was built from.
pub async fn load_user(store: &dyn EventStore, id: UserId) -> Result<(User, usize), ApiError> {
    let stored = store.load_stream(&id.stream()).await?;
    let events: Vec<UserEvent> = decode(&stored)?;
    Ok((User::replay(&events), events.len()))
}

/// Whether a user's sessions may work: a block or an erasure ends them at once, so every
/// authenticated request and refresh asks (user streams are short).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Good,
    Blocked,
    Erased,
}

pub async fn user_standing(store: &dyn EventStore, id: UserId) -> Result<Standing, ApiError> {
    let (user, _) = load_user(store, id).await?;
    Ok(if user.erased {
        Standing::Erased
    } else if user.blocked {
        Standing::Blocked
    } else {
        Standing::Good
    })
}

/// The session if it is active and its user is not blocked.
pub async fn load_session_in_force(
    store: &dyn EventStore,
    id: SessionId,
) -> Result<Option<(Session, usize)>, ApiError> {
    let (session, version) = load_session(store, id).await?;
    match session.user_id() {
        Some(user_id)
            if session.is_active() && user_standing(store, user_id).await? == Standing::Good =>
        {
            Ok(Some((session, version)))
        }
        _ => Ok(None),
    }
}

pub async fn load_session(
    store: &dyn EventStore,
    id: SessionId,
) -> Result<(Session, usize), ApiError> {
    let stored = store.load_stream(&id.stream()).await?;
    let events: Vec<SessionEvent> = decode(&stored)?;
    Ok((Session::replay(&events), events.len()))
}

/// Wraps decided events for the store.
pub fn to_new_events<E: DomainEvent>(
    events: &[E],
    metadata: &Metadata,
    now: DateTime<Utc>,
) -> Result<Vec<NewEvent>, ApiError> {
    events
        .iter()
        .map(|event| {
            let (event_type, payload) =
                domain::events::to_stored(event).map_err(ApiError::internal)?;
            Ok(NewEvent {
                event_id: EventId::from_uuid(Uuid::now_v7()),
                event_type,
                schema_version: event.schema_version(),
                occurred_at: now,
                payload,
                metadata: metadata.clone(),
            })
        })
        .collect()
}
