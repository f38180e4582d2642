//! The routes: every route module exposes `fn router()`. Each handler carries its
//! `#[utoipa::path]` documentation; `http::openapi` lists them, and its tests fail when a route
//! is served but not documented. `http::app` puts them behind the service's layers.

pub(crate) mod admin;
pub(crate) mod avatar;
pub(crate) mod cloud_login;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod login;
pub(crate) mod me;
pub(crate) mod metrics;
pub(crate) mod profile;
pub(crate) mod sessions;
pub(crate) mod tokens;
pub(crate) mod wechat_push;
pub(crate) mod wellknown;

use axum::Router;

use crate::http::state::AppState;

/// The routes that read more of a body than `body_limit::DEFAULT_MAX_BODY_BYTES`, and how much
/// (`http::body_limit` holds every route to its limit; the document states each one).
pub const LARGER_BODIES: [(&str, usize); 2] = [
    ("/v1/me/avatar", avatar::MAX_BODY_BYTES),
    ("/v1/wechat/push/{appid}", wechat_push::MAX_PUSH_BYTES),
];

/// Every route of the API, without the layers.
pub fn api() -> Router<AppState> {
    Router::new()
        .merge(login::router())
        .merge(admin::router())
        .merge(events::router())
        .merge(tokens::router())
        .merge(me::router())
        .merge(profile::router())
        .merge(avatar::router())
        .merge(sessions::router())
        .merge(cloud_login::router())
        .merge(wechat_push::router())
        .merge(wellknown::router())
        .merge(health::router())
        .merge(metrics::router())
}
