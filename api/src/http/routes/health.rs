//! Liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::http::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness
///
/// The process answers; checks nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses(
        (status = 200, description = "Alive", body = crate::http::openapi::Health),
    )
)]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers. Projection lag is reported, not judged: logins work
/// whatever the read models' lag, and an operator alerts on the `/metrics` gauge.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    summary = "Readiness",
    description = "Ready when the database answers. Each read model's position and lag are \
        reported, not judged.",
    responses(
        (status = 200, description = "Ready", body = crate::http::openapi::Readiness),
        (status = 500, description = "`internal`: the read models' progress could not be read"),
        (status = 503, description = "`not_ready`: the database does not answer"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await.map_err(|err| {
        tracing::warn!(error = %err, "database not ready");
        ApiError::NotReady("the database does not answer")
    })?;
    let projections = state.read_models.status().await?;
    let lag: serde_json::Map<String, Value> = projections
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                json!({ "position": p.position, "lag": p.lag }),
            )
        })
        .collect();
    let mut answer = json!({
        "status": "ready",
        "database": state.store.backend().name(),
        "projections": lag,
        "signing_keys": signing_keys(&state),
    });
    if let Some(stream) = &state.relay_stream {
        let relay = infra::relay::status(state.store.as_ref(), stream).await?;
        let head = projections.iter().map(|p| p.head).max().unwrap_or(0);
        answer["nats_relay"] = json!({
            "stream": relay.stream,
            "position": relay.position,
            "lag": (head - relay.position).max(0),
        });
    }
    Ok(Json(answer))
}

/// The signing keys as this instance has them: how many, and how long since they were last
/// read (a reload that keeps failing makes this grow past the reload interval).
fn signing_keys(state: &AppState) -> Value {
    let last = state.access_tokens.last_reload();
    json!({
        "loaded": state.access_tokens.loaded_keys(),
        "last_reload": last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "secs_since_reload": (chrono::Utc::now() - last).num_seconds().max(0),
        "reload_interval_secs": state.access_tokens.reload_interval().as_secs(),
    })
}
