//! `login_history`: one row per `UserLoggedIn`.

use infra::store::RecordedEvent;
use sqlx::AnyConnection;

use crate::db::{Rows, Val};
use crate::error::ProjectionError;
use crate::event::{self, USER_LOGGED_IN};
use crate::schema::{Col, Table};

pub(crate) const LOGIN_HISTORY: Table = Table {
    name: "login_history",
    columns: &[
        ("position", Col::Int),
        ("session_id", Col::Text),
        ("user_id", Col::Text),
        ("appid", Col::TextNull),
        ("openid", Col::TextNull),
        ("occurred_at", Col::Int),
        ("client_ip", Col::TextNull),
        ("device", Col::TextNull),
        ("is_new_user", Col::Int),
    ],
    key: &["position"],
    // Every query pages newest first by (occurred_at, position) within one of these.
    indexes: &[
        ("user", &["user_id", "occurred_at", "position"]),
        ("app", &["appid", "occurred_at", "position"]),
        ("time", &["occurred_at", "position"]),
    ],
    write_indexes: &[],
};

pub(crate) const TABLES: &[Table] = &[LOGIN_HISTORY];

/// The login's device as kept here: since v3 the whole `{user_agent, platform,
/// wechat_version}` sealed under the user's data key (the admin API opens it and shows the
/// user agent); a clear v2 object gives its user agent.
fn device(e: &RecordedEvent) -> Option<String> {
    match e.payload.get("device")? {
        serde_json::Value::String(sealed) => Some(sealed.clone()),
        device => device
            .get("user_agent")
            .and_then(|ua| ua.as_str())
            .map(str::to_owned),
    }
}

pub(super) async fn apply(
    conn: &mut AnyConnection,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let mut rows = Rows::new(&LOGIN_HISTORY, generation);
    for e in events.iter().filter(|e| e.event_type == USER_LOGGED_IN) {
        let Some(user) = event::uuid_field(e, "user_id") else {
            continue;
        };
        let session = event::uuid_field(e, "session_id")
            .or_else(|| event::stream_uuid(e, "session"))
            .map_or_else(|| e.stream_id.to_string(), |id| id.to_string());
        let is_new = e.payload.get("is_new_user").and_then(|v| v.as_bool()) == Some(true);
        rows.push([
            Val::from(e.position),
            session.into(),
            user.to_string().into(),
            event::appid(e).into(),
            event::text(e, "openid").map(str::to_owned).into(),
            event::micros(e.occurred_at).into(),
            event::client_ip(e).into(),
            device(e).into(),
            i64::from(is_new).into(),
        ]);
    }
    if !rows.is_empty() {
        rows.insert(conn, "").await?;
    }
    Ok(())
}
