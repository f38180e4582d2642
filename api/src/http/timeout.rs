//! The request timeout: every route answers within `IDENTITY_REQUEST_TIMEOUT_SECS`, reading the
//! body included, or the caller gets 408 `request_timeout` and the connection is closed.
//!
//! It bounds the time to the response's head. The event stream answers its head at once and
//! then streams for as long as the client stays, so it is not cut off; every other route
//! builds its whole body before answering. Writing the body is bounded by the connection's
//! write stall timeout (`http::server`), the stream's included.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

pub async fn limit(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = ApiError::RequestTimeout.into_response();
            // Part of a body may still be on its way: this connection cannot carry another
            // request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
