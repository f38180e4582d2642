//! The analytics view of an event: what consumers outside the service (the HTTP event stream,
//! the NATS relay) see of the log. Identifiers, types, times and non-personal fields stay;
//! personal data is redacted.
//!
//! Redaction is an allow-list, so a field added to an event later stays hidden until someone
//! decides it is safe to show. A payload field is kept when:
//!
//! - its value is a boolean, a number or null (flags, counters, generations: never personal), or
//! - its name ends in `_id` (`user_id`, `session_id`; not [`NEVER_KEPT`]), or is one of
//!   [`KEPT_FIELDS`] (`appid`, `reason`, `authorization`, `fields`, `generation`, `source`,
//!   `is_new_user`; the same list as `docs/events.md`, which a test checks),
//!
//! and its value is not sealed personal data (a `pd1.` string: openid, unionid, client IP,
//! device, free-text reasons, profile, phone), which is always redacted. Analytics sees
//! `user_id`, never a WeChat identifier. The audit log keeps the same fields, with their
//! sealed values (admins open them while the user has a data key): [`redact_for_audit`].
//!
//! An object is redacted field by field, whatever its name.
//!
//! Every other field keeps its name and has its value replaced by [`REDACTED`], so consumers
//! see that, say, a phone number was bound without seeing it: sealed personal data (`profile`,
//! `phone`), `phone_index` (a keyed hash of the phone number, still a stable identifier of a
//! person), `client_ip`, a raw `device` string (v1) or its `user_agent`. The metadata (client IP,
//! user agent, actor) is left out.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::personal_data::is_sealed;
use crate::store::RecordedEvent;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Payload fields shown as they are (besides every `…_id`, boolean, number and null). Each is a
/// field of some event's current schema, and `docs/events.md` lists exactly these (tested).
pub const KEPT_FIELDS: &[&str] = &[
    "appid",
    "reason",
    "authorization",
    "fields",
    "generation",
    "source",
    "is_new_user",
];

/// Fields that end in `_id` yet hold personal data in clear.
pub const NEVER_KEPT: &[&str] = &["phone_id", "device_id"];

/// What becomes of a sealed (`pd1.`) value under a kept field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sealed {
    Redact,
    Keep,
}

/// The event as analytics sees it:
///
/// ```json
/// {"position": 42, "event_id": "…", "event_type": "UserLoggedIn", "schema_version": 1,
///  "occurred_at": "2024-05-01T08:00:00.123456Z", "stream_id": "session-…",
///  "user_id": "…", "appid": "wx…", "payload": {…redacted…}}
/// ```
///
/// `user_id` is the payload's `user_id`, else the user of a `user-{id}` stream, else the user
/// who acted (metadata actor); absent when none applies (a rejected login, an admin action on
/// a session). `appid` is the metadata's, else the payload's; absent when neither has one.
pub fn analytics_view(event: &RecordedEvent) -> AnalyticsView<'_> {
    AnalyticsView(event)
}

/// The analytics view of one event, serialised straight from the event (no intermediate
/// JSON tree: the event stream writes thousands a second). Keys come in sorted order, as a
/// `serde_json::Map` would have them.
#[derive(Debug, Clone, Copy)]
pub struct AnalyticsView<'a>(pub &'a RecordedEvent);

impl Serialize for AnalyticsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let appid = appid(event);
        let user_id = user_id(event);
        let mut view = serializer.serialize_map(None)?;
        if let Some(appid) = &appid {
            view.serialize_entry("appid", appid)?;
        }
        view.serialize_entry("event_id", &event.event_id.as_uuid())?;
        view.serialize_entry("event_type", &event.event_type)?;
        view.serialize_entry(
            "occurred_at",
            &event
                .occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        )?;
        view.serialize_entry("payload", &Redacted(&event.payload, false, Sealed::Redact))?;
        view.serialize_entry("position", &event.position)?;
        view.serialize_entry("schema_version", &event.schema_version)?;
        view.serialize_entry("stream_id", event.stream_id.as_str())?;
        if let Some(user_id) = &user_id {
            view.serialize_entry("user_id", user_id)?;
        }
        view.end()
    }
}

/// A payload value as redaction leaves it (`kept`: its field is on the allow-list).
struct Redacted<'a>(&'a Value, bool, Sealed);

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut object = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    object.serialize_entry(key, &Redacted(value, is_kept(key), self.2))?;
                }
                object.end()
            }
            Value::String(_) | Value::Array(_) if !self.1 => serializer.serialize_str(REDACTED),
            Value::String(s) if self.2 == Sealed::Redact && is_sealed(s) => {
                serializer.serialize_str(REDACTED)
            }
            value => value.serialize(serializer),
        }
    }
}

/// The event's appid (metadata first, then payload), if any: also the relay's subject token.
pub fn appid(event: &RecordedEvent) -> Option<String> {
    event
        .metadata
        .appid
        .as_ref()
        .map(|a| a.as_str().to_owned())
        .or_else(|| payload_str(event, "appid"))
}

fn user_id(event: &RecordedEvent) -> Option<String> {
    payload_str(event, "user_id")
        .or_else(|| {
            event
                .stream_id
                .as_str()
                .strip_prefix("user-")
                .map(str::to_owned)
        })
        .or_else(|| match &event.metadata.actor {
            domain::Actor::User(id) => Some(id.to_string()),
            _ => None,
        })
}

fn payload_str(event: &RecordedEvent, key: &str) -> Option<String> {
    event.payload.get(key)?.as_str().map(str::to_owned)
}

/// The same allow-list for the audit log, which keeps sealed values of kept fields (a block
/// reason): the admin API opens them with the user's key, and nothing opens them once the
/// user is erased.
pub fn redact_for_audit(payload: &Value) -> Value {
    serde_json::to_value(Redacted(payload, false, Sealed::Keep)).unwrap_or(Value::Null)
}

pub fn is_kept(key: &str) -> bool {
    !NEVER_KEPT.contains(&key) && (key.ends_with("_id") || KEPT_FIELDS.contains(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_of(event: &RecordedEvent) -> Value {
        serde_json::to_value(analytics_view(event)).unwrap()
    }

    /// A payload as the analytics view shows it.
    fn redact_payload(payload: &Value) -> Value {
        serde_json::to_value(Redacted(payload, false, Sealed::Redact)).unwrap()
    }
    use chrono::{TimeZone, Utc};
    use domain::{Actor, AppId, EventId, Metadata, StreamId, UserId};
    use serde_json::json;
    use uuid::Uuid;

    fn event(stream: &str, event_type: &str, payload: Value, metadata: Metadata) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            event_id: EventId::from_uuid(Uuid::now_v7()),
            stream_id: StreamId::from_stored(stream.into()),
            stream_version: 1,
            event_type: event_type.into(),
            schema_version: 1,
            occurred_at: Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap(),
            payload,
            metadata,
        }
    }

    fn metadata(appid: Option<&str>, actor: Actor) -> Metadata {
        Metadata {
            actor,
            appid: appid.map(|a| AppId::parse(a).unwrap()),
            client_ip: Some("203.0.113.9".into()),
            user_agent: Some("Mozilla/5.0 iPhone MicroMessenger".into()),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        }
    }

    const APP: &str = "wx0123456789abcdef";

    #[test]
    fn a_login_keeps_ids_and_flags_and_hides_ip_and_device() {
        let user = Uuid::now_v7().to_string();
        let session = Uuid::now_v7().to_string();
        let login = event(
            &format!("session-{session}"),
            "UserLoggedIn",
            json!({"session_id": session, "user_id": user, "appid": APP, "openid": "o_1",
                   "is_new_user": true, "client_ip": "203.0.113.9", "device": "iPhone 15"}),
            metadata(Some(APP), Actor::System),
        );
        let view = view_of(&login);
        assert_eq!(view["position"], 7);
        assert_eq!(view["event_id"], login.event_id.to_string());
        assert_eq!(view["event_type"], "UserLoggedIn");
        assert_eq!(view["schema_version"], 1);
        assert_eq!(view["occurred_at"], "2024-05-01T08:00:00.000000Z");
        assert_eq!(view["stream_id"], format!("session-{session}"));
        assert_eq!(view["user_id"], user.as_str());
        assert_eq!(view["appid"], APP);
        assert_eq!(
            view["payload"],
            json!({"session_id": session, "user_id": user, "appid": APP, "openid": REDACTED,
                   "is_new_user": true, "client_ip": REDACTED, "device": REDACTED})
        );
        let text = view.to_string();
        assert!(!text.contains("203.0.113.9") && !text.contains("iPhone"));
        assert!(
            !text.contains("o_1"),
            "analytics sees user_id, not the openid"
        );
    }

    #[test]
    fn sealed_personal_data_and_the_phone_index_are_redacted() {
        let user = UserId::from_uuid(Uuid::now_v7());
        let stream = format!("user-{user}");
        let phone = event(
            &stream,
            "PhoneNumberBound",
            json!({"phone": "v1.sealed-phone", "phone_index": "b64hash"}),
            metadata(None, Actor::User(user)),
        );
        let view = view_of(&phone);
        assert_eq!(
            view["payload"],
            json!({"phone": REDACTED, "phone_index": REDACTED})
        );
        assert_eq!(view["user_id"], user.to_string());
        assert!(view.get("appid").is_none());

        let profile = event(
            &stream,
            "ProfileAuthorized",
            json!({"profile": "v1.sealed", "fields": ["nickname", "avatar_url"],
                   "nested": {"nickname": "Alice", "gender": 1, "open_id": "o"}}),
            metadata(Some(APP), Actor::User(user)),
        );
        assert_eq!(
            view_of(&profile)["payload"],
            json!({"profile": REDACTED, "fields": ["nickname", "avatar_url"],
                   "nested": {"nickname": REDACTED, "gender": 1, "open_id": "o"}})
        );
    }

    #[test]
    fn user_and_appid_come_from_wherever_the_event_has_them() {
        // A rejected login: appid in the payload only, no user at all.
        let rejected = event(
            &format!("app-{APP}"),
            "LoginRejected",
            json!({"appid": APP, "reason": "invalid_code", "openid": null, "client_ip": "1.2.3.4"}),
            metadata(None, Actor::System),
        );
        let view = view_of(&rejected);
        assert_eq!(view["appid"], APP);
        assert!(view.get("user_id").is_none());
        assert_eq!(
            view["payload"],
            json!({"appid": APP, "reason": "invalid_code", "openid": null, "client_ip": REDACTED})
        );

        // A refresh: the user is the actor.
        let user = UserId::from_uuid(Uuid::now_v7());
        let refreshed = event(
            "session-x",
            "SessionRefreshed",
            json!({"generation": 3}),
            metadata(Some(APP), Actor::User(user)),
        );
        let view = view_of(&refreshed);
        assert_eq!(view["user_id"], user.to_string());
        assert_eq!(view["payload"], json!({"generation": 3}));
    }

    #[test]
    fn unknown_string_fields_are_hidden_by_default() {
        assert_eq!(
            redact_payload(&json!({"nickname": "Bob", "avatar_url": "https://x/y.png",
                                   "unionid": "u_1", "source": "code2session", "tags": ["a"],
                                   "phone_id": "p"})),
            json!({"nickname": REDACTED, "avatar_url": REDACTED, "unionid": REDACTED,
                   "source": "code2session", "tags": REDACTED, "phone_id": REDACTED})
        );
        assert_eq!(redact_payload(&json!("bare")), json!(REDACTED));
        assert_eq!(
            redact_payload(&json!({"device": {"user_agent": "Mozilla/5.0 iPhone",
                                              "platform": "ios"}})),
            json!({"device": {"user_agent": REDACTED, "platform": REDACTED}})
        );
        assert_eq!(redact_payload(&json!({})), json!({}));
    }

    #[test]
    fn sealed_values_are_redacted_even_under_kept_names_but_kept_for_the_audit() {
        let payload = json!({"reason": "pd1.c2VhbGVk", "appid": APP, "generation": 2});
        assert_eq!(
            redact_payload(&payload),
            json!({"reason": REDACTED, "appid": APP, "generation": 2})
        );
        assert_eq!(redact_for_audit(&payload), payload);
        assert_eq!(
            redact_for_audit(&json!({"nickname": "pd1.x", "reason": "user_blocked"})),
            json!({"nickname": REDACTED, "reason": "user_blocked"})
        );
    }

    /// Every property name at any depth of a JSON Schema.
    fn property_names(schema: &Value, names: &mut std::collections::BTreeSet<String>) {
        match schema {
            Value::Object(map) => {
                if let Some(Value::Object(properties)) = map.get("properties") {
                    names.extend(properties.keys().cloned());
                }
                map.values().for_each(|v| property_names(v, names));
            }
            Value::Array(items) => items.iter().for_each(|v| property_names(v, names)),
            _ => {}
        }
    }

    #[test]
    fn every_kept_field_is_a_field_of_some_event() {
        let mut names = std::collections::BTreeSet::new();
        for schema in domain::event_schema::catalog() {
            property_names(&schema.payload, &mut names);
        }
        for field in KEPT_FIELDS {
            assert!(names.contains(*field), "no event has a `{field}` field");
        }
    }

    #[test]
    fn docs_list_the_kept_fields() {
        let docs = include_str!("../../docs/events.md");
        let start = docs
            .find("keep their value only")
            .expect("docs/events.md states the allow-list");
        let end = start + docs[start..].find(';').expect("the list ends with `;`");
        let listed: std::collections::BTreeSet<&str> = docs[start..end]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|name| *name != "…_id")
            .collect();
        let kept: std::collections::BTreeSet<&str> = KEPT_FIELDS.iter().copied().collect();
        assert_eq!(listed, kept, "docs/events.md and KEPT_FIELDS differ");
    }
}
