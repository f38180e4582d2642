//! Content security over HTTP: WeChat's `msg_sec_check` and `media_check_async`, and the
//! `/sim/content` and `/sim/push` endpoints that set them up.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use domain::AppId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::content::ContentUpdate;
use super::push::{self, MediaCheck};
use super::routes::{answer_with_token, parse_body, BadRequest, TokenQuery};
use super::{people, Api, LockedState, Simulator};

/// WeChat's limit on a checked text.
const MAX_CONTENT_CHARS: usize = 2500;

pub(super) fn routes() -> Router<Arc<Simulator>> {
    Router::new()
        .route("/wxa/msg_sec_check", post(msg_sec_check))
        .route("/wxa/media_check_async", post(media_check_async))
        .route("/sim/content", post(set_content).get(content))
        .route("/sim/push", post(set_push).get(pushes))
}

#[derive(Deserialize)]
struct MsgSecCheckRequest {
    content: Option<String>,
    version: Option<i64>,
    scene: Option<i64>,
    openid: Option<String>,
}

/// Version 2 only (40097 otherwise), scenes 1 to 4 (40129 otherwise).
fn check_version_and_scene(version: Option<i64>, scene: Option<i64>) -> Result<(), i64> {
    if version != Some(2) {
        return Err(40097);
    }
    if !matches!(scene, Some(1..=4)) {
        return Err(40129);
    }
    Ok(())
}

async fn msg_sec_check(
    State(sim): State<Arc<Simulator>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let decide = |state: LockedState, appid: AppId, request: MsgSecCheckRequest| {
        check_version_and_scene(request.version, request.scene)?;
        let content = request
            .content
            .filter(|c| c.chars().count() <= MAX_CONTENT_CHARS)
            .ok_or(40097)?;
        state.logged_in(&appid, request.openid.as_deref())?;
        let verdict = state.content.check_text(&content);
        let (suggest, label) = (verdict.suggest.as_str(), verdict.label);
        let mut keyword = json!({
            "strategy": "keyword", "errcode": 0, "suggest": suggest, "label": label,
        });
        if let Some(word) = verdict.keyword {
            keyword["keyword"] = Value::String(word);
        }
        Ok(json!({
            "errcode": 0,
            "errmsg": "ok",
            "result": { "suggest": suggest, "label": label },
            "detail": [
                {
                    "strategy": "content_model", "errcode": 0, "suggest": suggest,
                    "label": label, "prob": 90,
                },
                keyword,
            ],
            "trace_id": people::trace_id(),
        }))
    };
    answer_with_token(&sim, Api::MsgSecCheck, &q, &body, decide).await
}

#[derive(Deserialize)]
struct MediaCheckRequest {
    media_url: Option<String>,
    media_type: Option<i64>,
    version: Option<i64>,
    scene: Option<i64>,
    openid: Option<String>,
}

/// Answers the trace id at once; a task fetches, judges and pushes (see `push`).
async fn media_check_async(
    State(sim): State<Arc<Simulator>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let decide = |state: LockedState, appid: AppId, request: MediaCheckRequest| {
        check_version_and_scene(request.version, request.scene)?;
        // 1 audio, 2 image: both get the `images` verdict.
        if !matches!(request.media_type, Some(1 | 2)) {
            return Err(40097);
        }
        let media_url = request
            .media_url
            .as_deref()
            .and_then(push::parse_url)
            .ok_or(40097)?;
        let openid = state.logged_in(&appid, request.openid.as_deref())?;
        drop(state);
        let slot = Arc::clone(&sim.pending_media_checks)
            .try_acquire_owned()
            .map_err(|_| 45011)?;
        let trace_id = people::trace_id();
        let check = MediaCheck {
            appid,
            openid,
            media_url,
            trace_id: trace_id.clone(),
        };
        tokio::spawn(push::run(Arc::clone(&sim), check, slot));
        Ok(json!({ "errcode": 0, "errmsg": "ok", "trace_id": trace_id }))
    };
    answer_with_token(&sim, Api::MediaCheckAsync, &q, &body, decide).await
}

async fn set_content(
    State(sim): State<Arc<Simulator>>,
    body: Bytes,
) -> Result<Json<Value>, BadRequest> {
    let update: ContentUpdate = parse_body(&body)?;
    sim.set_content(update)?;
    Ok(Json(json!(sim.content())))
}

async fn content(State(sim): State<Arc<Simulator>>) -> Json<Value> {
    Json(json!(sim.content()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    appid: String,
    url: String,
    token: String,
    delay_ms: Option<u64>,
}

async fn set_push(
    State(sim): State<Arc<Simulator>>,
    body: Bytes,
) -> Result<StatusCode, BadRequest> {
    let request: PushRequest = parse_body(&body)?;
    let appid = AppId::parse(&request.appid)?;
    let delay = request
        .delay_ms
        .map_or(push::DEFAULT_DELAY, Duration::from_millis);
    sim.set_push_with_delay(&appid, &request.url, &request.token, delay)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The push targets (tokens left out) and the last media checks' outcomes.
async fn pushes(State(sim): State<Arc<Simulator>>) -> Json<Value> {
    let targets = sim.state().pushes.summary();
    Json(json!({ "targets": targets, "media_checks": sim.media_check_reports() }))
}
