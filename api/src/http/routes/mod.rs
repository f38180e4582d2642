//! The router: every route module exposes `fn router()`. Each handler carries its
//! `#[utoipa::path]` documentation; `http::openapi` lists them, and its tests fail when a route
//! is served but not documented.

pub(crate) mod admin;
pub(crate) mod cloud_login;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod login;
pub(crate) mod me;
pub(crate) mod metrics;
pub(crate) mod profile;
pub(crate) mod sessions;
pub(crate) mod tokens;
pub(crate) mod wellknown;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use super::{openapi, ApiError};
use crate::state::AppState;

/// JSON bodies we accept are small; anything larger is a mistake or an attack.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(login::router())
        .merge(admin::router())
        .merge(events::router())
        .merge(tokens::router())
        .merge(me::router())
        .merge(profile::router())
        .merge(sessions::router())
        .merge(cloud_login::router())
        .merge(wellknown::router())
        .merge(health::router())
        .merge(metrics::router())
        // `/openapi.json` and `/docs` (Swagger UI), unauthenticated.
        .merge(openapi::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .layer(
            // Spans carry the method and the matched route, never the query string or headers:
            // those may hold tokens or personal data.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map_or("unmatched", |p| p.as_str());
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), route, request_id = id)
                })
                .on_request(())
                .on_response(
                    |res: &axum::http::Response<_>, latency: Duration, _span: &tracing::Span| {
                        tracing::debug!(
                            status = res.status().as_u16(),
                            latency_ms = latency.as_millis() as u64,
                            "answered"
                        );
                    },
                ),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, UuidV7RequestId))
        .with_state(state)
}

/// Keeps a caller's `x-request-id` if it is a UUID, else mints a UUIDv7 (it becomes the
/// events' correlation id).
#[derive(Clone, Copy)]
struct UuidV7RequestId;

impl MakeRequestId for UuidV7RequestId {
    fn make_request_id<B>(&mut self, req: &Request<B>) -> Option<RequestId> {
        let given = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::try_parse(v).ok());
        let id = given.unwrap_or_else(Uuid::now_v7);
        id.to_string().parse().ok().map(RequestId::new)
    }
}
