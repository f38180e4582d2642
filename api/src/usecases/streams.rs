//! Loading aggregates from their streams and wrapping decided events for the store. Personal
//! fields are opened as events are decoded and sealed as they are encoded
//! (`infra::personal_data::codec`), with the subject user's data key.

use chrono::{DateTime, Utc};
use domain::events::from_stored;
use domain::{
    AppId, DomainEvent, EventId, Metadata, Recorded, SealedPersonalData, Session, SessionEvent,
    SessionId, SessionLifetime, User, UserEvent, UserId,
};
use infra::personal_data::{open_event, seal_event, AccountKey, UserKey};
use infra::store::{EventStore, NewEvent, RecordedEvent};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::error::UseCaseError;
use super::services::Services;

/// Decodes a stream's events, opening their personal fields with `key` (without it they read
/// as placeholders: enough for state that holds no personal data, like a session's).
fn decode<E: DomainEvent + DeserializeOwned>(
    stored: &[RecordedEvent],
    key: Option<&UserKey>,
) -> Result<Vec<(Recorded, E)>, UseCaseError> {
    stored
        .iter()
        .map(|e| {
            let mut e = e.clone();
            open_event(&mut e, key);
            let event = from_stored::<E>(&e.event_type, &e.payload)
                .map_err(|err| {
                    anyhow::Error::new(err).context(format!("event {} undecodable", e.event_id))
                })
                .map_err(UseCaseError::Internal)?;
            let at = Recorded {
                position: e.position,
                occurred_at: e.occurred_at,
            };
            Ok((at, event))
        })
        .collect()
}

/// A user's state with their personal data opened, the number of events it was built from,
/// and their data key (`None` once erased) for sealing what is appended next and opening their
/// sealed fields (profile, phone, sessions' login fields) without reading it again.
#[derive(Debug)]
pub struct LoadedUser {
    pub user: User,
    pub version: usize,
    pub key: Option<UserKey>,
}

/// A user's state, personal data opened: the stream and the key in one read.
pub async fn load_user(state: &Services, id: UserId) -> Result<LoadedUser, UseCaseError> {
    let (stored, sealed_key) = state.store.load_streams_and_key(&[id.stream()], id).await?;
    let key = open_key(state, id, sealed_key)?;
    let (user, version) = user_from_stored(&stored, key.as_ref())?;
    Ok(LoadedUser { user, version, key })
}

fn open_key(
    state: &Services,
    id: UserId,
    sealed_key: Option<Vec<u8>>,
) -> Result<Option<UserKey>, UseCaseError> {
    state
        .personal_data
        .open_key(id, sealed_key.as_deref())
        .map_err(UseCaseError::internal)
}

/// The user's data key, to seal what is appended about them (`None` once erased).
pub async fn user_key(state: &Services, id: UserId) -> Result<Option<UserKey>, UseCaseError> {
    state
        .personal_data
        .key(state.store.as_ref(), id)
        .await
        .map_err(UseCaseError::internal)
}

/// A user's state from their stream's events, and how many there were.
pub fn user_from_stored(
    stored: &[RecordedEvent],
    key: Option<&UserKey>,
) -> Result<(User, usize), UseCaseError> {
    let events: Vec<(Recorded, UserEvent)> = decode(stored, key)?;
    let user = User::replay_recorded(events.iter().map(|(at, e)| (*at, e)));
    Ok((user, events.len()))
}

/// The session if it is that user's and still in force at `now` (`Session::in_force`: active,
/// within its lifetimes, its user in good standing and not blocked or unblocked since it
/// began), with the user: both streams and the user's data key in one read (an access token
/// names both streams; the request opens what it shows with the key).
pub async fn load_session_of_user_in_force(
    state: &Services,
    id: SessionId,
    user_id: UserId,
    now: DateTime<Utc>,
    lifetime: &SessionLifetime,
) -> Result<Option<(Session, usize, LoadedUser)>, UseCaseError> {
    let (session_stream, user_stream) = (id.stream(), user_id.stream());
    let streams = [session_stream.clone(), user_stream];
    let (stored, sealed_key) = state.store.load_streams_and_key(&streams, user_id).await?;
    let key = open_key(state, user_id, sealed_key)?;
    let (session_events, user_events): (Vec<RecordedEvent>, Vec<RecordedEvent>) = stored
        .into_iter()
        .partition(|e| e.stream_id == session_stream);
    let (session, version) = session_from_stored(&session_events)?;
    if session.user_id() != Some(user_id) {
        return Ok(None);
    }
    let (user, user_version) = user_from_stored(&user_events, key.as_ref())?;
    if !session.in_force(&user, now, lifetime) {
        return Ok(None);
    }
    let user = LoadedUser {
        user,
        version: user_version,
        key,
    };
    Ok(Some((session, version, user)))
}

pub async fn load_session(
    store: &dyn EventStore,
    id: SessionId,
) -> Result<(Session, usize), UseCaseError> {
    session_from_stored(&store.load_stream(&id.stream()).await?)
}

/// A session's state from its stream's events, and how many there were. The state holds no
/// personal data, so nothing is opened.
fn session_from_stored(stored: &[RecordedEvent]) -> Result<(Session, usize), UseCaseError> {
    let events: Vec<(Recorded, SessionEvent)> = decode(stored, None)?;
    let session = Session::replay(events.iter().map(|(at, e)| (*at, e)));
    Ok((session, events.len()))
}

/// Wraps decided events for the store, their personal fields sealed under the subject's key
/// (`None`: the subject was erased, and personal fields are left out).
pub fn to_new_events<E: DomainEvent>(
    events: &[E],
    metadata: &Metadata,
    now: DateTime<Utc>,
    key: Option<&UserKey>,
) -> Result<Vec<NewEvent>, UseCaseError> {
    events
        .iter()
        .map(|event| {
            let (event_type, payload) =
                domain::events::to_stored(event).map_err(UseCaseError::internal)?;
            let mut wrapped = NewEvent {
                event_id: EventId::from_uuid(Uuid::now_v7()),
                event_type,
                schema_version: event.schema_version(),
                occurred_at: now,
                payload,
                metadata: metadata.clone(),
            };
            seal_event(&mut wrapped, key);
            Ok(wrapped)
        })
        .collect()
}

/// Opens one sealed field of the user with their data key as loaded (`LoadedUser::key`);
/// `None` once erased (no key).
pub fn open_with(
    key: Option<&UserKey>,
    sealed: &SealedPersonalData,
) -> Result<Option<Value>, UseCaseError> {
    key.map(|key| key.open(&sealed.0))
        .transpose()
        .map_err(UseCaseError::internal)
}

/// The AAD binding a sealed `session_key` to its row: the app and the account's keyed hash
/// (`LookupIndex::account`), which addresses the row. A row is re-sealed by its own columns
/// (`identityd keys rotate-master --new-root`), without the openid in clear.
pub fn session_key_context(appid: &AppId, account: &AccountKey) -> String {
    format!("{appid}:{}", account.as_str())
}
