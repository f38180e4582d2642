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
    user_from_stored(&store.load_stream(&id.stream()).await?)
}

/// A user's state from their stream's events, and how many there were.
pub fn user_from_stored(stored: &[RecordedEvent]) -> Result<(User, usize), ApiError> {
    let events: Vec<UserEvent> = decode(stored)?;
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

impl Standing {
    pub fn of(user: &User) -> Self {
        if user.erased {
            Self::Erased
        } else if user.blocked {
            Self::Blocked
        } else {
            Self::Good
        }
    }
}

pub async fn user_standing(store: &dyn EventStore, id: UserId) -> Result<Standing, ApiError> {
    let (user, _) = load_user(store, id).await?;
    Ok(Standing::of(&user))
}

/// The session if it is active and its user is not blocked.
pub async fn load_session_in_force(
    store: &dyn EventStore,
    id: SessionId,
) -> Result<Option<(Session, usize)>, ApiError> {
    Ok(load_session_and_user_in_force(store, id)
        .await?
        .map(|(session, version, _)| (session, version)))
}

/// The session if it is active and its user is not blocked, with that user (loaded for the
/// check).
pub async fn load_session_and_user_in_force(
    store: &dyn EventStore,
    id: SessionId,
) -> Result<Option<(Session, usize, User)>, ApiError> {
    let (session, version) = load_session(store, id).await?;
    let Some(user_id) = session.user_id().filter(|_| session.is_active()) else {
        return Ok(None);
    };
    let (user, _) = load_user(store, user_id).await?;
    Ok((Standing::of(&user) == Standing::Good).then_some((session, version, user)))
}

/// As `load_session_and_user_in_force`, for a caller who already knows the user (an access
/// token names both): both streams in one read. `None` also when the session is not that
/// user's.
pub async fn load_session_of_user_in_force(
    store: &dyn EventStore,
    id: SessionId,
    user_id: UserId,
) -> Result<Option<(Session, usize, User)>, ApiError> {
    let (session_stream, user_stream) = (id.stream(), user_id.stream());
    let stored = store
        .load_streams(&[session_stream.clone(), user_stream])
        .await?;
    let (session_events, user_events): (Vec<RecordedEvent>, Vec<RecordedEvent>) = stored
        .into_iter()
        .partition(|e| e.stream_id == session_stream);
    let (session, version) = session_from_stored(&session_events)?;
    if session.user_id() != Some(user_id) || !session.is_active() {
        return Ok(None);
    }
    let (user, _) = user_from_stored(&user_events)?;
    Ok((Standing::of(&user) == Standing::Good).then_some((session, version, user)))
}

pub async fn load_session(
    store: &dyn EventStore,
    id: SessionId,
) -> Result<(Session, usize), ApiError> {
    session_from_stored(&store.load_stream(&id.stream()).await?)
}

/// A session's state from its stream's events, and how many there were.
fn session_from_stored(stored: &[RecordedEvent]) -> Result<(Session, usize), ApiError> {
    let events: Vec<SessionEvent> = decode(stored)?;
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
