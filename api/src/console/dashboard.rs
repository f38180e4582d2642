//! `GET /console`: the dashboard (a placeholder until the statistics pages land).

use askama::Template;
use axum::response::Response;

use super::i18n::Lang;
use super::render::{page, Chrome};
use super::session::ConsoleSession;
use crate::http::ApiError;

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
}

pub async fn show(session: ConsoleSession, lang: Lang) -> Result<Response, ApiError> {
    page(&DashboardPage {
        chrome: Chrome::of(&session, lang, "dashboard"),
    })
}
