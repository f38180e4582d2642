//! `login_history`: one row per `UserLoggedIn`. Once the user is erased (`UserErased`) their
//! rows keep only what counts logins (session, user id, app, time, new or not): the openid,
//! client IP and device are emptied, sealed or, for rows from before sealing, clear.

use infra::store::RecordedEvent;

use crate::db::{Rows, Tx};
use crate::error::ProjectionError;
use crate::event::{self, USER_ERASED, USER_LOGGED_IN};
use crate::table::{table, Table};

table! {
    /// One login.
    pub(crate) struct Login as LOGIN_HISTORY = "login_history" {
        position: i64,
        session_id: String,
        user_id: String,
        appid: Option<String>,
        openid: Option<String>,
        occurred_at: i64,
        client_ip: Option<String>,
        device: Option<String>,
        is_new_user: i64,
    }
    key (position)
    // Every query pages newest first by (occurred_at, position) within one of these.
    indexes {
        user (user_id, occurred_at, position),
        app (appid, occurred_at, position),
        time (occurred_at, position),
    }
    write_indexes ()
}

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
    let mut pending: Vec<Login> = Vec::new();
    let mut erased: Vec<String> = Vec::new();
    for e in events {
        if e.event_type == USER_ERASED {
            if let Some(user) = event::user_stream(e).map(|u| u.to_string()) {
                // Rows of this batch not yet written, then (below) those already written.
                for login in pending.iter_mut().filter(|l| l.user_id == user) {
                    login.openid = None;
                    login.client_ip = None;
                    login.device = None;
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
        pending.push(Login {
            position: e.position,
            session_id: session,
            user_id: user.to_string(),
            appid: event::appid(e),
            openid: event::text(e, "openid").map(str::to_owned),
            occurred_at: event::micros(e.occurred_at),
            client_ip: event::client_ip(e),
            device: device(e),
            is_new_user: i64::from(is_new),
        });
    }
    if !pending.is_empty() {
        let mut rows = Rows::new(generation);
        for login in pending {
            rows.push(login);
        }
        rows.append(tx).await?;
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
