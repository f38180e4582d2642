//! `login_history`: one row per `UserLoggedIn`. Once the user is erased (`UserErased`) their
//! rows keep only what counts logins (session, user id, app, time, new or not): the openid,
//! client IP and device are emptied, sealed or, for rows from before sealing, clear.

use infra::store::RecordedEvent;

use crate::db::{Rows, Tx, Val};
use crate::error::ProjectionError;
use crate::event::{self, USER_ERASED, USER_LOGGED_IN};
use crate::table::{Col, Table};

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
    tx: &mut Tx,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let mut rows = Rows::new(&LOGIN_HISTORY, generation);
    let mut pending: Vec<[Val; 9]> = Vec::new();
    let mut erased: Vec<String> = Vec::new();
    for e in events {
        if e.event_type == USER_ERASED {
            if let Some(user) = event::user_stream(e).map(|u| u.to_string()) {
                // Rows of this batch not yet written, then (below) those already written.
                for row in pending.iter_mut() {
                    if row[2] == Val::from(user.as_str()) {
                        row[4] = Val::Text(None);
                        row[6] = Val::Text(None);
                        row[7] = Val::Text(None);
                    }
                }
                erased.push(user);
            }
            continue;
        }
        if e.event_type != USER_LOGGED_IN {
            continue;
        }
        let Some(user) = event::uuid_field(e, "user_id") else {
            continue;
        };
        let session = event::uuid_field(e, "session_id")
            .or_else(|| event::session_stream(e))
            .map_or_else(|| e.stream_id.to_string(), |id| id.to_string());
        let is_new = e.payload.get("is_new_user").and_then(|v| v.as_bool()) == Some(true);
        pending.push([
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
    for row in pending {
        rows.push(row);
    }
    if !rows.is_empty() {
        rows.insert(tx, "").await?;
    }
    let table = LOGIN_HISTORY.physical(generation);
    for user in erased {
        let sql = format!(
            "UPDATE {table} SET openid = NULL, client_ip = NULL, device = NULL WHERE user_id = $1"
        );
        sqlx::query(&sql).bind(user).execute(&mut **tx).await?;
    }
    Ok(())
}
