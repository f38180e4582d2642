//! Reading what projections need from a recorded event. Payloads are read as loose JSON, not
//! as the domain's types: an event written by a newer or older version of the service, or one
//! missing a field, is skipped or read in part, never a reason for a runner to stop.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use infra::store::RecordedEvent;
use serde_json::Value;
use uuid::Uuid;

use domain::event_facts::StreamKind;
pub(crate) use domain::event_facts::{
    AUTHORIZATION_REVOKED, AVATAR_REJECTED, PHONE_NUMBER_BOUND, PROFILE_AUTHORIZED,
    PROFILE_UPDATED, SESSION_REFRESHED, SESSION_REVOKED, UNIONID_LINKED, USER_BLOCKED, USER_ERASED,
    USER_LOGGED_IN, USER_LOGGED_OUT, USER_REGISTERED, USER_UNBLOCKED, WECHAT_ACCOUNT_LINKED,
};

/// A string field of the payload.
pub(crate) fn text<'e>(event: &'e RecordedEvent, key: &str) -> Option<&'e str> {
    event.payload.get(key).and_then(Value::as_str)
}

pub(crate) fn uuid_field(event: &RecordedEvent, key: &str) -> Option<Uuid> {
    text(event, key).and_then(|s| Uuid::try_parse(s).ok())
}

/// The id of a `user-{id}` stream.
pub(crate) fn user_stream(event: &RecordedEvent) -> Option<Uuid> {
    StreamKind::User.id_in(event.stream_id.as_str())
}

/// The id of a `session-{id}` stream.
pub(crate) fn session_stream(event: &RecordedEvent) -> Option<Uuid> {
    StreamKind::Session.id_in(event.stream_id.as_str())
}

/// The user an event is about: its user stream, else a `user_id` in the payload.
pub(crate) fn user_of(event: &RecordedEvent) -> Option<Uuid> {
    user_stream(event).or_else(|| uuid_field(event, "user_id"))
}

/// The app an event happened in, found as every consumer finds it
/// (`domain::event_facts::appid`).
pub(crate) fn appid(event: &RecordedEvent) -> Option<String> {
    infra::analytics::appid(event).map(str::to_owned)
}

pub(crate) fn client_ip(event: &RecordedEvent) -> Option<String> {
    event
        .metadata
        .client_ip
        .clone()
        .or_else(|| text(event, "client_ip").map(str::to_owned))
}

pub(crate) fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub(crate) fn time_from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// The day in the stats' zone (`IDENTITY_STATS_TIMEZONE`), as stored (`YYYY-MM-DD` sorts as
/// text).
pub(crate) fn day(time: DateTime<Utc>, zone: Tz) -> String {
    day_text(time.with_timezone(&zone).date_naive())
}

pub(crate) fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}
