//! Which fields of each event identify a person and are sealed under the user's data key
//! (`infra::personal_data::codec` seals and opens them), so erasing the key erases them; the
//! domain itself works with their clear values. The list lives with the other facts of each
//! event type ([`crate::event_facts::EVENTS`], `sealed`).

use crate::event_facts::facts;

/// Payload fields sealed under the subject's data key, for an event type (none for types not
/// listed). `UserLoggedIn`'s `device` is sealed whole (its user agent identifies). Besides
/// these, the metadata's `client_ip` and `user_agent` are sealed on every event of a user or
/// session stream; the profile and the phone are sealed by the use cases that write them.
pub fn personal_fields(event_type: &str) -> &'static [&'static str] {
    facts(event_type).map_or(&[], |f| f.sealed)
}
