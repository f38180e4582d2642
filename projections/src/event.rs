//! Reading what projections need from a recorded event. Payloads are read as loose JSON, not
//! as the domain's types: an event written by a newer or older version of the service, or one
//! missing a field, is skipped or read in part, never a reason for a runner to stop.

use chrono::{DateTime, NaiveDate, Utc};
use infra::store::RecordedEvent;
use serde_json::Value;
use uuid::Uuid;

pub(crate) const USER_REGISTERED: &str = "UserRegistered";
pub(crate) const WECHAT_ACCOUNT_LINKED: &str = "WeChatAccountLinked";
pub(crate) const UNIONID_LINKED: &str = "UnionIdLinked";
pub(crate) const USER_LOGGED_IN: &str = "UserLoggedIn";
pub(crate) const USER_BLOCKED: &str = "UserBlocked";
pub(crate) const USER_UNBLOCKED: &str = "UserUnblocked";
pub(crate) const PROFILE_AUTHORIZED: &str = "ProfileAuthorized";
pub(crate) const PROFILE_UPDATED: &str = "ProfileUpdated";
pub(crate) const PHONE_NUMBER_BOUND: &str = "PhoneNumberBound";
pub(crate) const AUTHORIZATION_REVOKED: &str = "AuthorizationRevoked";
pub(crate) const USER_ERASED: &str = "UserErased";

/// A string field of the payload.
pub(crate) fn text<'e>(event: &'e RecordedEvent, key: &str) -> Option<&'e str> {
    event.payload.get(key).and_then(Value::as_str)
}

pub(crate) fn uuid_field(event: &RecordedEvent, key: &str) -> Option<Uuid> {
    text(event, key).and_then(|s| Uuid::try_parse(s).ok())
}

/// The id in a stream name like `user-{id}`.
pub(crate) fn stream_uuid(event: &RecordedEvent, kind: &str) -> Option<Uuid> {
    event
        .stream_id
        .as_str()
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|id| Uuid::try_parse(id).ok())
}

/// The user an event is about: its user stream, else a `user_id` in the payload.
pub(crate) fn user_of(event: &RecordedEvent) -> Option<Uuid> {
    stream_uuid(event, "user").or_else(|| uuid_field(event, "user_id"))
}

/// The app an event happened in: the payload's `appid`, else the metadata's.
pub(crate) fn appid(event: &RecordedEvent) -> Option<String> {
    text(event, "appid")
        .map(str::to_owned)
        .or_else(|| event.metadata.appid.as_ref().map(|a| a.to_string()))
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

/// The UTC day, as stored (`YYYY-MM-DD` sorts as text).
pub(crate) fn day(time: DateTime<Utc>) -> String {
    day_text(time.date_naive())
}

pub(crate) fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}
