//! The simulator's HTTP face: WeChat's endpoints answer like WeChat (HTTP 200, errcode in a
//! JSON body sent as text/plain); the `/sim/*` endpoints answer 400 with `{"error"}` on bad input.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::AppId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{people, Api, Fault, LockedState, Simulator};
use crate::wechat::{user_data, SessionKey};

/// Longest injectable latency: beyond it a test is stuck, not slow.
const MAX_LATENCY: Duration = Duration::from_secs(600);
const MAX_USER_LEN: usize = 256;
/// Longest profile field (nickname, avatar URL, place names).
const MAX_PROFILE_FIELD_LEN: usize = 1024;

pub(super) fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/sns/jscode2session", get(jscode2session))
        .route("/cgi-bin/stable_token", post(stable_token))
        .route(
            "/wxa/business/getuserphonenumber",
            post(get_user_phone_number),
        )
        .route("/wxa/checksession", get(check_session))
        .route("/sim/wx.login", post(wx_login))
        .route("/sim/getPhoneNumber", post(get_phone_number))
        .route("/sim/getUserProfile", post(get_user_profile))
        .route("/sim/faults", post(add_fault).delete(clear_faults))
        .route("/sim/clock", post(advance_clock))
        .route("/sim/health", get(health))
        .merge(super::content_routes::routes())
        .layer(axum::middleware::from_fn(sim_posts_are_json))
        .with_state(sim)
}

/// A `/sim/*` POST must say it is JSON. The simulator listens on a fixed local port in dev,
/// so any web page the developer opens could otherwise drive it with a form or a `text/plain`
/// fetch (no CORS preflight for those): point its pushes elsewhere, inject faults. A JSON
/// content type forces a preflight, which the simulator never answers.
async fn sim_posts_are_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let json = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if request.method() == axum::http::Method::POST
        && request.uri().path().starts_with("/sim/")
        && !json
    {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({ "error": "a /sim/* POST must be application/json" })),
        )
            .into_response();
    }
    next.run(request).await
}

#[derive(Deserialize)]
struct Jscode2SessionQuery {
    appid: Option<String>,
    secret: Option<String>,
    js_code: Option<String>,
    grant_type: Option<String>,
}

async fn jscode2session(
    State(sim): State<Arc<Simulator>>,
    Query(q): Query<Jscode2SessionQuery>,
) -> Response {
    answer(&sim, Api::Jscode2Session, |sim| {
        let mut state = sim.state();
        let appid = state
            .authenticate(q.appid.as_deref(), q.secret.as_deref())?
            .appid
            .clone();
        let code = q.js_code.filter(|c| !c.is_empty()).ok_or(41008)?;
        if q.grant_type.as_deref() != Some("authorization_code") {
            return Err(40002);
        }
        let session = state.code_to_session(&appid, &code)?;
        let mut body = json!({ "openid": session.openid, "session_key": session.session_key });
        if let Some(unionid) = session.unionid {
            body["unionid"] = Value::String(unionid);
        }
        Ok(body)
    })
    .await
}

/// Answers a WeChat endpoint as WeChat would: counts the call and plays any queued fault, else
/// sends what `decide` answers, a body or the errcode WeChat would refuse with.
pub(super) async fn answer(
    sim: &Simulator,
    api: Api,
    decide: impl FnOnce(&Simulator) -> Result<Value, i64>,
) -> Response {
    let fault = sim.state().begin_call(api);
    if let Some(latency) = fault.latency {
        tokio::time::sleep(latency).await;
    }
    match fault.errcode.map_or_else(|| decide(sim), Err) {
        Ok(body) => wechat_answer(&body),
        Err(errcode) => wechat_error(errcode),
    }
}

/// The query of the APIs called with the app's access token.
#[derive(Deserialize)]
pub(super) struct TokenQuery {
    access_token: Option<String>,
}

/// Answers, as `answer` does, a WeChat API called with the app's access token in its query and
/// a JSON body: the token's errcode unless it is current, 47001 unless the body is the API's
/// request, else what `decide` makes of the app and the request (the state still locked).
pub(super) async fn answer_with_token<'s, R: DeserializeOwned>(
    sim: &'s Simulator,
    api: Api,
    query: &TokenQuery,
    body: &[u8],
    decide: impl FnOnce(LockedState<'s>, AppId, R) -> Result<Value, i64>,
) -> Response {
    answer(sim, api, |_| {
        let state = sim.state();
        let appid = state.authorize(query.access_token.as_deref())?;
        let request = serde_json::from_slice(body).map_err(|_| 47001)?;
        decide(state, appid, request)
    })
    .await
}

#[derive(Deserialize)]
struct StableTokenRequest {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    force_refresh: Option<bool>,
}

async fn stable_token(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    answer(&sim, Api::StableToken, |sim| {
        let request = serde_json::from_slice::<StableTokenRequest>(&body).map_err(|_| 47001)?;
        let mut state = sim.state();
        let appid = state
            .authenticate(request.appid.as_deref(), request.secret.as_deref())?
            .appid
            .clone();
        if request.grant_type.as_deref() != Some("client_credential") {
            return Err(40002);
        }
        let (token, expires_in) =
            state.stable_token(&appid, request.force_refresh.unwrap_or(false));
        Ok(json!({ "access_token": token, "expires_in": expires_in }))
    })
    .await
}

#[derive(Deserialize)]
struct PhoneNumberRequest {
    code: Option<String>,
    openid: Option<String>,
}

async fn get_user_phone_number(
    State(sim): State<Arc<Simulator>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let decide = |mut state: LockedState, appid: AppId, request: PhoneNumberRequest| {
        let code = request.code.filter(|c| !c.is_empty()).ok_or(41008)?;
        let number = state.redeem_phone_code(&appid, &code, request.openid.as_deref())?;
        Ok(json!({
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": number,
                "purePhoneNumber": number,
                "countryCode": "86",
                "watermark": { "timestamp": state.unix_now(), "appid": appid.as_str() },
            },
        }))
    };
    answer_with_token(&sim, Api::GetUserPhoneNumber, &q, &body, decide).await
}

#[derive(Deserialize)]
struct CheckSessionQuery {
    access_token: Option<String>,
    openid: Option<String>,
    signature: Option<String>,
    sig_method: Option<String>,
}

async fn check_session(
    State(sim): State<Arc<Simulator>>,
    Query(q): Query<CheckSessionQuery>,
) -> Response {
    answer(&sim, Api::CheckSession, |sim| {
        let state = sim.state();
        let appid = state.authorize(q.access_token.as_deref())?;
        let (Some(openid), Some(signature)) = (q.openid, q.signature) else {
            return Err(40097);
        };
        if q.sig_method.as_deref() != Some("hmac_sha256") {
            return Err(40097);
        }
        state.check_session(&appid, &openid, &signature)?;
        Ok(json!({ "errcode": 0, "errmsg": "ok" }))
    })
    .await
}

/// WeChat labels its JSON text/plain; clients that trust the content-type should fail here.
fn wechat_answer(body: &Value) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], body.to_string()).into_response()
}

fn wechat_error(errcode: i64) -> Response {
    let errmsg = format!("{}, rid: {}", errmsg(errcode), people::rid());
    wechat_answer(&json!({ "errcode": errcode, "errmsg": errmsg }))
}

fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40013 => "invalid appid",
        40029 => "invalid code",
        40097 => "invalid args",
        40125 => "invalid appsecret",
        40129 => "invalid scene",
        40163 => "code been used",
        40226 => "high risk user",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        42001 => "access_token expired",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        47001 => "data format error",
        61010 => "user access expired",
        87009 => "invalid signature",
        _ => "simulated error",
    }
}

#[derive(Deserialize)]
struct WxLogin {
    appid: String,
    user: Option<String>,
}

async fn wx_login(
    State(sim): State<Arc<Simulator>>,
    body: Bytes,
) -> Result<Json<Value>, BadRequest> {
    let request: WxLogin = parse_body(&body)?;
    let appid = AppId::parse(&request.appid)?;
    if let Some(user) = &request.user {
        check_user(user)?;
    }
    let code = sim.wx_login(&appid, request.user.as_deref())?;
    Ok(Json(json!({ "code": code })))
}

/// A `user` name as the `/sim/*` endpoints accept it.
fn check_user(user: &str) -> Result<(), BadRequest> {
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return Err(BadRequest("user: must be 1 to 256 bytes".into()));
    }
    Ok(())
}

#[derive(Deserialize)]
struct PhoneButton {
    appid: String,
    user: String,
}

async fn get_phone_number(
    State(sim): State<Arc<Simulator>>,
    body: Bytes,
) -> Result<Json<Value>, BadRequest> {
    let request: PhoneButton = parse_body(&body)?;
    let appid = AppId::parse(&request.appid)?;
    check_user(&request.user)?;
    let code = sim.phone_code(&appid, &request.user)?;
    Ok(Json(json!({ "code": code })))
}

/// The profile fields of `wx.getUserProfile()`, in WeChat's order (it is `rawData`'s).
/// Missing ones take the values of WeChat's documentation example.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct Profile {
    nick_name: String,
    gender: u8,
    language: String,
    city: String,
    province: String,
    country: String,
    avatar_url: String,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            nick_name: "Band".into(),
            gender: 1,
            language: "zh_CN".into(),
            city: "Guangzhou".into(),
            province: "Guangdong".into(),
            country: "CN".into(),
            avatar_url: "http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0".into(),
        }
    }
}

impl Profile {
    fn check(&self) -> Result<(), BadRequest> {
        if self.gender > 2 {
            return Err(BadRequest("profile.gender: 0, 1 or 2".into()));
        }
        let fields = [
            &self.nick_name,
            &self.language,
            &self.city,
            &self.province,
            &self.country,
            &self.avatar_url,
        ];
        if fields.iter().any(|f| f.len() > MAX_PROFILE_FIELD_LEN) {
            return Err(BadRequest("profile: fields of at most 1024 bytes".into()));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct ProfileRequest {
    appid: String,
    user: String,
    #[serde(default)]
    profile: Profile,
}

/// What the phone gets: `rawData` signed with, and the profile (plus watermark, and ids when
/// the app is bound to an Open Platform account) encrypted under, the current session_key.
async fn get_user_profile(
    State(sim): State<Arc<Simulator>>,
    body: Bytes,
) -> Result<Json<Value>, BadRequest> {
    let request: ProfileRequest = parse_body(&body)?;
    let appid = AppId::parse(&request.appid)?;
    check_user(&request.user)?;
    request.profile.check()?;
    let context = sim.state().profile_context(&appid, &request.user)?;
    let session_key = SessionKey::parse(&context.session_key)?;

    let raw_data = serde_json::to_string(&request.profile)?;
    let signature = user_data::raw_data_signature(&raw_data, &session_key);
    let user_info = serde_json::to_value(&request.profile)?;
    let mut sealed = user_info.clone();
    sealed["watermark"] = json!({ "appid": appid.as_str(), "timestamp": context.timestamp });
    if let Some(unionid) = context.unionid {
        sealed["openId"] = Value::String(context.openid);
        sealed["unionId"] = Value::String(unionid);
    }
    let iv = people::new_iv();
    let encrypted_data = user_data::encrypt(&sealed, iv, &session_key);
    Ok(Json(json!({
        "userInfo": user_info,
        "rawData": raw_data,
        "signature": signature,
        "encryptedData": encrypted_data,
        "iv": STANDARD.encode(iv),
    })))
}

#[derive(Deserialize)]
struct FaultRequest {
    api: String,
    errcode: Option<i64>,
    times: Option<u32>,
    latency_ms: Option<u64>,
}

async fn add_fault(
    State(sim): State<Arc<Simulator>>,
    body: Bytes,
) -> Result<StatusCode, BadRequest> {
    let request: FaultRequest = parse_body(&body)?;
    let api = Api::parse(&request.api).ok_or_else(|| {
        let known: Vec<_> = Api::ALL.iter().map(|api| api.name()).collect();
        BadRequest(format!("api: unknown (known: {})", known.join(", ")))
    })?;
    if request.errcode == Some(0) {
        return Err(BadRequest("errcode: 0 is success, not a fault".into()));
    }
    let latency = request.latency_ms.map(Duration::from_millis);
    if latency.is_some_and(|l| l > MAX_LATENCY) {
        return Err(BadRequest("latency_ms: at most 600000".into()));
    }
    if request.errcode.is_none() && latency.is_none() {
        return Err(BadRequest("give errcode, latency_ms or both".into()));
    }
    sim.inject(Fault {
        api,
        errcode: request.errcode,
        times: request.times.unwrap_or(1),
        latency,
    });
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(sim): State<Arc<Simulator>>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ClockRequest {
    advance_secs: u64,
}

async fn advance_clock(
    State(sim): State<Arc<Simulator>>,
    body: Bytes,
) -> Result<StatusCode, BadRequest> {
    let request: ClockRequest = parse_body(&body)?;
    sim.advance_clock(Duration::from_secs(request.advance_secs))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// JSON whatever the content-type, with our own error on failure (axum's `Json` answers 415/422
/// in plain text).
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|err| BadRequest(format!("invalid JSON body: {err}")))
}

/// A `/sim/*` input we refuse: 400 `{"error"}`.
pub(super) struct BadRequest(String);

impl<E: std::error::Error> From<E> for BadRequest {
    fn from(err: E) -> Self {
        Self(err.to_string())
    }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": self.0 }))).into_response()
    }
}
