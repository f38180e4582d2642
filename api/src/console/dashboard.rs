//! `GET /console?appid=&days=30`: logins, new and active users per day as charts (inline SVG,
//! `chart`) each with a table of the same numbers, distinct actives over 1, 7 and 30 days,
//! refused logins by reason, projection lag and the NATS relay (`dashboard_data`).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::chart::{Chart, Shape};
use super::dashboard_data::{DashboardData, DEFAULT_DAYS, MAX_DAYS};
use super::filters::Filters;
use super::i18n::Lang;
use super::render::{page, Chrome};
use super::session::ConsoleSession;
use crate::http::query;
use crate::http::routes::admin::appid;
use crate::http::state::AppState;
use crate::http::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardQuery {
    appid: Option<String>,
    days: Option<String>,
}

/// The ranges the form offers (any `days` from 1 to `MAX_DAYS` works in the URL).
const DAY_CHOICES: [u32; 3] = [7, 30, 90];

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    apps: Vec<String>,
    appid: String,
    days: u32,
    day_choices: [u32; 3],
    data: DashboardData,
    logins_chart: String,
    new_users_chart: String,
    active_chart: String,
    failed_chart: String,
    /// The console's idle lifetime: the page stops reloading itself once no one has touched it
    /// for this long, so an open dashboard does not keep its session alive forever.
    idle_secs: i64,
}

pub async fn show(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
    Filters { query, links }: Filters<DashboardQuery>,
) -> Result<Response, ApiError> {
    let selected = appid(query.appid)?;
    let days = query::count("days", query.days.as_deref(), DEFAULT_DAYS, MAX_DAYS)?;
    let today = state.stats_day(state.clock.now());
    let data = DashboardData::load(&state, selected.as_deref(), days, today).await?;
    let t = lang.messages();
    let per_day = |value: fn(&super::dashboard_data::DayTotals) -> i64| -> Vec<(String, i64)> {
        data.days
            .iter()
            .map(|d| (d.day.format("%m-%d").to_string(), value(d)))
            .collect()
    };
    let render = |chart: Chart| chart.render().map_err(ApiError::internal);
    let failed: Vec<(String, i64)> = data
        .failed_logins
        .iter()
        .map(|(reason, n)| (t.reason(reason).to_owned(), *n))
        .collect();
    page(&DashboardPage {
        logins_chart: render(Chart::new(
            t.logins_per_day,
            Shape::Bars,
            &per_day(|d| d.logins),
        ))?,
        new_users_chart: render(Chart::new(
            t.new_users_per_day,
            Shape::Bars,
            &per_day(|d| d.new_users),
        ))?,
        active_chart: render(Chart::new(
            t.active_per_day,
            Shape::Line,
            &per_day(|d| d.active_users),
        ))?,
        failed_chart: render(Chart::new(t.failed_logins, Shape::Bars, &failed))?,
        chrome: Chrome::of(&session, lang, "dashboard"),
        apps: state.apps.keys().map(ToString::to_string).collect(),
        appid: links.value("appid").to_owned(),
        days,
        day_choices: DAY_CHOICES,
        data,
        idle_secs: state.console_lifetime.idle.num_seconds(),
    })
}
