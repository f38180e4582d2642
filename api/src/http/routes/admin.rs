//! The admin API: user look-up, login history, audit log, daily stats, block and unblock.
//! Reads come from the read models (eventually consistent, typically milliseconds behind);
//! writes are events whose actor is the calling API key.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration, Utc};
use domain::{AppId, UserId};
use projections::{
    AuditFilter, AuditRecord, DailyStatsRecord, LoginFilter, LoginRecord, Page, UserFilter,
    UserRecord,
};
use serde::{Deserialize, Serialize};

use crate::http::api_key::{AdminRead, AdminWrite, Scoped};
use crate::http::extract::{ApiJson, RequestContext};
use crate::http::query::{self, ApiQuery};
use crate::http::ApiError;
use crate::state::AppState;
use crate::usecases::admin::{self, StatusChange};

/// The widest daily-stats range one request may ask for.
pub const MAX_STATS_DAYS: i64 = 366;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/users", get(find_users))
        .route("/v1/admin/users/{id}", get(user))
        .route("/v1/admin/users/{id}/logins", get(user_logins))
        .route("/v1/admin/users/{id}/block", post(block))
        .route("/v1/admin/users/{id}/unblock", post(unblock))
        .route("/v1/admin/logins", get(logins))
        .route("/v1/admin/audit", get(audit))
        .route("/v1/admin/stats/daily", get(daily_stats))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|_| ApiError::InvalidRequest("the user id must be a UUID".into()))
}

fn appid(raw: Option<String>) -> Result<Option<String>, ApiError> {
    raw.map(|a| {
        AppId::parse(&a).map(|_| a).map_err(|_| {
            ApiError::InvalidRequest("appid must be wx followed by 16 hex characters".into())
        })
    })
    .transpose()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    appid: Option<String>,
    openid: Option<String>,
    unionid: Option<String>,
    phone: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn find_users(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    ApiQuery(q): ApiQuery<UsersQuery>,
) -> Result<Json<Page<UserRecord>>, ApiError> {
    let page = query::page(q.limit.as_deref(), q.cursor)?;
    if let Some(status) = &q.status {
        if !matches!(status.as_str(), "active" | "blocked" | "erased") {
            return Err(ApiError::InvalidRequest(
                "status must be active, blocked or erased".into(),
            ));
        }
    }
    let filter = UserFilter {
        appid: appid(q.appid)?,
        openid: q.openid,
        unionid: q.unionid,
        phone_index: q.phone.map(|phone| state.phone_index.of(&phone)),
        status: q.status,
    };
    Ok(Json(state.read_models.find_users(&filter, &page).await?))
}

async fn user(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    Path(id): Path<String>,
) -> Result<Json<UserRecord>, ApiError> {
    let id = user_id(&id)?;
    state
        .read_models
        .user(id.as_uuid())
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginsQuery {
    appid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl LoginsQuery {
    fn parse(self) -> Result<(LoginFilter, projections::PageRequest), ApiError> {
        let from = query::instant("from", self.from.as_deref())?;
        let to = query::instant("to", self.to.as_deref())?;
        query::ordered(from, to)?;
        let page = query::page(self.limit.as_deref(), self.cursor)?;
        let filter = LoginFilter {
            appid: appid(self.appid)?,
            from,
            to,
        };
        Ok((filter, page))
    }
}

async fn user_logins(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LoginsQuery>,
) -> Result<Json<Page<LoginRecord>>, ApiError> {
    let id = user_id(&id)?;
    let (filter, page) = q.parse()?;
    Ok(Json(
        state
            .read_models
            .user_logins(id.as_uuid(), &filter, &page)
            .await?,
    ))
}

async fn logins(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    ApiQuery(q): ApiQuery<LoginsQuery>,
) -> Result<Json<Page<LoginRecord>>, ApiError> {
    let (filter, page) = q.parse()?;
    Ok(Json(state.read_models.logins(&filter, &page).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    user_id: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn audit(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditRecord>>, ApiError> {
    let from = query::instant("from", q.from.as_deref())?;
    let to = query::instant("to", q.to.as_deref())?;
    query::ordered(from, to)?;
    let page = query::page(q.limit.as_deref(), q.cursor)?;
    let filter = AuditFilter {
        user_id: q
            .user_id
            .as_deref()
            .map(user_id)
            .transpose()?
            .map(|id| id.as_uuid()),
        actor: q.actor,
        action: q.action,
        from,
        to,
    };
    Ok(Json(state.read_models.audit(&filter, &page).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    appid: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DailyStats {
    pub days: Vec<DailyStatsRecord>,
}

/// Days are UTC. Without `from`/`to`: the last 30 days.
async fn daily_stats(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<DailyStats>, ApiError> {
    let to = query::day("to", q.to.as_deref())?.unwrap_or_else(|| Utc::now().date_naive());
    let from = query::day("from", q.from.as_deref())?.unwrap_or(to - Duration::days(29));
    query::ordered(Some(from), Some(to))?;
    if (to - from).num_days() >= MAX_STATS_DAYS {
        return Err(ApiError::InvalidRequest(format!(
            "ask for at most {MAX_STATS_DAYS} days at a time"
        )));
    }
    let appid = appid(q.appid)?;
    let days = state
        .read_models
        .daily_stats(appid.as_deref(), from, to)
        .await?;
    Ok(Json(DailyStats { days }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// Why, for the audit log (1 to 500 characters).
    reason: String,
}

#[derive(Debug, Serialize)]
pub struct StatusAnswer {
    pub user_id: UserId,
    pub status: &'static str,
    /// False when the user already had this status (nothing was recorded).
    pub changed: bool,
}

async fn block(
    State(state): State<AppState>,
    Scoped { caller, .. }: Scoped<AdminWrite>,
    ctx: RequestContext,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusRequest>,
) -> Result<Json<StatusAnswer>, ApiError> {
    let id = user_id(&id)?;
    let changed = admin::change_status(
        &state,
        id,
        StatusChange::Block,
        &body.reason,
        &caller.key_id,
        &ctx,
    )
    .await?;
    Ok(Json(StatusAnswer {
        user_id: id,
        status: "blocked",
        changed,
    }))
}

async fn unblock(
    State(state): State<AppState>,
    Scoped { caller, .. }: Scoped<AdminWrite>,
    ctx: RequestContext,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusRequest>,
) -> Result<Json<StatusAnswer>, ApiError> {
    let id = user_id(&id)?;
    let changed = admin::change_status(
        &state,
        id,
        StatusChange::Unblock,
        &body.reason,
        &caller.key_id,
        &ctx,
    )
    .await?;
    Ok(Json(StatusAnswer {
        user_id: id,
        status: "active",
        changed,
    }))
}
