//! Schema evolution: stored events keep the `schema_version` they were written with, and are
//! upcast to the current version when read, step by step (v1 → v2 → …). The store applies
//! [`upcast`] to every event it decodes, so aggregates, projections and the event stream only
//! ever see current payloads, and the log itself is never rewritten.
//!
//! Changing an event's payload shape therefore means: change the type, add an [`Upcaster`]
//! from the previous version here (its target becomes the version new events are written
//! with), and record the change in `docs/events.md` and [`crate::event_schema`].
//!
//! Upcasters are total: a payload they do not recognise (a field missing or of another type)
//! is left as it is rather than refused, so a reader is never stopped by an old event.

use serde_json::Value;

use crate::device::Device;

/// One step: turns version `from` of `event_type` into version `from + 1`.
pub struct Upcaster {
    pub event_type: &'static str,
    pub from: u32,
    pub apply: fn(&mut Value),
}

/// Every step ever taken, oldest first within each event type.
pub const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        event_type: "UserLoggedIn",
        from: 1,
        apply: user_logged_in_v1_to_v2,
    },
    Upcaster {
        event_type: "SessionRevoked",
        from: 1,
        apply: session_revoked_v1_to_v2,
    },
    // Personal fields sealed under the user's data key (issue 11): see `personal_fields_sealed`.
    sealed("UserLoggedIn", 2),
    sealed("UserRegistered", 1),
    sealed("WeChatAccountLinked", 1),
    sealed("UnionIdLinked", 1),
    sealed("UserBlocked", 1),
    sealed("UserUnblocked", 1),
    Upcaster {
        event_type: "PhoneNumberBound",
        from: 1,
        apply: phone_index_dropped,
    },
    Upcaster {
        event_type: "ProfileUpdated",
        from: 1,
        apply: profile_updated_v1_to_v2,
    },
];

const fn sealed(event_type: &'static str, from: u32) -> Upcaster {
    Upcaster {
        event_type,
        from,
        apply: personal_fields_sealed,
    }
}

/// The version new events of this type are written with: 1, plus one per upcaster.
pub fn current_version(event_type: &str) -> u32 {
    let steps = UPCASTERS
        .iter()
        .filter(|u| u.event_type == event_type)
        .count();
    1 + u32::try_from(steps).unwrap_or(u32::MAX - 1)
}

/// Upcasts `payload` from `schema_version` to the current version of `event_type`, in place;
/// returns the version the payload now has. A version newer than this code knows (written by
/// a newer release) is left untouched.
pub fn upcast(event_type: &str, schema_version: u32, payload: &mut Value) -> u32 {
    let mut version = schema_version;
    while let Some(step) = UPCASTERS
        .iter()
        .find(|u| u.event_type == event_type && u.from == version)
    {
        (step.apply)(payload);
        version += 1;
    }
    version
}

/// The version after which the event's personal fields (openid, unionid, client IP, device,
/// reasons: `infra::personal_data::codec`) and its metadata's client IP and user agent are
/// sealed under the user's data key. The payload's shape is the same (a sealed field is a
/// `pd1.` string where the clear value was), and the codec opens both forms, so the step
/// changes nothing; no clear older version remains after the one-time migration
/// (`infra::personal_data::migration`), which seals every older event and writes it with the
/// new version.
fn personal_fields_sealed(_: &mut Value) {}

/// `PhoneNumberBound` v2: no `phone_index` (a keyed hash of the number, which would have
/// linked an erased person's history to whoever binds the number next). The step changes
/// nothing on read: the one-time migration (`infra::personal_data::migration`) moves the hash
/// of v1 events to the deletable phone look-up table and strips it from the log, and readers
/// ignore the field until then.
fn phone_index_dropped(_: &mut Value) {}

/// `ProfileUpdated` v2: optional `avatar_id` and `review`, absent when empty, so a v1
/// payload already reads as a v2 one without them (no avatar of ours, nothing flagged).
fn profile_updated_v1_to_v2(_: &mut Value) {}

/// `UserLoggedIn` v2: `device` was the raw user agent (`string | null`); it becomes a
/// [`Device`] read from that agent (`null` stays `null`).
fn user_logged_in_v1_to_v2(payload: &mut Value) {
    let Some(device) = payload.get_mut("device") else {
        return;
    };
    if let Value::String(user_agent) = device {
        let parsed = Device::from_user_agent(user_agent);
        if let Ok(value) = serde_json::to_value(parsed) {
            *device = value;
        }
    }
}

/// `SessionRevoked` v2: an optional `note` (an administrator's reason); v1 had none.
fn session_revoked_v1_to_v2(payload: &mut Value) {
    if let Value::Object(fields) = payload {
        fields.entry("note").or_insert(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{from_stored, to_stored, DomainEvent, SessionEvent};
    use crate::ids::{AppId, OpenId, SessionId, UserId};
    use serde_json::json;
    use uuid::Uuid;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) \
        AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x1800442a)";

    fn v1_login(device: Value) -> Value {
        json!({
            "session_id": Uuid::from_u128(1), "user_id": Uuid::from_u128(2),
            "appid": "wx0123456789abcdef", "openid": "o_1", "is_new_user": false,
            "client_ip": "203.0.113.7", "device": device,
        })
    }

    #[test]
    fn a_v1_login_reads_as_v2_with_the_device_parsed() {
        let mut payload = v1_login(json!(IPHONE));
        assert_eq!(upcast("UserLoggedIn", 1, &mut payload), 3);
        assert_eq!(
            payload["device"],
            json!({"user_agent": IPHONE, "platform": "ios", "wechat_version": "8.0.44"})
        );
        let event: SessionEvent = from_stored("UserLoggedIn", &payload).unwrap();
        let SessionEvent::UserLoggedIn { device, .. } = event else {
            panic!("not a login: {event:?}")
        };
        assert_eq!(device, Some(Device::from_user_agent(IPHONE)));
    }

    #[test]
    fn a_v1_login_without_a_device_stays_without() {
        for device in [json!(null), json!(42)] {
            let mut payload = v1_login(device.clone());
            assert_eq!(upcast("UserLoggedIn", 1, &mut payload), 3);
            assert_eq!(payload["device"], device);
        }
        let mut payload = v1_login(json!(null));
        payload.as_object_mut().unwrap().remove("device");
        upcast("UserLoggedIn", 1, &mut payload);
        let event: SessionEvent = from_stored("UserLoggedIn", &payload).unwrap();
        assert!(matches!(
            event,
            SessionEvent::UserLoggedIn { device: None, .. }
        ));
    }

    #[test]
    fn a_v1_revocation_reads_as_v2_without_a_note() {
        let mut payload = json!({"reason": "user_blocked"});
        assert_eq!(upcast("SessionRevoked", 1, &mut payload), 2);
        assert_eq!(payload, json!({"reason": "user_blocked", "note": null}));
        let event: SessionEvent = from_stored("SessionRevoked", &payload).unwrap();
        assert_eq!(
            event,
            SessionEvent::SessionRevoked {
                reason: crate::events::RevocationReason::UserBlocked,
                note: None
            }
        );
        assert_eq!(event.schema_version(), 2);
    }

    #[test]
    fn a_v1_profile_update_reads_as_v2_without_an_avatar() {
        let mut payload = json!({"profile": "pd1.x", "fields": ["nickname"]});
        assert_eq!(upcast("ProfileUpdated", 1, &mut payload), 2);
        assert_eq!(
            payload.get("avatar_id"),
            None,
            "nothing to add: the field is optional"
        );
        let event: crate::events::UserEvent = from_stored("ProfileUpdated", &payload).unwrap();
        assert!(matches!(
            event,
            crate::events::UserEvent::ProfileUpdated {
                avatar_id: None,
                ..
            }
        ));
        assert_eq!(event.schema_version(), 2);
    }

    #[test]
    fn current_versions_are_left_alone() {
        let mut payload =
            v1_login(json!({"user_agent": "x", "platform": null, "wechat_version": null}));
        let before = payload.clone();
        assert_eq!(upcast("UserLoggedIn", 3, &mut payload), 3);
        assert_eq!(payload, before);
        // Sealing changed no shape: v2 reads as v3 unchanged.
        assert_eq!(upcast("UserLoggedIn", 2, &mut payload), 3);
        assert_eq!(payload, before);
        // Unknown types and versions newer than this code knows pass through.
        assert_eq!(upcast("UserLoggedOut", 1, &mut payload), 1);
        assert_eq!(upcast("UserLoggedIn", 7, &mut payload), 7);
        assert_eq!(payload, before);
    }

    #[test]
    fn new_events_are_written_with_the_current_version() {
        assert_eq!(current_version("UserLoggedIn"), 3);
        assert_eq!(current_version("UserRegistered"), 2);
        let login = SessionEvent::UserLoggedIn {
            session_id: SessionId::from_uuid(Uuid::from_u128(1)),
            user_id: UserId::from_uuid(Uuid::from_u128(2)),
            appid: AppId::parse("wx0123456789abcdef").unwrap(),
            openid: OpenId::parse("o_1").unwrap(),
            is_new_user: false,
            client_ip: None,
            device: Some(Device::from_user_agent(IPHONE)),
        };
        assert_eq!(login.schema_version(), 3);
        assert_eq!(SessionEvent::UserLoggedOut {}.schema_version(), 1);
        // What a v3 writer stores reads back unchanged.
        let (name, mut payload) = to_stored(&login).unwrap();
        assert_eq!(upcast(&name, 3, &mut payload), 3);
        assert_eq!(from_stored::<SessionEvent>(&name, &payload).unwrap(), login);
    }

    #[test]
    fn every_upcaster_is_one_unbroken_chain_per_type() {
        for step in UPCASTERS {
            let earlier = UPCASTERS
                .iter()
                .filter(|u| u.event_type == step.event_type && u.from < step.from)
                .count();
            assert_eq!(
                step.from as usize,
                earlier + 1,
                "{} v{}: steps must start at 1 and not skip or repeat",
                step.event_type,
                step.from
            );
        }
    }
}
