//! The events of the identity log. Their names and fields are a contract with analytics
//! consumers: add fields with a new `schema_version`, never rename.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::device::Device;
use crate::event_facts as names;
use crate::ids::{AppId, AvatarId, OpenId, SessionId, UnionId, UserId};

/// What every event type tells the store about itself.
pub trait DomainEvent: Serialize + DeserializeOwned {
    /// The contract name, e.g. `UserRegistered`.
    fn event_type(&self) -> &'static str;
    /// Bumped whenever the payload's shape changes (one upcaster per step, in
    /// [`crate::upcast`]); older versions are upcast on read.
    fn schema_version(&self) -> u32 {
        crate::upcast::current_version(self.event_type())
    }
}

/// Where a unionid was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnionIdSource {
    Code2Session,
    DecryptedData,
    CloudContext,
}

/// Events of the `user-{id}` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum UserEvent {
    /// First login of a new person.
    UserRegistered {
        user_id: UserId,
        appid: AppId,
        openid: OpenId,
    },
    /// Another app's openid joined this user through their shared unionid.
    WeChatAccountLinked { appid: AppId, openid: OpenId },
    /// The user's unionid became known.
    UnionIdLinked {
        unionid: UnionId,
        source: UnionIdSource,
    },
    /// An administrator blocked the user: logins are refused and sessions stop working.
    UserBlocked { reason: String },
    /// An administrator lifted the block.
    UserUnblocked { reason: String },
    /// The user shared WeChat profile data (legacy encrypted `getUserProfile`). The profile
    /// is sealed under the user's data key; `fields` says which fields it holds.
    ProfileAuthorized {
        profile: SealedPersonalData,
        fields: Vec<String>,
    },
    /// The user filled in nickname and/or avatar (the post-2022 way). Schema v2 added
    /// `avatar_id` and `review`, both left out when empty (so v1 payloads read as they are).
    ProfileUpdated {
        profile: SealedPersonalData,
        fields: Vec<String>,
        /// The uploaded avatar the profile's `avatar_url` points to, if it is one of ours.
        /// Every `ProfileUpdated` states it, as it states the whole profile.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar_id: Option<AvatarId>,
        /// Fields WeChat's content check could not clear (`review`, or the check failed):
        /// stored, and flagged for a person to look at.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        review: Vec<String>,
    },
    /// WeChat's image check found an uploaded avatar risky: the image is deleted. When it was
    /// still the profile's avatar, `profile` is the profile without it (sealed, as
    /// `ProfileUpdated` carries it) and `fields` its field names; otherwise both are empty.
    AvatarRejected {
        avatar_id: AvatarId,
        /// WeChat's label, e.g. 20002 (pornography); see `shared/WECHAT.md`.
        label: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<SealedPersonalData>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fields: Vec<String>,
    },
    /// WeChat verified the user's phone number. The keyed hash that admin search looks it up
    /// by is not in the event (the log is immutable, so it would outlive an erasure): it lives
    /// in a deletable look-up table written by the same append.
    PhoneNumberBound { phone: SealedPersonalData },
    /// The user withdrew an authorization; its data stops being shown.
    AuthorizationRevoked { authorization: Authorization },
    /// Personal data erased: the data key is destroyed, so sealed fields stay unreadable.
    UserErased {},
}

/// What a user can authorize and withdraw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authorization {
    Profile,
    Phone,
}

impl Authorization {
    pub const ALL: [Self; 2] = [Self::Profile, Self::Phone];

    /// Its name, as in `DELETE /v1/me/authorizations/{kind}` and in events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Profile => "profile",
            Self::Phone => "phone",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// Personal data as it travels in events: ciphertext under the user's data key (sealed and
/// opened outside the domain). Opaque here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedPersonalData(pub String);

impl DomainEvent for UserEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::UserRegistered { .. } => names::USER_REGISTERED,
            Self::WeChatAccountLinked { .. } => names::WECHAT_ACCOUNT_LINKED,
            Self::UnionIdLinked { .. } => names::UNIONID_LINKED,
            Self::UserBlocked { .. } => names::USER_BLOCKED,
            Self::UserUnblocked { .. } => names::USER_UNBLOCKED,
            Self::ProfileAuthorized { .. } => names::PROFILE_AUTHORIZED,
            Self::ProfileUpdated { .. } => names::PROFILE_UPDATED,
            Self::AvatarRejected { .. } => names::AVATAR_REJECTED,
            Self::PhoneNumberBound { .. } => names::PHONE_NUMBER_BOUND,
            Self::AuthorizationRevoked { .. } => names::AUTHORIZATION_REVOKED,
            Self::UserErased { .. } => names::USER_ERASED,
        }
    }
}

/// Why a session ended without the user logging out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// A refresh token that had already been rotated was presented again: the token family is
    /// presumed stolen, so the whole session goes.
    RefreshTokenReused,
    /// An administrator blocked the user: every open session ends (unblocking revives none).
    UserBlocked,
    /// The user's personal data was erased.
    UserErased,
    /// An administrator revoked the user's sessions.
    AdminAction,
    /// The user ended this session from another one (`DELETE /v1/me/sessions/{id}`).
    UserAction,
}

/// Events of the `session-{id}` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum SessionEvent {
    /// Schema v2: `device` was the raw user agent (`Option<String>`) in v1.
    UserLoggedIn {
        session_id: SessionId,
        user_id: UserId,
        appid: AppId,
        openid: OpenId,
        is_new_user: bool,
        client_ip: Option<String>,
        /// The client's user agent and what it tells: platform, WeChat version.
        device: Option<Device>,
    },
    /// The refresh token rotated; `generation` is the one now valid.
    SessionRefreshed {
        generation: u32,
    },
    UserLoggedOut {},
    /// Schema v2 added `note`.
    SessionRevoked {
        reason: RevocationReason,
        /// An administrator's free-text reason: personal data (sealed under the user's data
        /// key where the log is written).
        #[serde(default)]
        note: Option<String>,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::UserLoggedIn { .. } => names::USER_LOGGED_IN,
            Self::SessionRefreshed { .. } => names::SESSION_REFRESHED,
            Self::UserLoggedOut { .. } => names::USER_LOGGED_OUT,
            Self::SessionRevoked { .. } => names::SESSION_REVOKED,
        }
    }
}

/// Why a login was refused, as recorded on the app's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    InvalidCode,
    HighRisk,
    Blocked,
    RateLimited,
}

/// Events of the `app-{appid}` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum AppEvent {
    LoginRejected {
        appid: AppId,
        reason: RejectionReason,
        /// Known only when WeChat accepted the code (a blocked user).
        openid: Option<OpenId>,
        client_ip: Option<String>,
    },
}

impl DomainEvent for AppEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::LoginRejected { .. } => names::LOGIN_REJECTED,
        }
    }
}

/// Splits an event into its contract name and its payload, as the store keeps them.
pub fn to_stored<E: DomainEvent>(
    event: &E,
) -> Result<(String, serde_json::Value), serde_json::Error> {
    let mut tagged = serde_json::to_value(event)?;
    let payload = tagged
        .get_mut("payload")
        .map(serde_json::Value::take)
        .unwrap_or_else(|| serde_json::json!({}));
    Ok((event.event_type().to_owned(), payload))
}

/// Joins a stored name and payload back into an event of the stream's type.
pub fn from_stored<E: DomainEvent>(
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<E, serde_json::Error> {
    serde_json::from_value(serde_json::json!({ "event_type": event_type, "payload": payload }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn stored_form_round_trips_with_the_contract_name() {
        let event = UserEvent::UserRegistered {
            user_id: UserId::from_uuid(Uuid::nil()),
            appid: AppId::parse("wx0123456789abcdef").unwrap(),
            openid: OpenId::parse("openid_1").unwrap(),
        };
        let (name, payload) = to_stored(&event).unwrap();
        assert_eq!(name, "UserRegistered");
        assert_eq!(payload["openid"], "openid_1");
        assert!(payload.get("event_type").is_none());
        let back: UserEvent = from_stored(&name, &payload).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn an_authorization_is_named_as_in_events() {
        for kind in Authorization::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(Authorization::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Authorization::parse("Phone"), None);
    }

    #[test]
    fn an_event_without_fields_round_trips() {
        let (name, payload) = to_stored(&SessionEvent::UserLoggedOut {}).unwrap();
        assert_eq!(name, "UserLoggedOut");
        let back: SessionEvent = from_stored(&name, &payload).unwrap();
        assert_eq!(back, SessionEvent::UserLoggedOut {});
    }
}
