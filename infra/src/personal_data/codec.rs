//! The one place personal fields of events are sealed and opened: events are sealed as they
//! are encoded for the store and opened as they are decoded, so the domain works with clear
//! values and the log only ever holds `pd1.` ciphertext under the subject's data key.
//!
//! [`domain::personal::PERSONAL_FIELDS`] lists, per event type, the payload fields that
//! identify a person; the metadata's `client_ip` and `user_agent` are sealed on every event
//! that has a subject (user and session streams). The profile and the phone, sealed by the use
//! cases, are not in that list. New events are sealed whole; only the one-time migration looks
//! at whether a field is sealed already, by opening it under the user's key.

use std::collections::HashMap;

use domain::personal::personal_fields;
use domain::{Metadata, UserId};
use serde_json::Value;

use super::{is_sealed, PersonalData, PersonalDataError, UserKey};
use crate::store::{DataKeyStore, NewEvent, RecordedEvent};

/// What an aggregate reads in place of a field whose key is gone (an erased user): a value of
/// the field's type that names nothing. Identifiers and reasons are strings; the rest optional.
const ERASED_TEXT: &str = "erased";
const ERASED_TEXT_FIELDS: &[&str] = &["openid", "unionid", "reason"];

fn sealed_str(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| is_sealed(s))
}

/// Whether a field is sealed: what counts is whether it opens under the user's key, not its
/// look. A clear value may well start with `pd1.` (an admin's reason, a User-Agent header).
fn already_sealed(value: &Value, key: &UserKey) -> bool {
    sealed_str(value).is_some_and(|s| key.open(s).is_ok())
}

fn seal_value(value: &mut Value, key: &UserKey, mode: Mode) {
    let skip = value.is_null() || (mode == Mode::Migrate && already_sealed(value, key));
    if !skip {
        *value = Value::String(key.seal(value).0);
    }
}

fn seal_text(text: &mut Option<String>, key: &UserKey, mode: Mode) {
    let Some(clear) = text.as_mut() else { return };
    if mode == Mode::Migrate && already_sealed(&Value::String(clear.clone()), key) {
        return;
    }
    *clear = key.seal(&Value::String(std::mem::take(clear))).0;
}

/// New events carry clear values only (the domain works with clear values; the profile and
/// the phone, sealed by the use cases, are not personal fields here): every field is sealed.
/// The migration meets both: it leaves alone what opens under the user's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    New,
    Migrate,
}

fn seal_fields(
    event_type: &str,
    payload: &mut Value,
    metadata: &mut Metadata,
    key: &UserKey,
    mode: Mode,
) {
    for field in personal_fields(event_type) {
        if let Some(value) = payload.get_mut(*field) {
            seal_value(value, key, mode);
        }
    }
    seal_text(&mut metadata.client_ip, key, mode);
    seal_text(&mut metadata.user_agent, key, mode);
}

/// Seals an old event's personal fields and the metadata's client IP and user agent under the
/// subject's key (the one-time migration). Idempotent: a field that opens under the key is
/// sealed already and stays as it is; anything else, whatever it looks like, is clear.
pub fn seal_payload(event_type: &str, payload: &mut Value, metadata: &mut Metadata, key: &UserKey) {
    seal_fields(event_type, payload, metadata, key, Mode::Migrate);
}

/// Replaces a payload's personal fields (sealed or not) with placeholders and drops the
/// metadata's client IP and user agent: for a subject whose key is gone.
pub fn blank_payload(event_type: &str, payload: &mut Value, metadata: &mut Metadata) {
    for field in personal_fields(event_type) {
        if let Some(value) = payload.get_mut(*field) {
            if !value.is_null() {
                *value = erased(field);
            }
        }
    }
    metadata.client_ip = None;
    metadata.user_agent = None;
}

/// Seals an event about to be appended under its subject's key: every personal field,
/// unconditionally (a clear value that happens to start with `pd1.` is sealed too). Without a key (the subject
/// was erased: a session of theirs being revoked) the personal fields are left out instead.
pub fn seal_event(event: &mut NewEvent, key: Option<&UserKey>) {
    match key {
        Some(key) => seal_fields(
            &event.event_type,
            &mut event.payload,
            &mut event.metadata,
            key,
            Mode::New,
        ),
        None => blank_payload(&event.event_type, &mut event.payload, &mut event.metadata),
    }
}

/// Opens a sealed value, or gives `None` when it cannot be opened: the key is gone (erased),
/// or the value was sealed under a key that is not this user's (tampering, logged).
fn open_value(sealed: &str, key: Option<&UserKey>) -> Option<Value> {
    let key = key?;
    match key.open(sealed) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(user_id = %key.user_id(), error = %err, "a sealed field does not open");
            None
        }
    }
}

/// Opens the metadata's client IP and user agent; unreadable ones become `None`.
pub fn open_metadata(metadata: &mut Metadata, key: Option<&UserKey>) {
    for text in [&mut metadata.client_ip, &mut metadata.user_agent] {
        if let Some(sealed) = text.as_deref().filter(|t| is_sealed(t)) {
            *text = open_value(sealed, key).and_then(|v| v.as_str().map(str::to_owned));
        }
    }
}

/// Opens a recorded event's personal fields with its subject's key (`None`: the key was
/// destroyed). A field that cannot be opened reads as a placeholder of its type
/// ([`ERASED_TEXT`] or null), so an erased user's stream still replays. Clear fields (events
/// written before sealing, none after the migration) pass through.
pub fn open_event(event: &mut RecordedEvent, key: Option<&UserKey>) {
    for field in personal_fields(&event.event_type) {
        if let Some(value) = event.payload.get_mut(*field) {
            if let Some(sealed) = sealed_str(value) {
                *value = open_value(sealed, key).unwrap_or_else(|| erased(field));
            }
        }
    }
    open_metadata(&mut event.metadata, key);
}

fn erased(field: &str) -> Value {
    if ERASED_TEXT_FIELDS.contains(&field) {
        Value::String(ERASED_TEXT.to_owned())
    } else {
        Value::Null
    }
}

/// Data keys opened during one request (or one migration), each read at most once.
pub struct PersonalKeys<'a> {
    data: &'a PersonalData,
    store: &'a dyn DataKeyStore,
    keys: HashMap<UserId, Option<UserKey>>,
}

impl<'a> PersonalKeys<'a> {
    pub fn new(data: &'a PersonalData, store: &'a dyn DataKeyStore) -> Self {
        Self {
            data,
            store,
            keys: HashMap::new(),
        }
    }

    /// The user's key, `None` when destroyed.
    pub async fn get(&mut self, user_id: UserId) -> Result<Option<&UserKey>, PersonalDataError> {
        if !self.keys.contains_key(&user_id) {
            let key = self.data.key(self.store, user_id).await?;
            self.keys.insert(user_id, key);
        }
        Ok(self.keys.get(&user_id).and_then(Option::as_ref))
    }

    /// The user's key, made if the user has none yet.
    pub async fn get_or_create(&mut self, user_id: UserId) -> Result<&UserKey, PersonalDataError> {
        if !matches!(self.keys.get(&user_id), Some(Some(_))) {
            let key = self.data.key_or_create(self.store, user_id).await?;
            self.keys.insert(user_id, Some(key));
        }
        Ok(self.keys[&user_id].as_ref().expect("just stored"))
    }

    /// Opens one sealed text (a read-model column); `None` when it does not open. Clear text
    /// passes through.
    pub async fn open_text(
        &mut self,
        user_id: UserId,
        text: Option<&str>,
    ) -> Result<Option<Value>, PersonalDataError> {
        let Some(text) = text else { return Ok(None) };
        if !is_sealed(text) {
            return Ok(Some(Value::String(text.to_owned())));
        }
        let key = self.get(user_id).await?;
        Ok(open_value(text, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Sealer;
    use chrono::Utc;
    use domain::{Actor, EventId, StreamId};
    use serde_json::json;
    use uuid::Uuid;

    fn key(user: u128) -> UserKey {
        UserKey {
            user_id: UserId::from_uuid(Uuid::from_u128(user)),
            sealer: Sealer::from_key(&[7u8; 32]),
        }
    }

    fn login() -> (Value, Metadata) {
        let payload = json!({
            "session_id": Uuid::from_u128(1), "user_id": Uuid::from_u128(2),
            "appid": "wx0123456789abcdef", "openid": "o_secret_openid", "is_new_user": false,
            "client_ip": "203.0.113.7",
            "device": {"user_agent": "Mozilla iPhone", "platform": "ios", "wechat_version": null},
        });
        let mut metadata = Metadata::system(Uuid::nil());
        metadata.actor = Actor::User(UserId::from_uuid(Uuid::from_u128(2)));
        metadata.client_ip = Some("203.0.113.7".into());
        metadata.user_agent = Some("Mozilla iPhone".into());
        (payload, metadata)
    }

    fn recorded(payload: Value, metadata: Metadata) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            event_id: EventId::from_uuid(Uuid::from_u128(3)),
            stream_id: StreamId::from_stored("session-x".into()),
            stream_version: 1,
            event_type: "UserLoggedIn".into(),
            schema_version: 3,
            occurred_at: Utc::now(),
            payload,
            metadata,
        }
    }

    #[test]
    fn personal_fields_are_sealed_and_open_again_with_the_key() {
        let (mut payload, mut metadata) = login();
        let clear = (payload.clone(), metadata.clone());
        seal_payload("UserLoggedIn", &mut payload, &mut metadata, &key(2));
        let stored = format!("{payload} {}", serde_json::to_string(&metadata).unwrap());
        for secret in ["o_secret_openid", "203.0.113.7", "Mozilla", "ios"] {
            assert!(!stored.contains(secret), "{secret} in {stored}");
        }
        // Ids, the app and flags stay readable.
        assert_eq!(payload["appid"], "wx0123456789abcdef");
        assert_eq!(payload["is_new_user"], false);
        // Sealing twice changes nothing.
        let once = payload.clone();
        seal_payload("UserLoggedIn", &mut payload, &mut metadata, &key(2));
        assert_eq!(payload, once);

        let mut event = recorded(payload, metadata);
        open_event(&mut event, Some(&key(2)));
        assert_eq!((event.payload, event.metadata), clear);
    }

    #[test]
    fn clear_values_that_look_sealed_are_sealed_all_the_same() {
        let mut metadata = Metadata::system(Uuid::nil());
        metadata.user_agent = Some("pd1.GhostAgent".into());
        let mut event = NewEvent {
            event_id: EventId::from_uuid(Uuid::from_u128(4)),
            event_type: "UserBlocked".into(),
            schema_version: 2,
            occurred_at: Utc::now(),
            payload: json!({"reason": "pd1. Dave Li"}),
            metadata: metadata.clone(),
        };
        seal_event(&mut event, Some(&key(2)));
        let stored = format!("{} {:?}", event.payload, event.metadata);
        assert!(!stored.contains("Dave Li"), "{stored}");
        assert!(!stored.contains("GhostAgent"), "{stored}");
        // The migration, too, seals what does not open under the user's key.
        let mut payload = json!({"reason": "pd1. Dave Li"});
        seal_payload("UserBlocked", &mut payload, &mut metadata, &key(2));
        assert!(!payload.to_string().contains("Dave Li"));
        assert_eq!(
            metadata.user_agent.as_deref().map(|a| a.contains("Ghost")),
            Some(false)
        );
        let mut opened = recorded(payload, metadata);
        opened.event_type = "UserBlocked".into();
        open_event(&mut opened, Some(&key(2)));
        assert_eq!(opened.payload["reason"], "pd1. Dave Li");
        assert_eq!(
            opened.metadata.user_agent.as_deref(),
            Some("pd1.GhostAgent")
        );
    }

    #[test]
    fn without_the_key_fields_read_as_placeholders() {
        let (mut payload, mut metadata) = login();
        seal_payload("UserLoggedIn", &mut payload, &mut metadata, &key(2));
        let mut erased = recorded(payload.clone(), metadata.clone());
        open_event(&mut erased, None);
        assert_eq!(erased.payload["openid"], ERASED_TEXT);
        assert!(erased.payload["client_ip"].is_null());
        assert!(erased.payload["device"].is_null());
        assert_eq!(erased.metadata.client_ip, None);
        assert_eq!(erased.metadata.user_agent, None);
        // Another user's key opens nothing either (fields are bound to their user).
        let mut other = recorded(payload, metadata);
        open_event(&mut other, Some(&key(9)));
        assert_eq!(other.payload["openid"], ERASED_TEXT);
    }

    #[test]
    fn events_without_personal_fields_keep_their_payload() {
        let mut payload = json!({"generation": 3});
        let mut metadata = Metadata::system(Uuid::nil());
        seal_payload("SessionRefreshed", &mut payload, &mut metadata, &key(1));
        assert_eq!(payload, json!({"generation": 3}));
        assert_eq!(personal_fields("UserRegistered"), &["openid"]);
        assert!(personal_fields("Unknown").is_empty());
    }
}
