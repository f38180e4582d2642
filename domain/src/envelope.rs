//! What travels with every event besides its payload.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{AppId, UserId};

/// Who caused an event. Serialised as `user:{id}`, `admin:{key id}` or `system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Admin(String),
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Admin(key) => write!(f, "admin:{key}"),
            Self::System => f.write_str("system"),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        if raw == "system" {
            return Ok(Self::System);
        }
        if let Some(id) = raw.strip_prefix("user:") {
            return UserId::parse(id)
                .map(Self::User)
                .map_err(serde::de::Error::custom);
        }
        if let Some(key) = raw.strip_prefix("admin:") {
            return Ok(Self::Admin(key.to_owned()));
        }
        Err(serde::de::Error::custom(
            "actor must be user:…, admin:… or system",
        ))
    }
}

/// Event metadata: who, from where, and which request caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub actor: Actor,
    pub appid: Option<AppId>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The request that started the chain of events.
    pub correlation_id: Uuid,
    /// The event (or request) that directly caused this one.
    pub causation_id: Option<Uuid>,
}

impl Metadata {
    pub fn system(correlation_id: Uuid) -> Self {
        Self {
            actor: Actor::System,
            appid: None,
            client_ip: None,
            user_agent: None,
            correlation_id,
            causation_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_as_strings() {
        for actor in [
            Actor::System,
            Actor::Admin("key_1".into()),
            Actor::User(UserId::from_uuid(Uuid::from_u128(9))),
        ] {
            let json = serde_json::to_string(&actor).unwrap();
            assert_eq!(serde_json::from_str::<Actor>(&json).unwrap(), actor);
        }
        assert!(serde_json::from_str::<Actor>("\"robot\"").is_err());
    }
}
