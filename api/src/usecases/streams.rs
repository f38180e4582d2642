//! Loading aggregates from their streams and wrapping decided events for the store.

use chrono::{DateTime, Utc};
use domain::events::from_stored;
use domain::{
    DomainEvent, EventId, Metadata, Recorded, Session, SessionEvent, SessionId, SessionLifetime,
    User, UserEvent, UserId,
};
use infra::store::{EventStore, NewEvent, RecordedEvent};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::http::ApiError;

fn decode<E: DomainEvent + DeserializeOwned>(
    stored: &[RecordedEvent],
) -> Result<Vec<(Recorded, E)>, ApiError> {
    stored
        .iter()
        .map(|e| {
            let event = from_stored::<E>(&e.event_type, &e.payload).map_err(|err| {
                ApiError::internal(anyhow::anyhow!("event {} undecodable: {err}", e.event_id))
            })?;
            let at = Recorded {
                position: e.position,
                occurred_at: e.occurred_at,
            };
            Ok((at, event))
        })
        .collect()
}

/// A user's state and the number of events it was built from.
pub async fn load_user(store: &dyn EventStore, id: UserId) -> Result<(User, usize), ApiError> {
    user_from_stored(&store.load_stream(&id.stream()).await?)
}

/// A user's state from their stream's events, and how many there were.
pub fn user_from_stored(stored: &[RecordedEvent]) -> Result<(User, usize), ApiError> {
    let events: Vec<(Recorded, UserEvent)> = decode(stored)?;
    let user = User::replay_recorded(events.iter().map(|(at, e)| (*at, e)));
    Ok((user, events.len()))
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

/// The session if it is that user's and still in force at `now` (`Session::in_force`: active,
/// within its lifetimes, its user in good standing and not blocked or unblocked since it
/// began), with the user: both streams in one read (an access token names both).
pub async fn load_session_of_user_in_force(
    store: &dyn EventStore,
    id: SessionId,
    user_id: UserId,
    now: DateTime<Utc>,
    lifetime: &SessionLifetime,
) -> Result<Option<(Session, usize, User)>, ApiError> {
    let (session_stream, user_stream) = (id.stream(), user_id.stream());
    let stored = store
        .load_streams(&[session_stream.clone(), user_stream])
        .await?;
    let (session_events, user_events): (Vec<RecordedEvent>, Vec<RecordedEvent>) = stored
        .into_iter()
        .partition(|e| e.stream_id == session_stream);
    let (session, version) = session_from_stored(&session_events)?;
    if session.user_id() != Some(user_id) {
        return Ok(None);
    }
    let (user, _) = user_from_stored(&user_events)?;
    Ok(session
        .in_force(&user, now, lifetime)
        .then_some((session, version, user)))
}

pub async fn load_session(
    store: &dyn EventStore,
    id: SessionId,
) -> Result<(Session, usize), ApiError> {
    session_from_stored(&store.load_stream(&id.stream()).await?)
}

/// A session's state from its stream's events, and how many there were.
fn session_from_stored(stored: &[RecordedEvent]) -> Result<(Session, usize), ApiError> {
    let events: Vec<(Recorded, SessionEvent)> = decode(stored)?;
    let session = Session::replay(events.iter().map(|(at, e)| (*at, e)));
    Ok((session, events.len()))
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
