//! The service's router: the routes and their documentation behind the layers every request
//! passes (timeout, panic catcher, tracing, request ids).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Request};
use axum::Router;
use tower::util::MapRequestLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use super::state::AppState;
use super::{body_limit, openapi, request_metrics, routes, timeout, ApiError};

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    // `/openapi.json` and `/docs` (Swagger UI), unauthenticated.
    let api = routes::api().merge(openapi::router());
    // The console limits its own routes, inside the layer that renders its refusals as pages.
    body_limit::limited(api)
        // The admin console's HTML pages (not in the OpenAPI document).
        .merge(crate::console::router(state.clone()))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.request_timeout,
            timeout::limit,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        // Outside the timeout and the panic catcher, so their answers are counted too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_metrics::observe,
        ))
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
        .layer(MapRequestLayer::new(
            drop_foreign_request_id::<axum::body::Body>,
        ))
        .with_state(state)
}

/// A caller's `x-request-id` is kept only if it is a UUID (then in its canonical form): it is
/// echoed, logged and becomes the events' correlation id, so it must not be text of the
/// caller's choosing. Anything else is dropped, and `UuidV7RequestId` mints one in its place.
fn drop_foreign_request_id<B>(mut req: Request<B>) -> Request<B> {
    let given = req.headers().get(REQUEST_ID).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| Uuid::try_parse(v).ok())
            .and_then(|id| HeaderValue::from_str(&id.to_string()).ok())
    });
    match given {
        Some(Some(canonical)) => {
            req.headers_mut().insert(REQUEST_ID, canonical);
        }
        Some(None) => {
            req.headers_mut().remove(REQUEST_ID);
        }
        None => {}
    }
    req
}

const REQUEST_ID: &str = "x-request-id";

/// Mints a UUIDv7 for a request that came without a (valid) one.
#[derive(Clone, Copy)]
struct UuidV7RequestId;

impl MakeRequestId for UuidV7RequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}
