//! The one body limit of every route, and its one answer: 413 `payload_too_large`.
//!
//! Each route reads at most [`DEFAULT_MAX_BODY_BYTES`] of a request body, or the larger limit
//! `routes::LARGER_BODIES` gives it. A body that declares more (`Content-Length`) is refused
//! before the route runs; a body that does not (chunked) is refused as soon as the route has
//! read past the limit, whatever the route's extractor made of the failed read (axum's `Form`
//! calls it a 400, `Multipart` a malformed form): the answer is replaced here. So JSON, forms,
//! multipart uploads, WeChat's pushes and anything else all meet the same limit and the same
//! answer, a problem that the console's layer shows as its own 413 page.
//!
//! axum's own limit (`DefaultBodyLimit`) is switched off beneath this layer: two limits would
//! only disagree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::{routes, ApiError};

/// What a route reads of a body unless `routes::LARGER_BODIES` says otherwise. The JSON
/// bodies and forms we accept are small; anything larger is a mistake or an attack.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

/// The most the route `route` (as matched, e.g. `/v1/wechat/push/{appid}`) reads of a body.
pub fn limit_of(route: Option<&str>) -> usize {
    routes::LARGER_BODIES
        .iter()
        .find(|(path, _)| Some(*path) == route)
        .map_or(DEFAULT_MAX_BODY_BYTES, |(_, limit)| *limit)
}

/// `router` with the limit on every route it has so far. Apply it after the routes are added
/// (the layer runs after routing, so the matched route is known) and inside any layer that
/// renders answers its own way (the console's).
pub fn limited<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(axum::middleware::from_fn(enforce))
        .layer(DefaultBodyLimit::disable())
}

async fn enforce(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let limit = limit_of(route);
    if req.body().size_hint().lower() > limit as u64 {
        return ApiError::PayloadTooLarge.into_response();
    }
    let crossed = Arc::new(AtomicBool::new(false));
    let seen = crossed.clone();
    let req = req.map(|body| {
        let limited = Limited::new(body, limit).map_err(move |err| {
            if err.is::<LengthLimitError>() {
                seen.store(true, Ordering::Relaxed);
            }
            err
        });
        Body::new(limited)
    });
    let response = next.run(req).await;
    if crossed.load(Ordering::Relaxed) {
        ApiError::PayloadTooLarge.into_response()
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::Form;
    use axum::http::{header, StatusCode};
    use axum::routing::post;
    use futures::stream;
    use tower::ServiceExt;

    use super::*;

    /// Reads a form the way axum does, mapping every failure to a 400, as a careless route
    /// would: the limit's answer must still be 413.
    async fn careless(
        body: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
    ) -> StatusCode {
        match body {
            Ok(_) => StatusCode::NO_CONTENT,
            Err(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn app() -> Router {
        limited(Router::new().route("/form", post(careless)))
    }

    async fn answer(body: Body, length: Option<usize>) -> (StatusCode, Option<String>) {
        let mut request = Request::post("/form")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(length) = length {
            request = request.header(header::CONTENT_LENGTH, length);
        }
        let response = app()
            .oneshot(request.body(body).expect("a request"))
            .await
            .expect("an answer");
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("ascii").to_owned());
        (response.status(), content_type)
    }

    fn chunked(total: usize) -> Body {
        let chunks = (0..total.div_ceil(1024))
            .map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'a'; 1024])));
        Body::from_stream(stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reaches_the_route() {
        let form = "a=".to_owned() + &"b".repeat(DEFAULT_MAX_BODY_BYTES - 2);
        let (status, _) = answer(Body::from(form), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    #[tokio::test]
    async fn an_over_limit_body_is_413_whatever_the_route_made_of_it() {
        let over = DEFAULT_MAX_BODY_BYTES + 1;
        let problem = Some(super::super::error::PROBLEM_CONTENT_TYPE.to_owned());
        // Declared: refused before the route runs.
        let declared = answer(Body::from(vec![b'a'; over]), Some(over)).await;
        assert_eq!(declared, (StatusCode::PAYLOAD_TOO_LARGE, problem.clone()));
        // Chunked, without a length: refused once read past the limit.
        let streamed = answer(chunked(4 * DEFAULT_MAX_BODY_BYTES), None).await;
        assert_eq!(streamed, (StatusCode::PAYLOAD_TOO_LARGE, problem));
    }

    #[test]
    fn larger_limits_are_the_routes_own() {
        assert_eq!(limit_of(None), DEFAULT_MAX_BODY_BYTES);
        assert_eq!(limit_of(Some("/v1/wechat/login")), DEFAULT_MAX_BODY_BYTES);
        for (route, limit) in routes::LARGER_BODIES {
            assert!(limit > DEFAULT_MAX_BODY_BYTES, "{route}");
            assert_eq!(limit_of(Some(route)), limit);
        }
    }
}
