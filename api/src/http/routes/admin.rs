//! The admin API: user look-up, login history, audit log, daily stats, block and unblock.
//! Reads come from the read models (eventually consistent, typically milliseconds behind);
//! writes are events whose actor is the calling API key.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use domain::{AppId, UserId};
use projections::{
    AuditFilter, AuditRecord, DailyStatsRecord, LoginFilter, LoginRecord, Page, UserRecord,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::api_key::{AdminRead, AdminWrite, Scoped};
use crate::http::extract::{AdminAction, ApiJson};
use crate::http::query::{self, ApiQuery, PageParams};
use crate::http::responses::{
    AdminActionErrors, BadQuery, BadUserId, ConflictError, KeyErrors, NoSuchUser,
};
use crate::http::state::AppState;
use crate::http::values;
use crate::http::ApiError;
use crate::usecases::admin::{self, StatusChange};
use crate::usecases::lookup::{self, UserSearch};
use crate::usecases::{profile, Context};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/users", get(find_users))
        .route("/v1/admin/users/{id}", get(user))
        .route("/v1/admin/users/{id}", delete(erase))
        .route("/v1/admin/users/{id}/logins", get(user_logins))
        .route("/v1/admin/users/{id}/block", post(block))
        .route("/v1/admin/users/{id}/unblock", post(unblock))
        .route("/v1/admin/logins", get(logins))
        .route("/v1/admin/audit", get(audit))
        .route("/v1/admin/stats/daily", get(daily_stats))
}

/// A user id, from the path or the audit log's `user_id`.
fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|_| ApiError::InvalidRequest("the user id must be a UUID".into()))
}

/// The user an admin route names, `/v1/admin/users/{id}…` (the admin user routes and the
/// admin session routes), read as text so that a bad one is our 400 once the rest of the
/// request has been read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct UserPath {
    /// The user id
    #[param(value_type = uuid::Uuid)]
    id: String,
}

impl UserPath {
    pub(super) fn parse(&self) -> Result<UserId, ApiError> {
        user_id(&self.id)
    }
}

pub(crate) fn appid(raw: Option<String>) -> Result<Option<String>, ApiError> {
    raw.map(|a| {
        AppId::parse(&a).map(|_| a).map_err(|_| {
            ApiError::InvalidRequest("appid must be wx followed by 16 hex characters".into())
        })
    })
    .transpose()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// An appid.
    #[param(value_type = Option<values::AppId>)]
    appid: Option<String>,
    /// An openid: in `appid`'s app, or in any configured app without `appid`. Matched through
    /// the claims' keyed hash (no table holds openids in clear); an erased user's is gone.
    openid: Option<String>,
    /// A unionid, matched through the claims' keyed hash.
    unionid: Option<String>,
    /// The bound phone number, matched through a keyed hash.
    phone: Option<String>,
    #[param(value_type = Option<UserStatus>)]
    status: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: PageParams,
}

/// Find users
///
/// By WeChat account, unionid, phone or status; keyset pagination.
#[utoipa::path(
    get,
    path = "/v1/admin/users",
    tag = "admin",
    params(UsersQuery, PageParams),
    security(("api_key" = ["admin:read"])),
    description = "By WeChat account, unionid, phone or status; keyset pagination. \
        Requires an API key with the `admin:read` scope.",
    responses(
        (status = 200, description = "A page of users", body = Page<UserRecord>),
        BadQuery,
        KeyErrors<AdminRead>,
    )
)]
async fn find_users(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    ApiQuery(q): ApiQuery<UsersQuery>,
) -> Result<Json<Page<UserRecord>>, ApiError> {
    let page = q.page.parse()?;
    if q.status
        .as_deref()
        .is_some_and(|s| UserStatus::parse(s).is_none())
    {
        return Err(ApiError::InvalidRequest(
            "status must be active, blocked or erased".into(),
        ));
    }
    let search = UserSearch {
        appid: appid(q.appid)?,
        openid: q.openid,
        unionid: q.unionid,
        phone: q.phone,
        status: q.status,
    };
    Ok(Json(lookup::find_users(&state, search, &page).await?))
}

/// One user
#[utoipa::path(
    get,
    path = "/v1/admin/users/{id}",
    tag = "admin",
    params(UserPath),
    security(("api_key" = ["admin:read"])),
    description = "Status, accounts, unionid, first and last login. Requires an API key with \
        the `admin:read` scope.",
    responses(
        (status = 200, description = "The user", body = UserRecord),
        BadUserId,
        KeyErrors<AdminRead>,
        NoSuchUser,
    )
)]
async fn user(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    Path(id): Path<UserPath>,
) -> Result<Json<UserRecord>, ApiError> {
    Ok(Json(lookup::user(&state, id.parse()?).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LoginsQuery {
    #[param(value_type = Option<values::AppId>)]
    appid: Option<String>,
    /// Earliest login time, RFC 3339, inclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Latest login time, RFC 3339.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: PageParams,
}

impl LoginsQuery {
    /// The filter and page, validated (also the console's login history and its CSV).
    pub(crate) fn parse(self) -> Result<(LoginFilter, projections::PageRequest), ApiError> {
        let from = query::instant("from", self.from.as_deref())?;
        let to = query::instant("to", self.to.as_deref())?;
        query::ordered(from, to)?;
        let page = self.page.parse()?;
        let filter = LoginFilter {
            appid: appid(self.appid)?,
            from,
            to,
        };
        Ok((filter, page))
    }
}

/// A user's logins
#[utoipa::path(
    get,
    path = "/v1/admin/users/{id}/logins",
    tag = "admin",
    params(UserPath, LoginsQuery, PageParams),
    security(("api_key" = ["admin:read"])),
    description = "Newest first; cursor pagination. Requires an API key with the `admin:read` \
        scope.",
    responses(
        (status = 200, description = "A page of logins", body = Page<LoginRecord>),
        (status = 400, description = "`invalid_request`: the user id is not a UUID, an unknown \
            parameter, or a bad value (the detail names it)"),
        KeyErrors<AdminRead>,
    )
)]
async fn user_logins(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    Path(id): Path<UserPath>,
    ApiQuery(q): ApiQuery<LoginsQuery>,
) -> Result<Json<Page<LoginRecord>>, ApiError> {
    let id = id.parse()?;
    let (filter, page) = q.parse()?;
    Ok(Json(
        lookup::logins(&state, Some(id), &filter, &page).await?,
    ))
}

/// All logins
#[utoipa::path(
    get,
    path = "/v1/admin/logins",
    tag = "admin",
    params(LoginsQuery, PageParams),
    security(("api_key" = ["admin:read"])),
    description = "Newest first; cursor pagination. Requires an API key with the `admin:read` \
        scope.",
    responses(
        (status = 200, description = "A page of logins", body = Page<LoginRecord>),
        BadQuery,
        KeyErrors<AdminRead>,
    )
)]
async fn logins(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    ApiQuery(q): ApiQuery<LoginsQuery>,
) -> Result<Json<Page<LoginRecord>>, ApiError> {
    let (filter, page) = q.parse()?;
    Ok(Json(lookup::logins(&state, None, &filter, &page).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The user the entry is about.
    #[param(value_type = Option<String>, format = Uuid)]
    user_id: Option<String>,
    /// Who acted, e.g. `admin:{key id}`.
    actor: Option<String>,
    /// The event type, e.g. `UserBlocked`.
    action: Option<String>,
    /// Earliest time, RFC 3339, inclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Latest time, RFC 3339.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: PageParams,
}

/// The audit log
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    params(AuditQuery, PageParams),
    security(("api_key" = ["admin:read"])),
    description = "Every event as time, actor, action, target, app, client IP and details, \
        personal data redacted; newest first. Refused logins, which are not events, appear as \
        `LoginRejected` tallies (actor `system`, a negative `position`, `attempts` in the \
        details), one per app, day, reason and address, kept for \
        `IDENTITY_REJECTION_RETENTION_DAYS`. Requires an API key with the `admin:read` scope.",
    responses(
        (status = 200, description = "A page of audit entries", body = Page<AuditRecord>),
        BadQuery,
        KeyErrors<AdminRead>,
    )
)]
async fn audit(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditRecord>>, ApiError> {
    let (filter, page) = q.parse()?;
    Ok(Json(lookup::audit(&state, &filter, &page).await?))
}

impl AuditQuery {
    /// The filter and page, validated (also the console's audit log and its CSV).
    pub(crate) fn parse(self) -> Result<(AuditFilter, projections::PageRequest), ApiError> {
        let from = query::instant("from", self.from.as_deref())?;
        let to = query::instant("to", self.to.as_deref())?;
        query::ordered(from, to)?;
        let page = self.page.parse()?;
        let filter = AuditFilter {
            user_id: self
                .user_id
                .as_deref()
                .map(user_id)
                .transpose()?
                .map(|id| id.as_uuid()),
            actor: self.actor,
            action: self.action,
            from,
            to,
        };
        Ok((filter, page))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    #[param(value_type = Option<values::AppId>)]
    appid: Option<String>,
    /// First day (default: 29 days before `to`).
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// Last day (default: today in `IDENTITY_STATS_TIMEZONE`).
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailyStats {
    pub days: Vec<DailyStatsRecord>,
    /// The IANA zone the days start in (`IDENTITY_STATS_TIMEZONE`), e.g. `Asia/Shanghai`.
    pub timezone: String,
}

/// Days start at midnight in `IDENTITY_STATS_TIMEZONE`. Without `from`/`to`: the last 30 days.
#[utoipa::path(
    get,
    path = "/v1/admin/stats/daily",
    tag = "admin",
    params(StatsQuery),
    security(("api_key" = ["admin:read"])),
    summary = "Daily statistics",
    description = "Logins, active users, new users and refused logins by reason \
        (`rejected_logins`) per app per day, days starting at midnight in \
        `IDENTITY_STATS_TIMEZONE` (default UTC; named in `timezone`); the last 30 days \
        unless `from`/`to` say otherwise, at most 366 days. Requires an API key with the \
        `admin:read` scope.",
    responses(
        (status = 200, description = "One entry per day", body = DailyStats),
        (status = 400, description = "`invalid_request`: an unknown parameter, a bad value (the \
            detail names it), `from` after `to`, or more than 366 days"),
        KeyErrors<AdminRead>,
    )
)]
async fn daily_stats(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<DailyStats>, ApiError> {
    let to = query::day("to", q.to.as_deref())?;
    let from = query::day("from", q.from.as_deref())?;
    let appid = appid(q.appid)?;
    let days = lookup::daily_stats(&state, appid.as_deref(), from, to).await?;
    Ok(Json(DailyStats {
        days,
        timezone: state.stats_timezone.name().to_owned(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// Why, for the audit log.
    #[schema(value_type = values::Reason)]
    reason: String,
}

/// A user's status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Blocked,
    Erased,
}

impl UserStatus {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "blocked" => Some(Self::Blocked),
            "erased" => Some(Self::Erased),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusAnswer {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// The user's status now.
    pub status: UserStatus,
    /// False when the user already had this status (nothing was recorded).
    pub changed: bool,
}

/// Block a user
#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/block",
    tag = "admin",
    params(UserPath),
    request_body = StatusRequest,
    security(("api_key" = ["admin:write"])),
    description = "Refuses the user's logins and refreshes (403 `user_blocked`) and stops their sessions at once. Audited, with the API key as the actor. Requires an API key with \
        the `admin:write` scope.",
    responses(
        (status = 200, description = "Blocked (`changed` is false if the user already was)", body = StatusAnswer),
        AdminActionErrors,
        ConflictError,
    )
)]
async fn block(
    State(state): State<AppState>,
    AdminAction(ctx): AdminAction,
    Path(id): Path<UserPath>,
    ApiJson(body): ApiJson<StatusRequest>,
) -> Result<Json<StatusAnswer>, ApiError> {
    set_status(&state, &ctx, &id, StatusChange::Block, &body).await
}

/// Unblock a user
#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/unblock",
    tag = "admin",
    params(UserPath),
    request_body = StatusRequest,
    security(("api_key" = ["admin:write"])),
    description = "Lifts a block. Audited, with the API key as the actor. Requires an API key with \
        the `admin:write` scope.",
    responses(
        (status = 200, description = "Active again (`changed` is false if the user was not blocked)", body = StatusAnswer),
        AdminActionErrors,
        ConflictError,
    )
)]
async fn unblock(
    State(state): State<AppState>,
    AdminAction(ctx): AdminAction,
    Path(id): Path<UserPath>,
    ApiJson(body): ApiJson<StatusRequest>,
) -> Result<Json<StatusAnswer>, ApiError> {
    set_status(&state, &ctx, &id, StatusChange::Unblock, &body).await
}

async fn set_status(
    state: &AppState,
    ctx: &Context,
    id: &UserPath,
    change: StatusChange,
    body: &StatusRequest,
) -> Result<Json<StatusAnswer>, ApiError> {
    let id = id.parse()?;
    let changed = admin::change_status(state, id, change, &body.reason, ctx).await?;
    Ok(Json(StatusAnswer {
        user_id: id,
        status: match change {
            StatusChange::Block => UserStatus::Blocked,
            StatusChange::Unblock => UserStatus::Active,
        },
        changed,
    }))
}

/// Erase a user's personal data
#[utoipa::path(
    delete,
    path = "/v1/admin/users/{id}",
    tag = "admin",
    params(UserPath),
    security(("api_key" = ["admin:write"])),
    description = "Crypto-shredding: records `UserErased` (actor: the API key), destroys the \
        user's data key so every sealed field in the log becomes unreadable, purges the read \
        models, ends every session and frees the user's WeChat accounts. Repeating it is \
        harmless. Requires an API key with the `admin:write` scope.",
    responses(
        (status = 204, description = "Erased"),
        BadUserId,
        KeyErrors<AdminWrite>,
        ConflictError,
        NoSuchUser,
    )
)]
async fn erase(
    State(state): State<AppState>,
    AdminAction(ctx): AdminAction,
    Path(id): Path<UserPath>,
) -> Result<StatusCode, ApiError> {
    profile::erase(&state, id.parse()?, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}
