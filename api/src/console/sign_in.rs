//! Signing in (an API key exchanged for a session cookie) and out.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use infra::api_keys::Scope;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::cookies::{self, Https};
use super::csrf::{form_of, NoFields, Posted};
use super::i18n::Lang;
use super::render::{page, page_with_status, Chrome};
use super::session;
use crate::http::api_key::ApiCaller;
use crate::http::client_ip::ClientIp;
use crate::http::state::AppState;
use crate::http::ApiError;
use crate::usecases::ops_metrics::ConsoleSignIn;

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    error: Option<&'static str>,
}

/// `GET /console/sign-in`.
pub async fn form(lang: Lang) -> Result<Response, ApiError> {
    page(&SignInPage {
        chrome: Chrome::signed_out(lang),
        error: None,
    })
}

#[derive(Deserialize)]
struct SignInForm {
    api_key: Option<String>,
}

/// `POST /console/sign-in`: the key checked as the API checks it (the same verification, the
/// same failure limiter), then a session.
pub async fn submit(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Https(https): Https,
    lang: Lang,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let refused = |status: StatusCode, error: &'static str| {
        page_with_status(
            status,
            &SignInPage {
                chrome: Chrome::signed_out(lang),
                error: Some(error),
            },
        )
    };
    let t = lang.messages();
    // No session yet, so no CSRF token: a form posted from another site is refused by what the
    // browser says of the request's origin instead.
    let counted = |outcome| state.metrics.console_sign_in(outcome);
    if !same_origin(&headers, state.public_url.as_str()) {
        counted(ConsoleSignIn::BadRequest);
        return refused(StatusCode::FORBIDDEN, t.sign_in_cross_site);
    }
    let form: SignInForm = form_of(&body).inspect_err(|_| counted(ConsoleSignIn::BadRequest))?;
    let key = form.api_key.unwrap_or_default();
    let caller = match ApiCaller::authenticate_limited(key.trim(), client, &state).await {
        Ok(caller) => caller,
        Err(err @ ApiError::RateLimited { .. }) => {
            counted(ConsoleSignIn::RateLimited);
            return Err(err);
        }
        Err(ApiError::Unauthorized(_) | ApiError::Forbidden(_)) => {
            counted(ConsoleSignIn::InvalidKey);
            return refused(StatusCode::UNAUTHORIZED, t.sign_in_failed);
        }
        Err(other) => return Err(other),
    };
    if !caller.scopes.contains(&Scope::AdminRead) {
        counted(ConsoleSignIn::Forbidden);
        return refused(StatusCode::FORBIDDEN, t.sign_in_needs_admin_read);
    }
    session::end_presented(&state, &headers, https).await?;
    let token = session::open(&state, &caller).await?;
    counted(ConsoleSignIn::SignedIn);
    tracing::info!(key_id = %caller.key_id, "console sign-in");
    let cookie = cookies::set(
        cookies::session_cookie_name(https),
        Some(token.expose_secret()),
        https,
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response())
}

/// Whether the sign-in form came from our own pages: `Sec-Fetch-Site` when the browser sends
/// it, else `Origin` against `Host` (or the public URL). A request with neither (not from a
/// browser's cross-site form) passes: the key itself is the credential.
fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(authority) = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .and_then(|o| {
            o.host_str().map(|host| match o.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
        })
    else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let public = url::Url::parse(public_url).ok().and_then(|u| {
        u.host_str().map(|host| match u.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        })
    });
    host.is_some_and(|h| h.eq_ignore_ascii_case(&authority))
        || public.is_some_and(|p| p.eq_ignore_ascii_case(&authority))
}

/// `POST /console/sign-out`.
pub async fn sign_out(
    State(state): State<AppState>,
    posted: Posted<NoFields>,
) -> Result<Response, ApiError> {
    posted.session.sign_out(&state).await
}
