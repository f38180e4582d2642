//! A deterministic log: users registering, linking accounts, logging in and out, being
//! blocked, sharing and withdrawing data, erased; rejected logins; an event type from the
//! future.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::{Actor, AppId, Metadata, StreamId, UserId};
use infra::store::{AppendBatch, ExpectedVersion, NewEvent, Store};
use serde_json::{json, Value};
use uuid::Uuid;

pub const APP_A: &str = "wx0123456789abcdef";
pub const APP_B: &str = "wxfedcba9876543210";
/// A block reason as `UserBlocked` v2 carries it: sealed (the audit log keeps it sealed).
pub const SEALED_REASON: &str = "pd1.c3BhbQ";

pub fn user(u: usize) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + u as u128)
}

pub fn session(u: usize, k: usize) -> Uuid {
    Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0000 + ((u as u128) << 16) + k as u128)
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 8, 0, 0).unwrap()
}

/// One event of the scenario, with the stream it goes to.
pub struct Entry {
    pub stream: StreamId,
    pub event: NewEvent,
}

pub struct Scenario {
    pub entries: Vec<Entry>,
    next: i64,
}

impl Scenario {
    /// `users` users with `logins` logins each; events 7 minutes apart, so they span days.
    pub fn new(users: usize, logins: usize) -> Self {
        Self::range(0..users, logins)
    }

    /// Users numbered from `users.start`; ids and times do not collide with other ranges'.
    pub fn range(users: std::ops::Range<usize>, logins: usize) -> Self {
        let mut s = Self {
            entries: Vec::new(),
            next: (users.start * (logins * 3 + 20)) as i64,
        };
        for u in users {
            s.user_life(u, logins);
        }
        s
    }

    fn push(&mut self, stream: String, event_type: &str, payload: Value, actor: Actor, app: &str) {
        let id = self.next;
        self.next += 1;
        let metadata = Metadata {
            actor,
            appid: Some(AppId::parse(app).unwrap()),
            client_ip: Some(format!("203.0.113.{}", id % 250)),
            user_agent: Some("WeChat/8.0".into()),
            correlation_id: Uuid::from_u128(id as u128),
            causation_id: None,
        };
        self.entries.push(Entry {
            stream: StreamId::from_stored(stream),
            event: NewEvent {
                event_id: domain::EventId::from_uuid(Uuid::from_u128(0xE000_0000 + id as u128)),
                event_type: event_type.to_owned(),
                schema_version: 1,
                occurred_at: t0() + Duration::minutes(7 * id),
                payload,
                metadata,
            },
        });
    }

    /// Pushes an event of the app `APP_A`.
    fn push_a(&mut self, stream: &str, event_type: &str, payload: Value, actor: &Actor) {
        self.push(stream.to_owned(), event_type, payload, actor.clone(), APP_A);
    }

    fn user_life(&mut self, u: usize, logins: usize) {
        let id = user(u);
        let stream = format!("user-{id}");
        let me = Actor::User(UserId::from_uuid(id));
        let admin = Actor::Admin("key1".into());
        self.push_a(
            &stream,
            "UserRegistered",
            json!({"user_id": id, "appid": APP_A, "openid": format!("oA{u}")}),
            &Actor::System,
        );
        if u.is_multiple_of(3) {
            self.push_a(
                &stream,
                "UnionIdLinked",
                json!({"unionid": format!("un{u}"), "source": "code2_session"}),
                &Actor::System,
            );
            self.push(
                stream.clone(),
                "WeChatAccountLinked",
                json!({"appid": APP_B, "openid": format!("oB{u}")}),
                Actor::System,
                APP_B,
            );
        }
        for k in 0..logins {
            let (app, openid) = if u.is_multiple_of(3) && !k.is_multiple_of(2) {
                (APP_B, format!("oB{u}"))
            } else {
                (APP_A, format!("oA{u}"))
            };
            let sid = session(u, k);
            let s_stream = format!("session-{sid}");
            self.push(
                s_stream.clone(),
                "UserLoggedIn",
                json!({"session_id": sid, "user_id": id, "appid": app, "openid": openid,
                       "is_new_user": k == 0, "client_ip": "203.0.113.1", "device": "iPhone 15"}),
                me.clone(),
                app,
            );
            if !k.is_multiple_of(2) {
                self.push(
                    s_stream.clone(),
                    "SessionRefreshed",
                    json!({"generation": 1}),
                    me.clone(),
                    app,
                );
            }
            if k % 4 == 3 {
                self.push(s_stream, "UserLoggedOut", json!({}), me.clone(), app);
            }
        }
        if u % 5 == 4 {
            // Sealed under the user's data key, as v2 writes it.
            self.push_a(
                &stream,
                "UserBlocked",
                json!({"reason": SEALED_REASON}),
                &admin,
            );
            if logins > 0 {
                let s_stream = format!("session-{}", session(u, 0));
                self.push_a(
                    &s_stream,
                    "SessionRevoked",
                    json!({"reason": "user_blocked"}),
                    &Actor::System,
                );
            }
        }
        // Then, by the user's number, in this order:
        let rejections = format!("app-{APP_A}");
        let later = [
            (
                u % 10 == 9,
                &stream,
                "UserUnblocked",
                json!({"reason": "appeal"}),
                &admin,
            ),
            (
                u % 7 == 6,
                &stream,
                "ProfileAuthorized",
                json!({"profile": format!("sealed:{u}"), "fields": ["nickname", "avatar_url"]}),
                &me,
            ),
            (
                u % 7 == 6,
                &stream,
                "ProfileUpdated",
                json!({"profile": format!("sealed-again:{u}"), "fields": ["avatar_url", "nickname"]}),
                &me,
            ),
            (
                u % 7 == 6,
                &stream,
                "PhoneNumberBound",
                json!({"phone_index": format!("ph{u}"), "phone": format!("sealed-phone:{u}")}),
                &me,
            ),
            (
                u % 11 == 10,
                &stream,
                "AuthorizationRevoked",
                json!({"authorization": "phone"}),
                &me,
            ),
            (u % 13 == 12, &stream, "UserErased", json!({}), &admin),
            (
                u % 4 == 1,
                &rejections,
                "LoginRejected",
                json!({"appid": APP_A, "reason": "invalid_code", "openid": null,
                       "client_ip": "198.51.100.9"}),
                &Actor::System,
            ),
            (
                u % 6 == 5,
                &stream,
                "FutureThing",
                json!({"user_id": id, "secret_field": "personal", "flag": true}),
                &me,
            ),
        ];
        for (happens, stream, event_type, payload, actor) in later {
            if happens {
                self.push_a(stream, event_type, payload, actor);
            }
        }
    }

    /// Logins only, each in a session of its own: `(user, app, when)`. Sessions are numbered
    /// by their place in the list.
    pub fn logins(logins: &[(usize, &str, DateTime<Utc>)]) -> Self {
        let mut s = Self {
            entries: Vec::new(),
            next: 0,
        };
        for (k, &(u, app, at)) in logins.iter().enumerate() {
            // Ids from the time, so two scenarios of different times append side by side.
            s.next = at.timestamp() / 60 * 64 + k as i64;
            let sid = session(u, k);
            s.push(
                format!("session-{sid}"),
                "UserLoggedIn",
                json!({"session_id": sid, "user_id": user(u), "appid": app,
                       "openid": format!("o{u}"), "is_new_user": false}),
                Actor::User(UserId::from_uuid(user(u))),
                app,
            );
            if let Some(last) = s.entries.last_mut() {
                last.event.occurred_at = at;
            }
        }
        s
    }

    /// A scenario of these entries.
    pub fn from_entries(entries: &[Entry]) -> Self {
        Self {
            entries: entries
                .iter()
                .map(|e| Entry {
                    stream: e.stream.clone(),
                    event: e.event.clone(),
                })
                .collect(),
            next: 0,
        }
    }

    /// Appends every entry, `per_append` at a time.
    pub async fn append_to(&self, store: &dyn Store, per_append: usize) -> i64 {
        let mut last = 0;
        for chunk in self.entries.chunks(per_append) {
            let mut batch = AppendBatch::default();
            for entry in chunk {
                batch = batch.stream(
                    entry.stream.clone(),
                    ExpectedVersion::Any,
                    vec![entry.event.clone()],
                );
            }
            let recorded = store.append(batch).await.unwrap();
            last = recorded.iter().map(|e| e.position).max().unwrap_or(last);
        }
        last
    }
}
