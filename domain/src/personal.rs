//! Which fields of each event identify a person. They are stored sealed under the user's data
//! key (`infra::personal_data::codec` seals and opens them), so erasing the key erases them;
//! the domain itself works with their clear values.

/// Payload fields sealed under the subject's data key, per event type. `UserLoggedIn`'s
/// `device` is sealed whole (its user agent identifies). Besides these, the metadata's
/// `client_ip` and `user_agent` are sealed on every event of a user or session stream; the
/// profile and the phone are sealed by the use cases that write them.
pub const PERSONAL_FIELDS: &[(&str, &[&str])] = &[
    ("UserRegistered", &["openid"]),
    ("WeChatAccountLinked", &["openid"]),
    ("UnionIdLinked", &["unionid"]),
    ("UserLoggedIn", &["openid", "client_ip", "device"]),
    ("UserBlocked", &["reason"]),
    ("UserUnblocked", &["reason"]),
    // An admin's free-text note when revoking sessions.
    ("SessionRevoked", &["note"]),
];

/// The personal payload fields of an event type (none for types not listed).
pub fn personal_fields(event_type: &str) -> &'static [&'static str] {
    PERSONAL_FIELDS
        .iter()
        .find(|(name, _)| *name == event_type)
        .map_or(&[], |(_, fields)| fields)
}
