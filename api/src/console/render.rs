//! What every console page shares: the layout's data ([`Chrome`]), rendering a template into a
//! response, and the layer every console response passes (language, security headers, errors
//! as HTML pages).

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::assets;
use super::cookies;
use super::i18n::{Lang, Messages, LANG_COOKIE};
use super::session::ConsoleSession;
use crate::http::error::Refusal;
use crate::http::state::AppState;
use crate::http::ApiError;

/// The Content-Security-Policy of every console response: our own script and stylesheet only,
/// no inline script or style, forms post only to us, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The layout's data: language, navigation, who is signed in.
pub struct Chrome {
    pub t: &'static Messages,
    pub lang: Lang,
    /// The nav entry of this page (`dashboard`, `users`, …): marked as the current one.
    pub nav: &'static str,
    pub signed_in: Option<SignedIn>,
    pub stylesheet: &'static str,
    pub script: &'static str,
    /// The time zone dates are shown in (`IDENTITY_STATS_TIMEZONE`), named on every page.
    pub zone: chrono_tz::Tz,
    /// The page's query minus `lang` (empty or ending in `&`): switching language keeps the
    /// filters and cursor.
    pub lang_link_query: String,
}

/// The signed-in key, as the layout shows it (and the sign-out form's CSRF token).
pub struct SignedIn {
    pub key_id: String,
    pub csrf: String,
    pub can_write: bool,
}

impl Chrome {
    /// A page of a signed-in session; `nav` names its nav entry.
    pub fn of(session: &ConsoleSession, lang: Lang, nav: &'static str) -> Self {
        Self {
            signed_in: Some(SignedIn {
                key_id: session.key_id.clone(),
                csrf: session.csrf.clone(),
                can_write: session.can_write(),
            }),
            nav,
            zone: session.zone,
            lang_link_query: session.lang_link_query.clone(),
            ..Self::signed_out(lang)
        }
    }

    /// A page shown before sign-in (or an error page).
    pub fn signed_out(lang: Lang) -> Self {
        Self {
            t: lang.messages(),
            lang,
            nav: "",
            signed_in: None,
            stylesheet: assets::stylesheet(),
            script: assets::script(),
            // Pages before sign-in show no times of ours.
            zone: chrono_tz::UTC,
            lang_link_query: String::new(),
        }
    }

    /// The CSRF token for this page's forms (empty before sign-in).
    pub fn csrf(&self) -> &str {
        self.signed_in.as_ref().map_or("", |s| s.csrf.as_str())
    }

    pub fn can_write(&self) -> bool {
        self.signed_in.as_ref().is_some_and(|s| s.can_write)
    }

    /// `aria-current` for the nav entry of this page.
    pub fn current(&self, nav: &str) -> &'static str {
        if self.nav == nav {
            "page"
        } else {
            "false"
        }
    }

    /// A time as the console shows it, in its zone.
    pub fn when(&self, at: &DateTime<Utc>) -> String {
        at.with_timezone(&self.zone)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// The instant in RFC 3339 (UTC), for `<time datetime>`.
    pub fn iso(&self, at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    pub fn when_opt(&self, at: &Option<DateTime<Utc>>) -> String {
        at.as_ref().map(|at| self.when(at)).unwrap_or_default()
    }
}

/// The template rendered as a 200 page.
pub fn page(template: &impl Template) -> Result<Response, ApiError> {
    page_with_status(StatusCode::OK, template)
}

pub fn page_with_status(
    status: StatusCode,
    template: &impl Template,
) -> Result<Response, ApiError> {
    let html = template.render().map_err(ApiError::internal)?;
    Ok((status, Html(html)).into_response())
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    code: &'static str,
    detail: String,
}

/// The layer of every console route: decides the language (remembering `?lang=` in a cookie),
/// renders error answers (`ApiError`s, wherever they came from) as HTML pages with the same
/// status and `code`, and sets the security headers.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let chosen = Lang::of_query(parts.uri.query());
    let lang = Lang::of_request(parts.uri.query(), &parts.headers);
    let https = cookies::over_https(&parts, state.public_url.as_str(), &state.trusted_proxies);
    parts.extensions.insert(lang);
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if let Some(refusal) = response.extensions().get::<Refusal>().cloned() {
        response = error_page(lang, response, refusal);
    }
    let headers = response.headers_mut();
    secure(headers);
    if let Some(chosen) = chosen {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=31536000{}",
            chosen.tag(),
            if https { "; Secure" } else { "" }
        );
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, cookie);
        }
    }
    response
}

fn secure(headers: &mut HeaderMap) {
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Pages show personal data: no cache keeps them (assets set their own caching).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The error answer as an HTML page: same status, same code and detail, and the headers that
/// still apply (`Retry-After`).
fn error_page(lang: Lang, answer: Response, refusal: Refusal) -> Response {
    let status = answer.status();
    let page = ErrorPage {
        chrome: Chrome::signed_out(lang),
        status: status.as_u16(),
        code: refusal.code,
        detail: refusal.detail,
    };
    let Ok(mut response) = page_with_status(status, &page) else {
        return answer;
    };
    if let Some(retry) = answer.headers().get(header::RETRY_AFTER) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_are_shown_in_the_zone() {
        let at = Utc
            .with_ymd_and_hms(2026, 12, 5, 17, 30, 0)
            .single()
            .expect("a time");
        let mut chrome = Chrome::signed_out(Lang::ZhCn);
        assert_eq!(chrome.when(&at), "2026-12-05 17:30:00");
        chrome.zone = chrono_tz::Asia::Shanghai;
        assert_eq!(chrome.when(&at), "2026-12-06 01:30:00");
        assert_eq!(chrome.iso(&at), "2026-12-05T17:30:00Z");
        assert_eq!(chrome.zone.to_string(), "Asia/Shanghai");
    }
}
