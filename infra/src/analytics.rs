//! What consumers outside the service see of an event: the analytics view (the HTTP event
//! stream `GET /v1/events`, its live SSE twin and the NATS relay all send it) and the audit
//! log's entry (`projections`' `audit_log`, read by admins). Identifiers, types, times and
//! non-personal fields stay; personal data is redacted.
//!
//! What each consumer shows of each field, and how the event's app is found, is decided in one
//! table, [`domain::event_facts`]; this module only applies it. A field the table does not list
//! (added by a newer release, or carried by an old version) shows only booleans, numbers and
//! nulls, so it stays hidden until someone lists it. Nulls stay null everywhere, and an object
//! is redacted field by field, its keys kept, so consumers see that, say, a phone number was
//! bound without seeing it.
//!
//! Analytics sees `user_id`, never a WeChat identifier or any other personal field, sealed or
//! not; the metadata (client IP, user agent, actor) is left out. The audit log keeps the same
//! fields, and besides, sealed only, what the table shows admins (a block reason) and the
//! client IP: the admin API opens them with the user's key, and nothing opens them once the
//! user is erased.

use domain::event_facts::{self, Consumer, Shown};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::personal_data::is_sealed;
use crate::store::RecordedEvent;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

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
/// a session). `appid` is [`appid`]; absent when the event has none.
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
        let user_id = user_id(event);
        let mut view = serializer.serialize_map(None)?;
        if let Some(appid) = appid(event) {
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
        view.serialize_entry("payload", &Payload(event, Consumer::Analytics))?;
        view.serialize_entry("position", &event.position)?;
        view.serialize_entry("schema_version", &event.schema_version)?;
        view.serialize_entry("stream_id", event.stream_id.as_str())?;
        if let Some(user_id) = &user_id {
            view.serialize_entry("user_id", user_id)?;
        }
        view.end()
    }
}

/// What the audit log keeps of an event besides who, what, whom and when.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditView {
    /// [`appid`].
    pub appid: Option<String>,
    /// The client's IP address (the metadata's, else the payload's), sealed only.
    pub client_ip: Option<String>,
    /// The payload as the audit log shows it.
    pub details: Value,
}

/// The event as the audit log keeps it.
pub fn audit_view(event: &RecordedEvent) -> AuditView {
    let client_ip = event
        .metadata
        .client_ip
        .as_deref()
        .or_else(|| event.payload.get("client_ip").and_then(Value::as_str))
        .filter(|ip| is_sealed(ip));
    AuditView {
        appid: appid(event).map(str::to_owned),
        client_ip: client_ip.map(str::to_owned),
        details: serde_json::to_value(Payload(event, Consumer::Audit)).unwrap_or(Value::Null),
    }
}

/// The event's app ([`event_facts::appid`]: the metadata's, else the payload's), if any: the
/// same for the analytics view, the relay's subject token and the read models.
pub fn appid(event: &RecordedEvent) -> Option<&str> {
    event_facts::appid(&event.payload, &event.metadata)
}

fn user_id(event: &RecordedEvent) -> Option<String> {
    event
        .payload
        .get("user_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            event_facts::StreamKind::User
                .id_in(event.stream_id.as_str())
                .map(|id| id.to_string())
        })
        .or_else(|| match &event.metadata.actor {
            domain::Actor::User(id) => Some(id.to_string()),
            _ => None,
        })
}

/// An event's payload as `consumer` sees it, field by field as [`event_facts::shown`] says.
struct Payload<'a>(&'a RecordedEvent, Consumer);

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Payload(event, consumer) = *self;
        match &event.payload {
            Value::Object(map) => {
                let mut object = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    let shown = event_facts::shown(consumer, &event.event_type, key);
                    object.serialize_entry(key, &Redacted(value, shown))?;
                }
                object.end()
            }
            other => Redacted(other, Shown::Redacted).serialize(serializer),
        }
    }
}

/// A value as `Shown` leaves it.
struct Redacted<'a>(&'a Value, Shown);

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Redacted(value, shown) = *self;
        let keep = match (value, shown) {
            (Value::Null, _) => true,
            (Value::Object(map), _) => {
                // Field by field: a clear object's fields are no better known than its name.
                let inner = if shown == Shown::Scalars {
                    Shown::Scalars
                } else {
                    Shown::Redacted
                };
                let mut object = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    object.serialize_entry(key, &Redacted(value, inner))?;
                }
                return object.end();
            }
            (Value::Array(items), Shown::Clear) => {
                return serializer.collect_seq(items.iter().map(|v| Redacted(v, Shown::Clear)));
            }
            (Value::String(s), Shown::Clear) => !is_sealed(s),
            (Value::String(s), Shown::Sealed) => is_sealed(s),
            (Value::Bool(_) | Value::Number(_), Shown::Clear | Shown::Scalars) => true,
            _ => false,
        };
        if keep {
            value.serialize(serializer)
        } else {
            serializer.serialize_str(REDACTED)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{TimeZone, Utc};
    use domain::event_facts::{Field, EVENTS};
    use domain::{Actor, AppId, EventId, Metadata, StreamId, UserId};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    const APP: &str = "wx0123456789abcdef";
    const OTHER_APP: &str = "wxfedcba9876543210";

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

    fn metadata(appid: Option<&str>, actor: Actor, client_ip: &str, agent: &str) -> Metadata {
        Metadata {
            actor,
            appid: appid.map(|a| AppId::parse(a).unwrap()),
            client_ip: Some(client_ip.into()),
            user_agent: Some(agent.into()),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        }
    }

    fn view_of(event: &RecordedEvent) -> Value {
        serde_json::to_value(analytics_view(event)).unwrap()
    }

    /// What a consumer can see of personal data, written so a leak is easy to find in any
    /// view: `SECRET` in every personal value, sealed (`pd1.`) or clear.
    fn personal_value(event_type: &str, field: &str, sealed: bool) -> Value {
        let secret = format!("SECRET-{event_type}-{field}");
        match (sealed, field) {
            (true, _) => json!(format!("pd1.{secret}")),
            // A v2 login's clear device object.
            (false, "device") => json!({"user_agent": secret, "platform": "ios", "build": 44}),
            (false, _) => json!(secret),
        }
    }

    /// A non-personal value of the field's kind.
    fn public_value(field: &Field, user: UserId) -> Value {
        match field.name {
            "user_id" => json!(user.to_string()),
            "session_id" => json!(Uuid::from_u128(2).to_string()),
            "appid" => json!(APP),
            "is_new_user" => json!(true),
            "generation" => json!(3),
            "fields" => json!(["nickname", "city"]),
            _ => json!("some_value"),
        }
    }

    /// One event of every type, every field filled: personal ones with secrets (sealed as
    /// the codec writes them, or clear as an old or tampered event may hold them), plus a
    /// field no table lists and a sealed client IP and user agent in the metadata.
    fn samples(sealed: bool) -> Vec<RecordedEvent> {
        let user = UserId::from_uuid(Uuid::from_u128(1));
        EVENTS
            .iter()
            .map(|facts| {
                let mut payload = serde_json::Map::new();
                for field in facts.fields {
                    let value = if field.personal {
                        personal_value(facts.event_type, field.name, sealed)
                    } else {
                        public_value(field, user)
                    };
                    payload.insert(field.name.to_owned(), value);
                }
                payload.insert(
                    "unlisted".into(),
                    personal_value(facts.event_type, "unlisted", sealed),
                );
                let stream = match facts.stream {
                    domain::event_facts::StreamKind::User => format!("user-{user}"),
                    domain::event_facts::StreamKind::Session => {
                        format!("session-{}", Uuid::from_u128(2))
                    }
                    domain::event_facts::StreamKind::App => format!("app-{APP}"),
                };
                let (ip, agent) = if sealed {
                    ("pd1.SECRET-ip", "pd1.SECRET-agent")
                } else {
                    ("SECRET-ip", "SECRET-agent")
                };
                event(
                    &stream,
                    facts.event_type,
                    Value::Object(payload),
                    metadata(Some(APP), Actor::User(user), ip, agent),
                )
            })
            .collect()
    }

    /// The one test of what every consumer shows, over every event type of the table: the
    /// analytics view (`/v1/events`, SSE), the relay's subject and body, and the audit log's
    /// entry. Analytics shows no personal value, sealed or clear; the audit log none in
    /// clear, and sealed only what the table shows admins (opened while the user has a key,
    /// never after an erasure); every consumer names the same app.
    #[test]
    fn no_consumer_shows_personal_data_of_any_event_type() {
        for sealed in [true, false] {
            for event in samples(sealed) {
                let name = &event.event_type;
                let facts = event_facts::facts(name).unwrap();

                let view = view_of(&event);
                let text = view.to_string();
                assert!(!text.contains("SECRET"), "analytics: {text}");
                let body = crate::relay::body(&event).unwrap();
                assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), view);
                let subject = crate::relay::subject("identity.events", &event);
                assert!(!subject.contains("SECRET"), "{subject}");

                let audit = audit_view(&event);
                let shown_sealed: BTreeSet<String> = facts
                    .fields
                    .iter()
                    .filter(|f| f.audit == Shown::Sealed)
                    .map(|f| format!("pd1.SECRET-{name}-{}", f.name))
                    .collect();
                let mut details = audit.details.clone();
                for value in details.as_object_mut().unwrap().values_mut() {
                    if value.as_str().is_some_and(|v| shown_sealed.contains(v)) {
                        assert!(sealed, "{name}: a clear value kept: {value}");
                        *value = json!("opened by admins");
                    }
                }
                assert!(!details.to_string().contains("SECRET"), "audit: {details}");
                let ip = audit.client_ip.as_deref();
                assert_eq!(ip, sealed.then_some("pd1.SECRET-ip"), "{name}");

                // Every field keeps its name; fields nobody may see are redacted for all.
                for field in facts.fields {
                    assert!(view["payload"].get(field.name).is_some());
                    if field.personal && !field.name.contains("device") {
                        assert_eq!(view["payload"][field.name], REDACTED);
                    }
                    if !field.personal {
                        // Not personal, but maybe a key to what is (an avatar's id).
                        let analytics = match field.analytics {
                            Shown::Clear => event.payload[field.name].clone(),
                            _ => json!(REDACTED),
                        };
                        assert_eq!(view["payload"][field.name], analytics, "{name}");
                        assert_eq!(audit.details[field.name], event.payload[field.name]);
                    }
                }

                let app = appid(&event);
                assert_eq!(app, Some(APP));
                assert_eq!(view["appid"], APP, "{name}");
                assert_eq!(audit.appid.as_deref(), app);
                assert_eq!(subject, format!("identity.events.{APP}.{name}"));
            }
        }
    }

    #[test]
    fn every_consumer_finds_the_app_the_same_way() {
        let user = UserId::from_uuid(Uuid::now_v7());
        let with = |payload: Value, app: Option<&str>| {
            event(
                &format!("user-{user}"),
                "UserRegistered",
                payload,
                metadata(app, Actor::System, "pd1.ip", "pd1.agent"),
            )
        };
        let cases = [
            // The request's app first, then the payload's, else none.
            (with(json!({"appid": OTHER_APP}), Some(APP)), Some(APP)),
            (with(json!({"appid": OTHER_APP}), None), Some(OTHER_APP)),
            (with(json!({}), Some(APP)), Some(APP)),
            (with(json!({}), None), None),
        ];
        for (event, expected) in cases {
            assert_eq!(appid(&event), expected);
            assert_eq!(
                view_of(&event).get("appid").and_then(Value::as_str),
                expected
            );
            assert_eq!(audit_view(&event).appid.as_deref(), expected);
            let subject = crate::relay::subject("p", &event);
            assert_eq!(
                subject,
                format!("p.{}.UserRegistered", expected.unwrap_or("_"))
            );
        }
    }

    #[test]
    fn a_login_keeps_ids_and_flags_and_hides_ip_and_device() {
        let user = Uuid::now_v7().to_string();
        let session = Uuid::now_v7().to_string();
        let login = event(
            &format!("session-{session}"),
            "UserLoggedIn",
            json!({"session_id": session, "user_id": user, "appid": APP, "openid": "o_1",
                   "is_new_user": true, "client_ip": "203.0.113.9", "device": "iPhone 15"}),
            metadata(
                Some(APP),
                Actor::System,
                "203.0.113.9",
                "Mozilla/5.0 iPhone",
            ),
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
        // A clear client IP (an event from before sealing) is not kept by the audit log.
        assert_eq!(audit_view(&login).client_ip, None);
    }

    #[test]
    fn user_comes_from_wherever_the_event_has_it() {
        // A rejected login: no user at all; nulls stay null.
        let rejected = event(
            &format!("app-{APP}"),
            "LoginRejected",
            json!({"appid": APP, "reason": "invalid_code", "openid": null, "client_ip": "1.2.3.4"}),
            Metadata::system(Uuid::now_v7()),
        );
        let view = view_of(&rejected);
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
            metadata(Some(APP), Actor::User(user), "pd1.ip", "pd1.agent"),
        );
        let view = view_of(&refreshed);
        assert_eq!(view["user_id"], user.to_string());
        assert_eq!(view["payload"], json!({"generation": 3}));
    }

    /// What analytics and the audit log show of payloads the table does not fully list, and
    /// of sealed values: `(event type, payload, analytics, audit)`.
    #[test]
    fn unlisted_fields_show_only_flags_and_counters_and_sealed_values_only_to_admins() {
        let future = json!({"user_id": REDACTED, "nickname": REDACTED, "tags": REDACTED,
                            "flag": true, "n": 2, "none": null,
                            "nested": {"open_id": REDACTED, "gender": 1}});
        let phone = json!({"phone": REDACTED, "phone_index": REDACTED});
        let revoked = json!({"reason": REDACTED, "note": REDACTED});
        let cases = [
            // A type from a newer release.
            (
                "FutureThing",
                json!({"user_id": "u", "nickname": "Bob", "tags": ["a"], "flag": true, "n": 2,
                       "none": null, "nested": {"open_id": "o", "gender": 1}}),
                future.clone(),
                future,
            ),
            // v1 carried `phone_index` (a keyed hash: still a stable identifier of a person).
            (
                "PhoneNumberBound",
                json!({"phone": "pd1.x", "phone_index": "b64hash"}),
                phone.clone(),
                phone,
            ),
            // A sealed value is redacted under a name shown in clear.
            (
                "SessionRevoked",
                json!({"reason": "pd1.c2VhbGVk", "note": "pd1.bm90ZQ"}),
                revoked.clone(),
                revoked,
            ),
            // Admins open a block reason.
            (
                "UserBlocked",
                json!({"reason": "pd1.c2VhbGVk"}),
                json!({"reason": REDACTED}),
                json!({"reason": "pd1.c2VhbGVk"}),
            ),
        ];
        for (event_type, payload, analytics, audit) in cases {
            let event = event(
                "user-x",
                event_type,
                payload,
                Metadata::system(Uuid::now_v7()),
            );
            assert_eq!(
                view_of(&event)["payload"],
                analytics,
                "analytics: {event_type}"
            );
            assert_eq!(audit_view(&event).details, audit, "audit: {event_type}");
        }
    }

    #[test]
    fn docs_list_the_fields_analytics_shows() {
        let docs = include_str!("../../docs/events.md");
        let start = docs
            .find("keep their value only")
            .expect("docs/events.md states what analytics shows");
        let end = start + docs[start..].find(';').expect("the list ends with `;`");
        let listed: BTreeSet<&str> = docs[start..end].split('`').skip(1).step_by(2).collect();
        let shown: BTreeSet<&str> = EVENTS
            .iter()
            .flat_map(|e| e.fields)
            .filter(|f| f.analytics == Shown::Clear)
            .map(|f| f.name)
            .collect();
        assert_eq!(
            listed, shown,
            "docs/events.md and domain::event_facts differ"
        );
    }
}
