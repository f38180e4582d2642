//! Value types that parse once at the edge and are trusted afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value was refused. The message names the field and the rule, never the value itself
/// (a rejected value may be a secret pasted in the wrong place).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub rule: &'static str,
}

impl InvalidValue {
    pub const fn new(field: &'static str, rule: &'static str) -> Self {
        Self { field, rule }
    }
}

macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_value!(
    /// A mini-program's appid: `wx` followed by 16 hex characters.
    AppId
);
string_value!(
    /// A user's id inside one app, as WeChat returns it from `code2Session`.
    OpenId
);
string_value!(
    /// The id shared by every app of one Open Platform account.
    UnionId
);
string_value!(
    /// The one-time `wx.login()` code. Opaque: WeChat judges it, we only bound its shape.
    WeChatCode
);

impl AppId {
    /// What every appid starts with, before its hex digits.
    pub const PREFIX: &'static str = "wx";
    /// How many hex digits (either case) follow the prefix.
    pub const HEX_DIGITS: usize = 16;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let hex = raw
            .strip_prefix(Self::PREFIX)
            .ok_or(InvalidValue::new("appid", "must start with \"wx\""))?;
        if hex.len() != Self::HEX_DIGITS || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidValue::new(
                "appid",
                "must be \"wx\" followed by 16 hex characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// The longest WeChat id (openid, unionid) we accept.
pub const MAX_WECHAT_ID_LEN: usize = 64;

/// WeChat ids (openid, unionid) are 28 URL-safe base64 characters today; we accept a little more
/// room and the same alphabet so a future format still parses, while rejecting garbage.
fn parse_wechat_id(field: &'static str, raw: &str) -> Result<String, InvalidValue> {
    if raw.is_empty() || raw.len() > MAX_WECHAT_ID_LEN {
        return Err(InvalidValue::new(field, "must be 1 to 64 characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(InvalidValue::new(
            field,
            "must be letters, digits, '-' or '_'",
        ));
    }
    Ok(raw.to_owned())
}

impl OpenId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        parse_wechat_id("openid", raw).map(Self)
    }
}

impl UnionId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        parse_wechat_id("unionid", raw).map(Self)
    }
}

impl WeChatCode {
    pub const MAX_LEN: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(InvalidValue::new("code", "must be 1 to 256 characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new("code", "must be printable ASCII"));
        }
        Ok(Self(raw.to_owned()))
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                Uuid::try_parse(raw)
                    .map(Self)
                    .map_err(|_| InvalidValue::new(stringify!($name), "must be a UUID"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Our identity for a person, a UUIDv7. Stream `user-{id}`.
    UserId
);
uuid_id!(
    /// One login, a UUIDv7. Stream `session-{id}`.
    SessionId
);
uuid_id!(
    /// Every stored event's id, a UUIDv7.
    EventId
);
uuid_id!(
    /// An uploaded avatar image (`GET /v1/avatars/{id}`), a random UUIDv4: it says nothing of
    /// whose it is or when it came, and cannot be guessed.
    AvatarId
);

impl AvatarId {
    /// Random (v4), not time-ordered: the URL tells nothing, not even when it was uploaded.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl UserId {
    /// What a user's stream id is made of: this, then the id.
    pub const STREAM_PREFIX: &'static str = "user-";

    pub fn stream(&self) -> StreamId {
        StreamId(format!("{}{}", Self::STREAM_PREFIX, self.0))
    }
}

impl SessionId {
    pub fn stream(&self) -> StreamId {
        StreamId(format!("session-{}", self.0))
    }
}

/// The name of an event stream: `user-{id}`, `session-{id}`, `app-{appid}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    pub fn for_app(app: &AppId) -> Self {
        Self(format!("app-{app}"))
    }

    /// Wraps a name read back from storage, where it was written by one of the constructors.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appid_is_wx_and_16_hex() {
        assert!(AppId::parse("wx0123456789abcdef").is_ok());
        assert!(AppId::parse("wx0123456789ABCDEF").is_ok());
        for bad in [
            "",
            "wx",
            "0123456789abcdef00",
            "wx0123456789abcdeg",
            "wx0123456789abcdef0",
        ] {
            assert!(AppId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn code_is_bounded_printable_ascii() {
        assert!(WeChatCode::parse("081abc+/=xyz").is_ok());
        assert!(WeChatCode::parse(&"a".repeat(256)).is_ok());
        assert!(WeChatCode::parse(&"a".repeat(257)).is_err());
        assert!(WeChatCode::parse("").is_err());
        assert!(WeChatCode::parse("has space").is_err());
        assert!(WeChatCode::parse("tab\t").is_err());
        assert!(WeChatCode::parse("中文").is_err());
    }

    #[test]
    fn openid_rejects_garbage() {
        assert!(OpenId::parse("oZp3s5Xq-abc_DEF123456789012").is_ok());
        assert!(OpenId::parse("").is_err());
        assert!(OpenId::parse("a b").is_err());
        assert!(OpenId::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn deserialising_validates() {
        let ok: Result<AppId, _> = serde_json::from_str("\"wx0123456789abcdef\"");
        assert!(ok.is_ok());
        let bad: Result<AppId, _> = serde_json::from_str("\"nope\"");
        assert!(bad.is_err());
    }

    #[test]
    fn streams_are_named_by_kind() {
        let id = UserId::from_uuid(Uuid::nil());
        assert_eq!(
            id.stream().as_str(),
            "user-00000000-0000-0000-0000-000000000000"
        );
        let app = AppId::parse("wx0123456789abcdef").unwrap();
        assert_eq!(StreamId::for_app(&app).as_str(), "app-wx0123456789abcdef");
    }
}
