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
            // `UserLoggedIn` v2: `device` is `{user_agent, platform, wechat_version}`.
            e.payload
                .get("device")
                .and_then(|d| d.get("user_agent"))
                .and_then(|ua| ua.as_str())
                .map(str::to_owned)
                .into(),
            i64::from(is_new).into(),
        ]);
    }
    if !rows.is_empty() {
        rows.insert(conn, "").await?;
    }
    Ok(())
}
