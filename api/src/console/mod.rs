//! The admin console, `/console`: server-rendered HTML (askama templates under
//! `api/templates/console/`, escaped by default) for people who run the user base. Every page
//! works without JavaScript; the one script (`api/assets/console/console.js`) only enhances.
//! Every response carries a strict Content-Security-Policy (`render::CONTENT_SECURITY_POLICY`):
//! no inline script or style.
//!
//! - Sign-in exchanges an API key for a session cookie (`session`); every later request re-checks
//!   the key, and every form post carries the session's CSRF token (`csrf`).
//! - Errors are the API's own (`ApiError`, same status and `code`), shown as an HTML page by
//!   `render::layer`, which also picks the language (`i18n`) and sets the security headers.
//! - The console's routes are HTML, not part of `/openapi.json`.
//!
//! # Adding a page
//!
//! One template and one handler:
//!
//! 1. `api/templates/console/things.html`: `{% extends "console/layout.html" %}`, with blocks
//!    `title` and `content`; strings come from `chrome.t` (add them to both languages in
//!    `i18n::Messages`), times go through `chrome.when(…)`, and each form carries
//!    `<input type="hidden" name="csrf" value="{{ chrome.csrf() }}">`.
//! 2. A handler taking `session: ConsoleSession` (unauthenticated visits are sent to sign-in)
//!    and `lang: Lang`, rendering `#[derive(Template)] struct ThingsPage { chrome: Chrome, … }`
//!    with `page(&ThingsPage { chrome: Chrome::of(&session, lang, "things"), … })`; errors are
//!    `ApiError`s (use-case errors convert). A post takes `Posted<Form>` (CSRF checked) as its
//!    last argument and calls `posted.session.require(Scope::AdminWrite)?` before any write.
//! 3. One `.route("/console/things", get(things::page))` in [`router`].

mod actions;
mod assets;
mod chart;
mod cookies;
mod csrf;
mod csv_export;
mod dashboard;
mod dashboard_data;
mod event_log;
mod events;
mod filters;
mod history;
mod i18n;
mod key_admin;
mod keys;
mod render;
mod session;
mod sign_in;
mod users;

use axum::routing::{any, get, post};
use axum::Router;

use crate::http::state::AppState;
use crate::http::ApiError;

pub use csrf::{Posted, CSRF_REFUSED};
pub use i18n::Lang;
pub use render::{page, Chrome, CONTENT_SECURITY_POLICY};
pub use session::{ConsoleLifetime, ConsoleSession, MAX_SESSIONS_PER_KEY};

/// Every console route, behind the console's layer (language, security headers, HTML errors).
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/console", get(dashboard::show))
        .route("/console/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/assets/{name}", get(assets::serve))
        .route("/console/users", get(users::search))
        .route("/console/users/{id}", get(users::user))
        .route(
            "/console/users/{id}/{action}",
            get(actions::confirm).post(actions::perform),
        )
        .route("/console/logins", get(history::logins))
        .route("/console/logins.csv", get(history::logins_csv))
        .route("/console/audit", get(history::audit))
        .route("/console/audit.csv", get(history::audit_csv))
        .route("/console/events", get(events::show))
        .route("/console/keys", get(keys::list).post(keys::create))
        .route(
            "/console/keys/{key_id}/revoke",
            get(keys::confirm_revoke).post(keys::revoke),
        )
        // Unknown console paths answer 404 as a console page too.
        .route("/console/{*rest}", any(|| async { ApiError::NotFound }));
    // The body limit inside the rendering layer, so an over-limit form is a 413 page too.
    crate::http::body_limit::limited(pages)
        .layer(axum::middleware::from_fn_with_state(state, render::layer))
}
