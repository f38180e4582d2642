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

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers. Projection lag is reported, not judged: logins work
/// whatever the read models' lag, and an operator alerts on the `/metrics` gauge.
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
    Ok(Json(json!({
        "status": "ready",
        "database": state.store.backend(),
        "projections": lag,
    })))
}
