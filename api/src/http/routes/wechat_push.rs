//! `GET` and `POST /v1/wechat/push/{appid}`: WeChat's message push, plain mode, JSON data
//! format. The `GET` is WeChat's URL verification (answer `echostr`); a `POST` carries an
//! event, of which we act on `wxa_media_check` (the verdict of an avatar's image check).
//! Every call is authenticated by its query's `signature` under the app's push token
//! (`IDENTITY_PUSH_TOKENS`); every authenticity failure gets one answer, 401.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use domain::{Actor, AppId};
use infra::wechat::push;
use secrecy::ExposeSecret;
use utoipa::IntoParams;

use crate::http::client_ip::ClientIp;
use crate::http::extract::RequestContext;
use crate::http::state::AppState;
use crate::http::values;
use crate::http::ApiError;
use crate::usecases::content_check;

/// A push event is about 1 KiB; anything much larger is not WeChat's (`routes::LARGER_BODIES`).
pub const MAX_PUSH_BYTES: usize = 64 * 1024;
/// The query's parts are short: a 40-hex signature, a Unix time, a nonce, WeChat's echostr.
pub(crate) const MAX_QUERY_VALUE: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/wechat/push/{appid}", get(verify_url))
        .route("/v1/wechat/push/{appid}", post(receive_push))
}

/// `signature`, `timestamp`, `nonce` and, for the URL verification, `echostr`.
#[derive(Default)]
struct PushQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
}

/// The signature every push carries in its query, for the document (the query is read by
/// `PushQuery::parse`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only.
struct PushSignature {
    /// hex SHA-1 of the sorted token, timestamp and nonce
    #[param(value_type = values::PushQueryValue)]
    signature: String,
    /// WeChat's Unix time, within 5 minutes of ours
    #[param(value_type = values::PushQueryValue)]
    timestamp: String,
    /// WeChat's nonce
    #[param(value_type = values::PushQueryValue)]
    nonce: String,
}

impl PushQuery {
    /// A missing, malformed or repeated parameter is left out, which leaves the call
    /// unauthenticated (a repeated one is not WeChat's).
    fn parse(raw: Option<&str>) -> Self {
        let mut query = Self::default();
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let slot = match name.as_ref() {
                "signature" => &mut query.signature,
                "timestamp" => &mut query.timestamp,
                "nonce" => &mut query.nonce,
                "echostr" => &mut query.echostr,
                _ => continue,
            };
            let fits = !value.is_empty()
                && value.len() <= MAX_QUERY_VALUE
                && value.bytes().all(|b| b.is_ascii_graphic());
            let first = seen.insert(name.into_owned());
            *slot = (fits && first).then(|| value.into_owned());
        }
        query
    }
}

/// How far a push's timestamp may be from our clock. In plain mode the signature covers the
/// token, timestamp and nonce but not the body, so a signed query seen once (an access log)
/// would otherwise authenticate any body forever.
const PUSH_FRESHNESS_SECS: u64 = 300;

/// Authenticates a push to `appid`'s URL: 404 for an app not configured or without a push
/// token (and for a malformed appid: no such push URL); then the query's signature under that
/// token and the timestamp's freshness, charged to the caller's failure budget like every
/// credential check (a right one always passes).
fn authenticate(
    state: &AppState,
    appid: &str,
    client_ip: Option<std::net::IpAddr>,
    raw_query: Option<&str>,
) -> Result<(AppId, PushQuery), ApiError> {
    let appid = AppId::parse(appid).map_err(|_| ApiError::NotFound)?;
    if !state.apps.contains_key(&appid) {
        return Err(ApiError::NotFound);
    }
    let token = state.content.push_token(&appid).ok_or(ApiError::NotFound)?;
    let query = PushQuery::parse(raw_query);
    let why = "bad or missing push signature";
    state.auth_failures.judge(client_ip, why, || {
        match (&query.signature, &query.timestamp, &query.nonce) {
            (Some(signature), Some(timestamp), Some(nonce)) => {
                let now = state.clock.now().timestamp();
                let fresh = timestamp
                    .parse::<i64>()
                    .is_ok_and(|at| at.abs_diff(now) <= PUSH_FRESHNESS_SECS);
                push::verify(token.expose_secret(), timestamp, nonce, signature) && fresh
            }
            _ => false,
        }
    })?;
    Ok((appid, query))
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Verify the message-push URL (WeChat)
///
/// WeChat's check of the URL set in the mini-program console: answers `echostr` when the
/// signature (`hex(sha1(sort(token, timestamp, nonce)))`, token from `IDENTITY_PUSH_TOKENS`)
/// holds.
#[utoipa::path(
    get,
    path = "/v1/wechat/push/{appid}",
    tag = "wechat",
    params(
        ("appid" = values::AppId, Path, description = "The mini-program's appid"),
        PushSignature,
        ("echostr" = values::PushQueryValue, Query, description = "Echoed back when the signature holds"),
    ),
    responses(
        (status = 200, description = "`echostr`, as text", content_type = "text/plain", body = String),
        (status = 400, description = "`invalid_request`: no `echostr`"),
        (status = 401, description = "`unauthorized`: a bad or missing signature"),
        (status = 404, description = "`not_found`: no such app, or no push token for it"),
        (status = 429, description = "`rate_limited`: this client sent too many bad signatures; wait",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
async fn verify_url(
    State(state): State<AppState>,
    Path(appid): Path<String>,
    ClientIp(client_ip): ClientIp,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (_, query) = authenticate(&state, &appid, client_ip, raw.as_deref())?;
    let echostr = query
        .echostr
        .ok_or_else(|| ApiError::InvalidRequest("echostr is missing".into()))?;
    Ok(text(echostr))
}

/// Receive a WeChat push (media-check verdicts)
///
/// Plain mode, JSON data format. A `wxa_media_check` event whose `result.suggest` is `risky`,
/// for an avatar check this service submitted, deletes the image and records `AvatarRejected`
/// (the profile's avatar is cleared if it is still that one). Any other event, or a verdict
/// for an unknown or already handled trace, is acknowledged and ignored. Answers `success`.
#[utoipa::path(
    post,
    path = "/v1/wechat/push/{appid}",
    tag = "wechat",
    params(
        ("appid" = values::AppId, Path, description = "The mini-program's appid"),
        PushSignature,
    ),
    request_body(content = String, description = "WeChat's event, JSON", content_type = "application/json"),
    responses(
        (status = 200, description = "`success`, as text", content_type = "text/plain", body = String),
        (status = 400, description = "`invalid_request`: the body is not JSON, or a \
            `wxa_media_check` event lacks a valid `trace_id`, `appid` or `result`"),
        (status = 401, description = "`unauthorized`: a bad or missing signature; nothing changed"),
        (status = 404, description = "`not_found`: no such app, or no push token for it"),
        (status = 409, description = "`conflict`: the user's record kept changing concurrently; \
            WeChat retries"),
        (status = 429, description = "`rate_limited`: this client sent too many bad signatures; wait",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
async fn receive_push(
    State(state): State<AppState>,
    Path(appid): Path<String>,
    ctx: RequestContext,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (appid, _) = authenticate(&state, &appid, ctx.client_ip, raw.as_deref())?;
    // An over-limit body is `http::body_limit`'s 413, whatever this says.
    let body = body.map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
    // WeChat's server is no user: the events it causes are the system's, with no client data.
    let mut ctx = ctx.acting_as(Actor::System);
    ctx.client_ip = None;
    ctx.user_agent = None;
    content_check::handle_push(&state, &appid, &body, &ctx).await?;
    Ok(text("success".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_keeps_only_single_well_formed_parameters() {
        let query = PushQuery::parse(Some("signature=ab&timestamp=1&nonce=n&echostr=e&x=1"));
        assert_eq!(query.signature.as_deref(), Some("ab"));
        assert_eq!(query.echostr.as_deref(), Some("e"));
        let repeated = PushQuery::parse(Some("nonce=a&nonce=b&nonce=c&timestamp=%20"));
        assert_eq!(repeated.nonce, None);
        assert_eq!(repeated.timestamp, None);
        let long = format!("signature={}", "a".repeat(MAX_QUERY_VALUE + 1));
        assert_eq!(PushQuery::parse(Some(&long)).signature, None);
        assert_eq!(PushQuery::parse(None).signature, None);
    }
}
