use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{time_at, uuid_at, LoginFilter, Page, PageRequest, TimeList, Where};
use crate::error::ProjectionError;
use crate::ReadModels;

/// One login from the `login_history` read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LoginRecord {
    pub position: i64,
    pub session_id: String,
    pub user_id: Uuid,
    pub appid: Option<String>,
    pub openid: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub client_ip: Option<String>,
    /// The client's user agent.
    pub device: Option<String>,
    pub is_new_user: bool,
}

impl ReadModels {
    /// A user's logins, newest first.
    pub async fn user_logins(
        &self,
        user_id: Uuid,
        filter: &LoginFilter,
        page: &PageRequest,
    ) -> Result<Page<LoginRecord>, ProjectionError> {
        self.query_logins(Some(user_id), filter, page).await
    }

    /// Everyone's logins (in an app), newest first.
    pub async fn logins(
        &self,
        filter: &LoginFilter,
        page: &PageRequest,
    ) -> Result<Page<LoginRecord>, ProjectionError> {
        self.query_logins(None, filter, page).await
    }

    async fn query_logins(
        &self,
        user_id: Option<Uuid>,
        filter: &LoginFilter,
        page: &PageRequest,
    ) -> Result<Page<LoginRecord>, ProjectionError> {
        let mut w = Where::default();
        if let Some(user) = user_id {
            let p = w.arg(user.to_string());
            w.and(format!("user_id = {p}"));
        }
        if let Some(appid) = &filter.appid {
            let p = w.arg(appid.as_str());
            w.and(format!("appid = {p}"));
        }
        self.newest_first(LOGINS, w, filter.from, filter.to, page)
            .await
    }
}

const LOGINS: TimeList<LoginRecord> = TimeList {
    kind: 'l',
    columns: "position, session_id, user_id, appid, openid, occurred_at, client_ip, device, \
              is_new_user",
    view: "login_history",
    decode,
    key: |r| (r.occurred_at, r.position),
};

fn decode(row: &AnyRow) -> Result<LoginRecord, ProjectionError> {
    Ok(LoginRecord {
        position: row.try_get("position")?,
        session_id: row.try_get("session_id")?,
        user_id: uuid_at(row, "user_id")?,
        appid: row.try_get("appid")?,
        openid: row.try_get("openid")?,
        occurred_at: time_at(row, "occurred_at")?,
        client_ip: row.try_get("client_ip")?,
        device: row.try_get("device")?,
        is_new_user: row.try_get::<i64, _>("is_new_user")? != 0,
    })
}
