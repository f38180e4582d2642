//! One home for what the service knows about each event type: its contract name, its stream,
//! its schema version, its payload fields, which of them are personal (and which of those the
//! codec seals), how each consumer outside the aggregates shows each field, and how the
//! event's app is found.
//!
//! The consumers are the audit log (`projections`' `audit_log`, read by admins) and the
//! analytics view (`GET /v1/events`, its live SSE twin and the NATS relay all send the same
//! view, `infra::analytics`). Both read [`EVENTS`] through [`shown`] and [`appid`]; nothing
//! else decides what they show. A field no entry lists (one added by a newer release, or one an
//! old version carried) shows only as booleans, numbers and nulls ([`Shown::Scalars`]), so a
//! new field stays hidden until someone lists it here.
//!
//! `event_schema` publishes the same types with their JSON Schema; its tests check that both
//! name the same types and fields, and the domain events (`events`) the same names.

use serde_json::Value;
use uuid::Uuid;

use crate::envelope::Metadata;
use crate::upcast::current_version;

pub const USER_REGISTERED: &str = "UserRegistered";
pub const WECHAT_ACCOUNT_LINKED: &str = "WeChatAccountLinked";
pub const UNIONID_LINKED: &str = "UnionIdLinked";
pub const USER_LOGGED_IN: &str = "UserLoggedIn";
pub const SESSION_REFRESHED: &str = "SessionRefreshed";
pub const USER_LOGGED_OUT: &str = "UserLoggedOut";
pub const SESSION_REVOKED: &str = "SessionRevoked";
pub const LOGIN_REJECTED: &str = "LoginRejected";
pub const PROFILE_AUTHORIZED: &str = "ProfileAuthorized";
pub const PROFILE_UPDATED: &str = "ProfileUpdated";
pub const AVATAR_REJECTED: &str = "AvatarRejected";
pub const PHONE_NUMBER_BOUND: &str = "PhoneNumberBound";
pub const AUTHORIZATION_REVOKED: &str = "AuthorizationRevoked";
pub const USER_BLOCKED: &str = "UserBlocked";
pub const USER_UNBLOCKED: &str = "UserUnblocked";
pub const USER_ERASED: &str = "UserErased";

/// Who reads an event outside the aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Consumer {
    /// `GET /v1/events`, `GET /v1/events/stream` and the NATS relay: anyone with an
    /// `events:read` key. Sees the `user_id` pseudonym, never personal data.
    Analytics,
    /// The `audit_log` read model, read by admins; the admin API opens sealed values with the
    /// user's data key while the user has one.
    Audit,
}

impl Consumer {
    pub const ALL: [Self; 2] = [Self::Analytics, Self::Audit];
}

/// How a consumer shows one payload field. Every rule keeps nulls as they are (an absent
/// value says nothing about a person) and redacts an object field by field, its keys kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// As it is, except that a sealed value (`pd1.…`), which has no business here, is
    /// redacted.
    Clear,
    /// Only sealed, for a reader that opens it with the user's data key (so nothing reads it
    /// after an erasure); a clear value is redacted.
    Sealed,
    /// Replaced by `"[redacted]"`, its name kept.
    Redacted,
    /// Booleans and numbers as they are; anything else redacted. For fields no entry lists.
    Scalars,
}

/// The stream an event type is appended to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `user-{user_id}`.
    User,
    /// `session-{session_id}`.
    Session,
    /// `app-{appid}`.
    App,
}

impl StreamKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Session => "session",
            Self::App => "app",
        }
    }

    /// The stream name as `event_schema` publishes it, e.g. `user-{user_id}`.
    pub fn pattern(self) -> &'static str {
        match self {
            Self::User => "user-{user_id}",
            Self::Session => "session-{session_id}",
            Self::App => "app-{appid}",
        }
    }

    /// The id in a stream name of this kind (`user-{id}` → id), if it is one.
    pub fn id_in(self, stream_id: &str) -> Option<Uuid> {
        stream_id
            .strip_prefix(self.prefix())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|id| Uuid::try_parse(id).ok())
    }
}

/// One payload field and how each consumer shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    /// Identifies a person (sealed, stripped or never shown in clear).
    pub personal: bool,
    pub analytics: Shown,
    pub audit: Shown,
}

impl Field {
    pub fn shown_to(&self, consumer: Consumer) -> Shown {
        match consumer {
            Consumer::Analytics => self.analytics,
            Consumer::Audit => self.audit,
        }
    }
}

/// Not personal: ids (pseudonyms), the app, enums, flags, counters, lists of field names.
const fn public(name: &'static str) -> Field {
    Field {
        name,
        personal: false,
        analytics: Shown::Clear,
        audit: Shown::Clear,
    }
}

/// Personal, shown to no consumer.
const fn personal(name: &'static str) -> Field {
    Field {
        name,
        personal: true,
        analytics: Shown::Redacted,
        audit: Shown::Redacted,
    }
}

/// Not personal itself but a key to what is: an uploaded avatar's id opens its public URL,
/// the person's photo. Not sealed (erasure deletes the image, leaving the id harmless), shown
/// to admins only.
const fn opens_personal(name: &'static str) -> Field {
    Field {
        name,
        personal: false,
        analytics: Shown::Redacted,
        audit: Shown::Clear,
    }
}

/// Personal, shown sealed to admins (the audit log), to no one else.
const fn for_admins(name: &'static str) -> Field {
    Field {
        name,
        personal: true,
        analytics: Shown::Redacted,
        audit: Shown::Sealed,
    }
}

/// Everything about one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFacts {
    pub event_type: &'static str,
    pub stream: StreamKind,
    /// Every field of the current payload.
    pub fields: &'static [Field],
    /// The personal fields `infra::personal_data::codec` seals under the subject's data key.
    /// Profile and phone are personal too but sealed by the use cases that write them;
    /// `LoginRejected`'s are not sealed (an app's stream has no one's key).
    pub sealed: &'static [&'static str],
}

impl EventFacts {
    /// The version new events of this type are written with (older ones are upcast).
    pub fn schema_version(&self) -> u32 {
        current_version(self.event_type)
    }

    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether the payload names the event's app (`appid`): see [`appid`].
    pub fn names_its_app(&self) -> bool {
        self.field("appid").is_some()
    }
}

/// Every event type, in the order of `docs/events.md`.
pub const EVENTS: &[EventFacts] = &[
    EventFacts {
        event_type: USER_REGISTERED,
        stream: StreamKind::User,
        fields: &[public("user_id"), public("appid"), personal("openid")],
        sealed: &["openid"],
    },
    EventFacts {
        event_type: WECHAT_ACCOUNT_LINKED,
        stream: StreamKind::User,
        fields: &[public("appid"), personal("openid")],
        sealed: &["openid"],
    },
    EventFacts {
        event_type: UNIONID_LINKED,
        stream: StreamKind::User,
        fields: &[personal("unionid"), public("source")],
        sealed: &["unionid"],
    },
    EventFacts {
        event_type: USER_LOGGED_IN,
        stream: StreamKind::Session,
        fields: &[
            public("session_id"),
            public("user_id"),
            public("appid"),
            personal("openid"),
            public("is_new_user"),
            personal("client_ip"),
            // Sealed whole: its user agent identifies.
            personal("device"),
        ],
        sealed: &["openid", "client_ip", "device"],
    },
    EventFacts {
        event_type: SESSION_REFRESHED,
        stream: StreamKind::Session,
        fields: &[public("generation")],
        sealed: &[],
    },
    EventFacts {
        event_type: USER_LOGGED_OUT,
        stream: StreamKind::Session,
        fields: &[],
        sealed: &[],
    },
    EventFacts {
        event_type: SESSION_REVOKED,
        stream: StreamKind::Session,
        // `reason` is an enum here; `note` an administrator's free text.
        fields: &[public("reason"), personal("note")],
        sealed: &["note"],
    },
    EventFacts {
        event_type: LOGIN_REJECTED,
        stream: StreamKind::App,
        // No one's key: the one-time migration strips the openid and client IP of old ones
        // (new refusals are tallies, not events).
        fields: &[
            public("appid"),
            public("reason"),
            personal("openid"),
            personal("client_ip"),
        ],
        sealed: &[],
    },
    EventFacts {
        event_type: PROFILE_AUTHORIZED,
        stream: StreamKind::User,
        fields: &[personal("profile"), public("fields")],
        sealed: &[],
    },
    EventFacts {
        event_type: PROFILE_UPDATED,
        stream: StreamKind::User,
        fields: &[
            personal("profile"),
            public("fields"),
            opens_personal("avatar_id"),
            public("review"),
        ],
        sealed: &[],
    },
    EventFacts {
        event_type: AVATAR_REJECTED,
        stream: StreamKind::User,
        fields: &[
            opens_personal("avatar_id"),
            public("label"),
            personal("profile"),
            public("fields"),
        ],
        sealed: &[],
    },
    EventFacts {
        event_type: PHONE_NUMBER_BOUND,
        stream: StreamKind::User,
        fields: &[personal("phone")],
        sealed: &[],
    },
    EventFacts {
        event_type: AUTHORIZATION_REVOKED,
        stream: StreamKind::User,
        fields: &[public("authorization")],
        sealed: &[],
    },
    EventFacts {
        event_type: USER_BLOCKED,
        stream: StreamKind::User,
        // An administrator's free text: the audit log keeps it sealed for admins.
        fields: &[for_admins("reason")],
        sealed: &["reason"],
    },
    EventFacts {
        event_type: USER_UNBLOCKED,
        stream: StreamKind::User,
        fields: &[for_admins("reason")],
        sealed: &["reason"],
    },
    EventFacts {
        event_type: USER_ERASED,
        stream: StreamKind::User,
        fields: &[],
        sealed: &[],
    },
];

/// The facts of an event type; `None` for a type this release does not know.
pub fn facts(event_type: &str) -> Option<&'static EventFacts> {
    EVENTS.iter().find(|e| e.event_type == event_type)
}

/// How `consumer` shows the payload field `field` of an `event_type` event:
/// [`Shown::Scalars`] for a field (or a type) no entry lists.
pub fn shown(consumer: Consumer, event_type: &str, field: &str) -> Shown {
    facts(event_type)
        .and_then(|facts| facts.field(field))
        .map_or(Shown::Scalars, |f| f.shown_to(consumer))
}

/// The app an event happened in, the same for every consumer (the analytics view, the relay's
/// subject, the audit log and the other read models): the metadata's (the app of the request
/// that caused it), else the payload's `appid` (events about an app's account name it; an
/// event appended without a request's app, say by the one-time migration, still has it).
pub fn appid<'e>(payload: &'e Value, metadata: &'e Metadata) -> Option<&'e str> {
    metadata
        .appid
        .as_ref()
        .map(|a| a.as_str())
        .or_else(|| payload.get("appid").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AppId;
    use serde_json::json;

    #[test]
    fn stream_ids_name_their_kind() {
        let id = Uuid::from_u128(7);
        assert_eq!(StreamKind::User.id_in(&format!("user-{id}")), Some(id));
        assert_eq!(
            StreamKind::Session.id_in(&format!("session-{id}")),
            Some(id)
        );
        assert_eq!(StreamKind::User.id_in(&format!("session-{id}")), None);
        assert_eq!(StreamKind::User.id_in(&format!("users-{id}")), None);
        assert_eq!(StreamKind::App.id_in("app-wx0123456789abcdef"), None);
    }

    #[test]
    fn unlisted_fields_and_types_show_scalars_only() {
        let cases = [
            (Consumer::Analytics, USER_LOGGED_IN, "appid", Shown::Clear),
            (Consumer::Audit, USER_BLOCKED, "reason", Shown::Sealed),
            (Consumer::Analytics, USER_BLOCKED, "reason", Shown::Redacted),
            (
                Consumer::Analytics,
                PROFILE_UPDATED,
                "avatar_id",
                Shown::Redacted,
            ),
            (Consumer::Audit, PROFILE_UPDATED, "avatar_id", Shown::Clear),
            (
                Consumer::Audit,
                PHONE_NUMBER_BOUND,
                "phone_index",
                Shown::Scalars,
            ),
            (
                Consumer::Analytics,
                "FutureThing",
                "user_id",
                Shown::Scalars,
            ),
        ];
        for (consumer, event_type, field, expected) in cases {
            assert_eq!(
                shown(consumer, event_type, field),
                expected,
                "{event_type}.{field}"
            );
        }
        assert!(facts("FutureThing").is_none());
        assert!(facts(LOGIN_REJECTED).unwrap().names_its_app());
        assert!(!facts(USER_BLOCKED).unwrap().names_its_app());
    }

    #[test]
    fn the_app_is_the_requests_else_the_payloads() {
        let mut metadata = Metadata::system(Uuid::from_u128(1));
        let payload = json!({"appid": "wxfedcba9876543210"});
        assert_eq!(appid(&payload, &metadata), Some("wxfedcba9876543210"));
        assert_eq!(appid(&json!({}), &metadata), None);
        metadata.appid = Some(AppId::parse("wx0123456789abcdef").unwrap());
        assert_eq!(appid(&payload, &metadata), Some("wx0123456789abcdef"));
    }
}
