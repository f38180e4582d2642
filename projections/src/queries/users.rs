use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    json_or_null_at, time_at, time_or_null_at, uuid_at, Page, PageRequest, UserFilter, Where,
};
use crate::cursor::{self, UserCursor};
use crate::db::placeholders;
use crate::error::ProjectionError;
use crate::ReadModels;

/// A WeChat account of the user. The read model keeps the openid sealed under the user's data
/// key; the admin API opens it (null once the user is erased).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccountRecord {
    pub appid: String,
    pub openid: Option<String>,
}

/// A user from the `users` read model.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UserRecord {
    pub user_id: Uuid,
    /// `active`, `blocked` or `erased`.
    pub status: String,
    /// Sealed in the read model; opened by the admin API.
    pub unionid: Option<String>,
    /// In the order they were linked.
    pub accounts: Vec<AccountRecord>,
    /// The shared profile: its field names in lists, the opened profile in the detail view.
    #[schema(value_type = Option<Object>)]
    pub profile: Option<serde_json::Value>,
    /// A keyed hash, for look-ups only: not shown.
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub phone_index: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

const USER_COLUMNS: &str =
    "user_id, status, unionid, phone_index, profile, created_at, updated_at, last_login_at";

impl ReadModels {
    pub async fn user(&self, user_id: Uuid) -> Result<Option<UserRecord>, ProjectionError> {
        let mut w = Where::default();
        let p = w.arg(user_id.to_string());
        w.and(format!("user_id = {p}"));
        let mut users = self.select_users(&w, "").await?;
        Ok(users.pop())
    }

    /// Users matching the filter, newest first.
    pub async fn find_users(
        &self,
        filter: &UserFilter,
        page: &PageRequest,
    ) -> Result<Page<UserRecord>, ProjectionError> {
        let after = page
            .cursor
            .as_deref()
            .map(cursor::decode::<UserCursor>)
            .transpose()?;
        let mut w = Where::default();
        if let Some(ids) = &filter.user_ids {
            if ids.is_empty() {
                return Ok(Page::from_rows(
                    Vec::new(),
                    page.size(),
                    |u: &UserRecord| cursor::encode(&UserCursor { u: u.user_id }),
                ));
            }
            let list: Vec<String> = ids.iter().map(|id| w.arg(id.to_string())).collect();
            w.and(format!("user_id IN ({})", list.join(", ")));
        }
        if let Some(appid) = &filter.appid {
            let a = w.arg(appid.as_str());
            w.and(format!(
                "EXISTS (SELECT 1 FROM user_accounts a WHERE a.user_id = users.user_id AND a.appid = {a})"
            ));
        }
        for (column, value) in [
            ("phone_index", &filter.phone_index),
            ("status", &filter.status),
        ] {
            if let Some(value) = value {
                let p = w.arg(value.as_str());
                w.and(format!("{column} = {p}"));
            }
        }
        if let Some(after) = after {
            let p = w.arg(after.u.to_string());
            w.and(format!("user_id < {p}"));
        }
        let size = page.size();
        let limit = w.arg(size as i64 + 1);
        let users = self
            .select_users(&w, &format!("ORDER BY user_id DESC LIMIT {limit}"))
            .await?;
        Ok(Page::from_rows(users, size, |u: &UserRecord| {
            cursor::encode(&UserCursor { u: u.user_id })
        }))
    }

    async fn select_users(
        &self,
        w: &Where,
        tail: &str,
    ) -> Result<Vec<UserRecord>, ProjectionError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users {} {tail}", w.sql());
        let rows = w.fetch_all(self.db(), &sql).await?;
        let mut users = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        if users.is_empty() {
            return Ok(users);
        }
        let sql = format!(
            "SELECT user_id, appid, openid FROM user_accounts WHERE user_id IN ({}) \
             ORDER BY linked_at, appid, openid",
            placeholders(1, users.len())
        );
        let users_ref = &users;
        let rows = self
            .db()
            .read(|pool| {
                let sql = &sql;
                async move {
                    let mut query = sqlx::query(sql);
                    for user in users_ref {
                        query = query.bind(user.user_id.to_string());
                    }
                    Ok(query.fetch_all(&pool).await?)
                }
            })
            .await?;
        let mut accounts: HashMap<String, Vec<AccountRecord>> = HashMap::new();
        for row in rows {
            accounts
                .entry(row.try_get("user_id")?)
                .or_default()
                .push(AccountRecord {
                    appid: row.try_get("appid")?,
                    openid: Some(row.try_get("openid")?),
                });
        }
        for user in &mut users {
            user.accounts = accounts
                .remove(&user.user_id.to_string())
                .unwrap_or_default();
        }
        Ok(users)
    }
}

fn decode(row: &AnyRow) -> Result<UserRecord, ProjectionError> {
    Ok(UserRecord {
        user_id: uuid_at(row, "user_id")?,
        status: row.try_get("status")?,
        unionid: row.try_get("unionid")?,
        accounts: Vec::new(),
        profile: json_or_null_at(row, "profile")?,
        phone_index: row.try_get("phone_index")?,
        created_at: time_at(row, "created_at")?,
        updated_at: time_at(row, "updated_at")?,
        last_login_at: time_or_null_at(row, "last_login_at")?,
    })
}
