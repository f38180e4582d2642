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
use domain::AppId;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{people, Api, Fault, Simulator};

/// Longest injectable latency: beyond it a test is stuck, not slow.
const MAX_LATENCY: Duration = Duration::from_secs(600);
const MAX_USER_LEN: usize = 256;

pub(super) fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/sns/jscode2session", get(jscode2session))
        .route("/sim/wx.login", post(wx_login))
        .route("/sim/faults", post(add_fault).delete(clear_faults))
        .route("/sim/clock", post(advance_clock))
        .route("/sim/health", get(health))
        .with_state(sim)
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
    let fault = sim.state().begin_call(Api::Jscode2Session);
    if let Some(latency) = fault.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(errcode) = fault.errcode {
        return wechat_error(errcode);
    }
    let mut state = sim.state();
    let appid = match state.authenticate(q.appid.as_deref(), q.secret.as_deref()) {
        Ok(app) => app.appid.clone(),
        Err(errcode) => return wechat_error(errcode),
    };
    let Some(code) = q.js_code.filter(|c| !c.is_empty()) else {
        return wechat_error(41008);
    };
    if q.grant_type.as_deref() != Some("authorization_code") {
        return wechat_error(40002);
    }
    match state.code_to_session(&appid, &code) {
        Ok(session) => {
            let mut body = json!({ "openid": session.openid, "session_key": session.session_key });
            if let Some(unionid) = session.unionid {
                body["unionid"] = Value::String(unionid);
            }
            wechat_answer(&body)
        }
        Err(errcode) => wechat_error(errcode),
    }
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
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "high risk user",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
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
        if user.is_empty() || user.len() > MAX_USER_LEN {
            return Err(BadRequest("user: must be 1 to 256 bytes".into()));
        }
    }
    let code = sim.wx_login(&appid, request.user.as_deref())?;
    Ok(Json(json!({ "code": code })))
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
    let api = Api::parse(&request.api)
        .ok_or_else(|| BadRequest("api: unknown (known: jscode2session)".into()))?;
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
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|err| BadRequest(format!("invalid JSON body: {err}")))
}

/// A `/sim/*` input we refuse: 400 `{"error"}`.
struct BadRequest(String);

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
