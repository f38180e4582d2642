//! The published schema of every event type: its stream, meaning, version history and a JSON
//! Schema (draft 2020-12) of its current payload. Served at `GET /v1/events/schema` and
//! written out for people in `docs/events.md`.
//!
//! Kept by hand next to the types in `events.rs`; the tests check it against them: every
//! event type has an entry, every payload field a property (with the right JSON type), and
//! each history is as long as the type's current `schema_version`.

use serde_json::{json, Value};

use crate::upcast::current_version;

/// One event type's published schema.
#[derive(Debug, Clone)]
pub struct EventSchema {
    pub event_type: &'static str,
    /// The stream it is appended to, e.g. `user-{user_id}`.
    pub stream: &'static str,
    pub description: &'static str,
    /// `(schema_version, what changed)`, oldest first; the last is the current version.
    pub history: &'static [(u32, &'static str)],
    /// JSON Schema of the current payload.
    pub payload: Value,
}

impl EventSchema {
    pub fn schema_version(&self) -> u32 {
        current_version(self.event_type)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "stream": self.stream,
            "description": self.description,
            "schema_version": self.schema_version(),
            "history": self
                .history
                .iter()
                .map(|(version, change)| json!({ "schema_version": version, "change": change }))
                .collect::<Vec<_>>(),
            "payload": self.payload,
        })
    }
}

/// Every event type, in the order of `docs/events.md`.
pub fn catalog() -> Vec<EventSchema> {
    const FIRST: &[(u32, &str)] = &[(1, "first version")];
    const SEALED_V2: &[(u32, &str)] = &[
        (1, "first version"),
        (
            2,
            "personal fields sealed under the user's data key (a `pd1.` string where \
                     the clear value was), and the metadata's client IP and user agent; v1 \
                     events are sealed by the one-time migration",
        ),
    ];
    vec![
        EventSchema {
            event_type: "UserRegistered",
            stream: "user-{user_id}",
            description: "First login of a new user.",
            history: SEALED_V2,
            payload: object(&[
                ("user_id", uuid("The new user.")),
                ("appid", appid("The app of the first login.")),
                ("openid", sealed("The user's openid in that app")),
            ]),
        },
        EventSchema {
            event_type: "WeChatAccountLinked",
            stream: "user-{user_id}",
            description: "Another app's openid joined this user through their shared unionid.",
            history: SEALED_V2,
            payload: object(&[
                ("appid", appid("The app whose account joined.")),
                ("openid", sealed("The user's openid in that app")),
            ]),
        },
        EventSchema {
            event_type: "UnionIdLinked",
            stream: "user-{user_id}",
            description: "The user's unionid became known.",
            history: SEALED_V2,
            payload: object(&[
                (
                    "unionid",
                    sealed("The Open Platform unionid, shared by the apps of one account"),
                ),
                (
                    "source",
                    one_of(
                        "Where it was learned.",
                        &["code2_session", "decrypted_data", "cloud_context"],
                    ),
                ),
            ]),
        },
        EventSchema {
            event_type: "UserLoggedIn",
            stream: "session-{session_id}",
            description: "A successful login; it starts the session.",
            history: &[
                (
                    1,
                    "first version; `device` was the raw user agent (string or null)",
                ),
                (
                    2,
                    "`device` becomes an object: `user_agent`, and the `platform` and \
                     `wechat_version` read from it; v1 events are upcast on read",
                ),
                (
                    3,
                    "`openid`, `client_ip` and `device` sealed under the user's data key, and \
                     the metadata's client IP and user agent; older events are sealed by the \
                     one-time migration",
                ),
            ],
            payload: object(&[
                ("session_id", uuid("The session this login starts.")),
                ("user_id", uuid("The user who logged in.")),
                ("appid", appid("The app logged into.")),
                ("openid", sealed("The user's openid in that app")),
                (
                    "is_new_user",
                    json!({"type": "boolean", "description": "The login registered the user."}),
                ),
                ("client_ip", nullable(sealed("The client's IP address"))),
                (
                    "device",
                    nullable(sealed(
                        "The client of the login, `{user_agent, platform, wechat_version}` \
                         (the user agent as sent, at most 256 characters; the platform in the \
                         names of wx.getDeviceInfo().platform; the WeChat version from \
                         MicroMessenger/x.y.z)",
                    )),
                ),
            ]),
        },
        EventSchema {
            event_type: "SessionRefreshed",
            stream: "session-{session_id}",
            description: "The refresh token rotated.",
            history: FIRST,
            payload: object(&[(
                "generation",
                json!({"type": "integer", "minimum": 0,
                       "description": "The refresh-token generation now valid."}),
            )]),
        },
        EventSchema {
            event_type: "UserLoggedOut",
            stream: "session-{session_id}",
            description: "The user ended the session.",
            history: FIRST,
            payload: object(&[]),
        },
        EventSchema {
            event_type: "SessionRevoked",
            stream: "session-{session_id}",
            description: "The session ended without the user logging out.",
            history: &[
                (1, "first version"),
                (
                    2,
                    "`note` (an administrator's reason, or null) added; reasons `user_erased` \
                     and `user_action` added; v1 events are upcast with `note: null`",
                ),
            ],
            payload: object(&[
                (
                    "reason",
                    one_of(
                        "`refresh_token_reused`: a rotated refresh token came back (presumed \
                         stolen); `user_blocked`: the user was blocked; `user_erased`: the \
                         user's data was erased; `admin_action`: an administrator revoked the \
                         user's sessions; `user_action`: the user ended it from another session.",
                        &[
                            "refresh_token_reused",
                            "user_blocked",
                            "user_erased",
                            "admin_action",
                            "user_action",
                        ],
                    ),
                ),
                (
                    "note",
                    nullable(text(
                        "The administrator's free-text reason (`admin_action` only): personal \
                         data. Redacted in the analytics view.",
                    )),
                ),
            ]),
        },
        EventSchema {
            event_type: "LoginRejected",
            stream: "app-{appid}",
            description: "A login that was refused.",
            history: FIRST,
            payload: object(&[
                ("appid", appid("The app of the attempt.")),
                (
                    "reason",
                    one_of(
                        "Why it was refused.",
                        &["invalid_code", "high_risk", "blocked", "rate_limited"],
                    ),
                ),
                (
                    "openid",
                    nullable(text(
                        "Known only when WeChat accepted the code (a blocked user).",
                    )),
                ),
                (
                    "client_ip",
                    nullable(text(
                        "The client's IP address. Redacted in the analytics view.",
                    )),
                ),
            ]),
        },
        EventSchema {
            event_type: "ProfileAuthorized",
            stream: "user-{user_id}",
            description: "The user shared WeChat profile data (legacy encrypted getUserProfile).",
            history: FIRST,
            payload: object(&[
                ("profile", sealed("The profile")),
                ("fields", profile_fields()),
            ]),
        },
        EventSchema {
            event_type: "ProfileUpdated",
            stream: "user-{user_id}",
            description: "The user filled in nickname and/or avatar (the post-2022 way).",
            history: &[
                (1, "first version"),
                (
                    2,
                    "optional `avatar_id` (the uploaded avatar the profile points to) and \
                     `review` (fields WeChat's content check did not clear), both absent when \
                     empty: v1 events read as they are",
                ),
            ],
            payload: object_with_optional(
                &[
                    ("profile", sealed("The whole profile after the change")),
                    ("fields", profile_fields()),
                ],
                &[
                    (
                        "avatar_id",
                        uuid(
                            "The uploaded avatar (`GET /v1/avatars/{avatar_id}`) the profile's \
                              `avatar_url` points to; absent when it points elsewhere or nowhere.",
                        ),
                    ),
                    ("review", review_fields()),
                ],
            ),
        },
        EventSchema {
            event_type: "AvatarRejected",
            stream: "user-{user_id}",
            description: "WeChat's image check found an uploaded avatar risky; the image is \
                          deleted, and the profile's avatar cleared if it was still that one.",
            history: FIRST,
            payload: object_with_optional(
                &[
                    ("avatar_id", uuid("The rejected avatar.")),
                    (
                        "label",
                        json!({"type": "integer", "description": "WeChat's label: 10001 \
                               advertising, 20001 politics, 20002 pornography, 20003 abuse, \
                               20006 illegal, 20008 fraud, 20012 vulgar, 20013 copyright, \
                               21000 other."}),
                    ),
                ],
                &[
                    (
                        "profile",
                        sealed("The profile without the avatar, when it was still the current one"),
                    ),
                    ("fields", profile_fields()),
                ],
            ),
        },
        EventSchema {
            event_type: "PhoneNumberBound",
            stream: "user-{user_id}",
            description: "WeChat verified the user's phone number.",
            history: &[
                (
                    1,
                    "first version; also carried `phone_index`, a keyed hash of the number",
                ),
                (
                    2,
                    "`phone_index` dropped: the hash for admin look-ups lives in a deletable \
                     table, emptied on erasure; the one-time migration strips it from v1 events",
                ),
            ],
            payload: object(&[("phone", sealed("The phone number"))]),
        },
        EventSchema {
            event_type: "AuthorizationRevoked",
            stream: "user-{user_id}",
            description: "The user withdrew an authorization; its data stops being shown.",
            history: FIRST,
            payload: object(&[(
                "authorization",
                one_of("What was withdrawn.", &["profile", "phone"]),
            )]),
        },
        EventSchema {
            event_type: "UserBlocked",
            stream: "user-{user_id}",
            description: "An administrator blocked the user: logins are refused, sessions end.",
            history: SEALED_V2,
            payload: object(&[("reason", sealed("The administrator's reason"))]),
        },
        EventSchema {
            event_type: "UserUnblocked",
            stream: "user-{user_id}",
            description: "An administrator lifted the block.",
            history: SEALED_V2,
            payload: object(&[("reason", sealed("The administrator's reason"))]),
        },
        EventSchema {
            event_type: "UserErased",
            stream: "user-{user_id}",
            description: "Personal data erased: the user's data key is destroyed, so every \
                sealed field of their events stays unreadable.",
            history: FIRST,
            payload: object(&[]),
        },
    ]
}

/// The whole catalog as served at `GET /v1/events/schema`.
pub fn document() -> Value {
    let events: serde_json::Map<String, Value> = catalog()
        .iter()
        .map(|schema| (schema.event_type.to_owned(), schema.to_json()))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "events": events,
    })
}

fn object(fields: &[(&str, Value)]) -> Value {
    let properties: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    let required: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// An object whose `optional` fields may be absent.
fn object_with_optional(required: &[(&str, Value)], optional: &[(&str, Value)]) -> Value {
    let mut schema = object(required);
    for (name, field) in optional {
        schema["properties"][*name] = field.clone();
    }
    schema
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn uuid(description: &str) -> Value {
    json!({ "type": "string", "format": "uuid", "description": description })
}

fn appid(description: &str) -> Value {
    json!({ "type": "string", "pattern": "^wx[0-9a-fA-F]{16}$", "description": description })
}

fn one_of(description: &str, values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values, "description": description })
}

fn nullable(mut schema: Value) -> Value {
    if let Some(kind) = schema.get("type").cloned() {
        schema["type"] = json!([kind, "null"]);
    }
    schema
}

fn sealed(what: &str) -> Value {
    text(&format!(
        "{what}, sealed under the user's data key (personal data: unreadable once the user is \
         erased). Redacted in the analytics view."
    ))
}

/// Fields the content check did not clear.
fn review_fields() -> Value {
    json!({
        "type": "array",
        "items": { "type": "string", "enum": ["nickname"] },
        "description": "Fields WeChat's content check did not clear (its verdict was `review`, \
                        or it could not answer): stored, and flagged for a person to look at.",
    })
}

fn profile_fields() -> Value {
    json!({
        "type": "array",
        "items": { "type": "string", "enum": [
            "nickname", "avatar_url", "gender", "country", "province", "city", "language"
        ]},
        "description": "The names of the fields the sealed profile holds.",
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::device::Device;
    use crate::events::*;
    use crate::ids::{AppId, AvatarId, OpenId, SessionId, UnionId, UserId};
    use uuid::Uuid;

    /// One event of every type. Adding a variant breaks the exhaustive matches in `ordinal`,
    /// whose numbering the test then demands a sample for.
    fn samples() -> Vec<(String, Value)> {
        let user = UserId::from_uuid(Uuid::from_u128(1));
        let appid = AppId::parse("wx0123456789abcdef").unwrap();
        let openid = OpenId::parse("o_1").unwrap();
        let sealed = SealedPersonalData("v1.sealed".into());
        let users = [
            UserEvent::UserRegistered {
                user_id: user,
                appid: appid.clone(),
                openid: openid.clone(),
            },
            UserEvent::WeChatAccountLinked {
                appid: appid.clone(),
                openid: openid.clone(),
            },
            UserEvent::UnionIdLinked {
                unionid: UnionId::parse("u_1").unwrap(),
                source: UnionIdSource::Code2Session,
            },
            UserEvent::UserBlocked {
                reason: "spam".into(),
            },
            UserEvent::UserUnblocked {
                reason: "appeal".into(),
            },
            UserEvent::ProfileAuthorized {
                profile: sealed.clone(),
                fields: vec!["nickname".into(), "city".into()],
            },
            UserEvent::ProfileUpdated {
                profile: sealed.clone(),
                fields: vec!["avatar_url".into(), "nickname".into()],
                avatar_id: Some(AvatarId::from_uuid(Uuid::from_u128(3))),
                review: vec!["nickname".into()],
            },
            UserEvent::AvatarRejected {
                avatar_id: AvatarId::from_uuid(Uuid::from_u128(3)),
                label: 20002,
                profile: Some(sealed.clone()),
                fields: vec!["nickname".into()],
            },
            UserEvent::PhoneNumberBound { phone: sealed },
            UserEvent::AuthorizationRevoked {
                authorization: Authorization::Phone,
            },
            UserEvent::UserErased {},
        ];
        let sessions = [
            SessionEvent::UserLoggedIn {
                session_id: SessionId::from_uuid(Uuid::from_u128(2)),
                user_id: user,
                appid: appid.clone(),
                openid: openid.clone(),
                is_new_user: true,
                client_ip: Some("203.0.113.1".into()),
                device: Some(Device::from_user_agent("iPhone MicroMessenger/8.0.44")),
            },
            SessionEvent::SessionRefreshed { generation: 1 },
            SessionEvent::UserLoggedOut {},
            SessionEvent::SessionRevoked {
                reason: RevocationReason::AdminAction,
                note: Some("lost phone".into()),
            },
        ];
        let apps = [AppEvent::LoginRejected {
            appid,
            reason: RejectionReason::Blocked,
            openid: Some(openid),
            client_ip: None,
        }];
        let mut seen = BTreeSet::new();
        seen.extend(users.iter().map(ordinal_user));
        seen.extend(sessions.iter().map(|e| 100 + ordinal_session(e)));
        seen.extend(apps.iter().map(|e| 200 + ordinal_app(e)));
        let expected: BTreeSet<usize> = (0..USER_VARIANTS)
            .chain((0..SESSION_VARIANTS).map(|i| 100 + i))
            .chain((0..APP_VARIANTS).map(|i| 200 + i))
            .collect();
        assert_eq!(seen, expected, "a variant has no sample");

        // The contract name is the serde tag the store reads back.
        fn stored<E: DomainEvent>(event: &E) -> (String, Value) {
            let tagged = serde_json::to_value(event).unwrap();
            assert_eq!(tagged["event_type"], event.event_type());
            to_stored(event).unwrap()
        }
        let mut all = Vec::new();
        all.extend(users.iter().map(stored));
        all.extend(sessions.iter().map(stored));
        all.extend(apps.iter().map(stored));
        // As stored: personal fields sealed (the codec's `pd1.` strings).
        for (name, payload) in &mut all {
            for field in crate::personal::personal_fields(name) {
                if let Some(value) = payload.get_mut(*field).filter(|v| !v.is_null()) {
                    *value = json!("pd1.sealed");
                }
            }
        }
        all
    }

    const USER_VARIANTS: usize = 11;
    fn ordinal_user(event: &UserEvent) -> usize {
        match event {
            UserEvent::UserRegistered { .. } => 0,
            UserEvent::WeChatAccountLinked { .. } => 1,
            UserEvent::UnionIdLinked { .. } => 2,
            UserEvent::UserBlocked { .. } => 3,
            UserEvent::UserUnblocked { .. } => 4,
            UserEvent::ProfileAuthorized { .. } => 5,
            UserEvent::ProfileUpdated { .. } => 6,
            UserEvent::PhoneNumberBound { .. } => 7,
            UserEvent::AuthorizationRevoked { .. } => 8,
            UserEvent::UserErased {} => 9,
            UserEvent::AvatarRejected { .. } => 10,
        }
    }

    const SESSION_VARIANTS: usize = 4;
    fn ordinal_session(event: &SessionEvent) -> usize {
        match event {
            SessionEvent::UserLoggedIn { .. } => 0,
            SessionEvent::SessionRefreshed { .. } => 1,
            SessionEvent::UserLoggedOut {} => 2,
            SessionEvent::SessionRevoked { .. } => 3,
        }
    }

    const APP_VARIANTS: usize = 1;
    fn ordinal_app(event: &AppEvent) -> usize {
        match event {
            AppEvent::LoginRejected { .. } => 0,
        }
    }

    /// Enough of JSON Schema for ours: `type` (one or several), `enum`, `properties` (every
    /// field of the value must be one), `required`, `items`.
    fn check(schema: &Value, value: &Value, path: &str) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let allowed: Vec<&str> = match &schema["type"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            other => panic!("{path}: schema without a type: {other}"),
        };
        assert!(allowed.contains(&kind), "{path}: {kind} is not {allowed:?}");
        if let Some(options) = schema["enum"].as_array() {
            if kind != "null" {
                assert!(
                    options.contains(value),
                    "{path}: {value} not in {options:?}"
                );
            }
        }
        if let Value::Object(fields) = value {
            let properties = schema["properties"].as_object().expect("properties");
            for (name, field) in fields {
                let sub = properties
                    .get(name)
                    .unwrap_or_else(|| panic!("{path}.{name} is not in the schema"));
                check(sub, field, &format!("{path}.{name}"));
            }
            for name in schema["required"].as_array().expect("required") {
                let name = name.as_str().unwrap();
                assert!(fields.contains_key(name), "{path}.{name} is missing");
            }
        }
        if let Value::Array(items) = value {
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"));
            }
        }
    }

    #[test]
    fn every_event_type_has_a_schema_its_payloads_match() {
        let catalog = catalog();
        let samples = samples();
        let published: BTreeSet<&str> = catalog.iter().map(|s| s.event_type).collect();
        let types: BTreeSet<&str> = samples.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            published, types,
            "published (left) and actual (right) event types"
        );
        assert_eq!(
            catalog.len(),
            published.len(),
            "an event type is listed twice"
        );
        for (name, payload) in &samples {
            let schema = catalog.iter().find(|s| s.event_type == name).unwrap();
            check(&schema.payload, payload, name);
        }
    }

    /// The facts (`event_facts`) and the published schema describe the same types, streams,
    /// versions and fields; every field of a real payload is listed; what the codec seals is
    /// personal; and no consumer shows a personal field in clear.
    #[test]
    fn the_facts_describe_every_published_type_and_field() {
        use crate::event_facts::{facts, Consumer, Shown, EVENTS};
        let catalog = catalog();
        let listed: Vec<&str> = EVENTS.iter().map(|f| f.event_type).collect();
        let published: Vec<&str> = catalog.iter().map(|s| s.event_type).collect();
        assert_eq!(listed, published, "event_facts and event_schema, in order");
        for schema in &catalog {
            let facts = facts(schema.event_type).unwrap();
            assert_eq!(
                facts.stream.pattern(),
                schema.stream,
                "{}",
                schema.event_type
            );
            assert_eq!(facts.schema_version(), schema.schema_version());
            let properties: BTreeSet<&str> = schema.payload["properties"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let fields: BTreeSet<&str> = facts.fields.iter().map(|f| f.name).collect();
            assert_eq!(
                fields, properties,
                "{}: facts (left), schema",
                schema.event_type
            );
            assert_eq!(
                fields.len(),
                facts.fields.len(),
                "{}: a field twice",
                schema.event_type
            );
            for sealed in facts.sealed {
                let field = facts.field(sealed).expect("a sealed field is a field");
                assert!(
                    field.personal,
                    "{}.{sealed} sealed but not personal",
                    facts.event_type
                );
            }
            for field in facts.fields.iter().filter(|f| f.personal) {
                for consumer in Consumer::ALL {
                    let shown = field.shown_to(consumer);
                    assert_ne!(shown, Shown::Clear, "{}.{}", facts.event_type, field.name);
                    // Shown sealed only where the codec seals it, so an erasure leaves
                    // nothing that opens.
                    if shown == Shown::Sealed {
                        assert!(facts.sealed.contains(&field.name), "{}", field.name);
                    }
                }
            }
        }
        for (name, payload) in samples() {
            let facts = facts(&name).unwrap();
            for field in payload.as_object().unwrap().keys() {
                assert!(facts.field(field).is_some(), "{name}.{field} has no facts");
            }
        }
    }

    #[test]
    fn every_history_ends_at_the_current_version() {
        for schema in catalog() {
            let versions: Vec<u32> = schema.history.iter().map(|(v, _)| *v).collect();
            let expected: Vec<u32> = (1..=schema.schema_version()).collect();
            assert_eq!(versions, expected, "{}", schema.event_type);
        }
        let document = document();
        assert_eq!(document["events"]["UserLoggedIn"]["schema_version"], 3);
        assert_eq!(document["events"]["UserRegistered"]["schema_version"], 2);
    }

    #[test]
    fn docs_describe_every_event_type_at_its_current_version() {
        let docs = include_str!("../../docs/events.md");
        for schema in catalog() {
            let heading = format!("### `{}`", schema.event_type);
            let section = docs
                .split_once(&heading)
                .unwrap_or_else(|| panic!("docs/events.md has no {heading}"))
                .1;
            let section = section.split("\n### ").next().unwrap_or_default();
            let current = format!("schema_version {}", schema.schema_version());
            assert!(
                section.contains(&current),
                "docs/events.md: {heading} does not name {current}"
            );
            for field in schema.payload["properties"].as_object().unwrap().keys() {
                assert!(
                    section.contains(&format!("`{field}`")),
                    "docs/events.md: {heading} does not describe `{field}`"
                );
            }
        }
    }
}
