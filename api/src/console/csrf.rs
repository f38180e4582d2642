//! Form posts of a signed-in session: every one carries the session's CSRF token in a hidden
//! `csrf` field (`session` says how it is made). A post without it, or with another session's,
//! is refused with 403 `forbidden` before the handler runs.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::session::{ConsoleSession, NoSession};
use crate::http::state::AppState;
use crate::http::ApiError;

/// A form posted by a signed-in session, its CSRF token checked; `T` is the rest of the form.
pub struct Posted<T> {
    pub session: ConsoleSession,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

pub const CSRF_REFUSED: &str =
    "the form's CSRF token is missing or wrong: reload the page and submit the form again";

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = NoSession;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = ConsoleSession::from_request_parts(&mut parts, state).await?;
        // Bounded by `http::body_limit`, whose 413 replaces whatever this says of a larger body.
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
        let presented = serde_urlencoded::from_bytes::<CsrfField>(&body)
            .ok()
            .and_then(|f| f.csrf);
        if !presented.is_some_and(|csrf| session.csrf_matches(&csrf)) {
            return Err(ApiError::Forbidden(CSRF_REFUSED).into());
        }
        let form = form_of(&body)?;
        Ok(Self { session, form })
    }
}

/// A form body (`application/x-www-form-urlencoded`) as `T`; unknown fields are ignored.
pub fn form_of<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_urlencoded::from_bytes::<T>(body)
        .map_err(|err| ApiError::InvalidRequest(format!("the form is malformed: {err}")))
}

/// A form with nothing but its CSRF token (sign-out).
#[derive(Debug, Deserialize)]
pub struct NoFields {}
