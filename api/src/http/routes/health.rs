//! Liveness and readiness.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::state::AppState;
use crate::http::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness
///
/// The process answers; checks nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses(
        (status = 200, description = "Alive", body = Health),
    )
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// How long readiness waits for the database in all (its answer, and a write when writes have
/// been failing): an orchestrator's probe gets its 503 within a second, whether the server
/// refuses connections, hangs, or its disk is full.
const READY_WITHIN: Duration = Duration::from_millis(700);

/// When the answer is due, the report of the read models' and the relay's progress included:
/// a database that answered the ping but stalls on those reads is not ready either.
const ANSWER_WITHIN: Duration = Duration::from_millis(900);

/// Ready when the database answers and takes writes (on a full disk it may answer reads, yet
/// no login can be written). Projection lag is reported, not judged: logins work whatever the
/// read models' lag, and an operator alerts on the `/metrics` gauge.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    summary = "Readiness",
    description = "Ready when the database answers and takes writes, within 0.7 s, and the \
        progress report is read within 0.9 s. Each read model's position and lag are \
        reported, not judged.",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 500, description = "`internal`: the read models' progress could not be read"),
        (status = 503, description = "`not_ready`: the database does not answer, or refuses \
            writes (a full disk), or the progress report could not be read within 0.9 s"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let asked = tokio::time::Instant::now();
    let deadline = asked + READY_WITHIN;
    match tokio::time::timeout_at(deadline, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "database not ready");
            return Err(ApiError::NotReady("the database does not answer"));
        }
        Err(_) => {
            tracing::warn!(within = ?READY_WITHIN, "database not ready: no answer in time");
            return Err(ApiError::NotReady("the database does not answer"));
        }
    }
    // Logged by the store when writes start failing and when they work again.
    let writes = tokio::time::timeout_at(deadline, state.store.writes_work()).await;
    if !writes.unwrap_or(false) {
        return Err(ApiError::NotReady("the database refuses writes"));
    }
    let progress = async {
        let projections = state.read_models.status().await?;
        let head = projections.iter().map(|p| p.head).max().unwrap_or(0);
        let nats_relay = relay_progress(&state, head).await?;
        Ok::<_, ApiError>((projections, nats_relay))
    };
    let Ok(progress) = tokio::time::timeout_at(asked + ANSWER_WITHIN, progress).await else {
        tracing::warn!(within = ?ANSWER_WITHIN, "not ready: progress not read in time");
        return Err(ApiError::NotReady(
            "the read models' progress could not be read in time",
        ));
    };
    let (projections, nats_relay) = progress?;
    Ok(Json(Readiness {
        status: "ready",
        database: state.store.backend().name(),
        projections: projections
            .into_iter()
            .map(|p| {
                let progress = ProjectionProgress {
                    position: p.position,
                    lag: p.lag,
                };
                (p.name, progress)
            })
            .collect(),
        nats_relay,
        signing_keys: signing_keys(&state),
    }))
}

/// The NATS relay's progress against the log's `head`, when `IDENTITY_NATS_URL` is set (also
/// the console's dashboard).
pub(crate) async fn relay_progress(
    state: &AppState,
    head: i64,
) -> Result<Option<RelayProgress>, ApiError> {
    let Some(stream) = &state.relay_stream else {
        return Ok(None);
    };
    let relay = infra::relay::status(state.store.as_ref(), stream).await?;
    Ok(Some(RelayProgress {
        stream: relay.stream,
        position: relay.position,
        lag: (head - relay.position).max(0),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// The event store's backend.
    #[schema(example = "postgres")]
    pub database: &'static str,
    /// Each read model's progress, by name.
    pub projections: BTreeMap<String, ProjectionProgress>,
    /// The NATS JetStream relay's progress, when `IDENTITY_NATS_URL` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub nats_relay: Option<RelayProgress>,
    /// The token signing keys as this instance has them.
    pub signing_keys: SigningKeysStatus,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectionProgress {
    /// Global position of the last event the projection applied.
    pub position: i64,
    /// Events in the log not yet applied.
    pub lag: i64,
}

#[derive(Serialize, ToSchema)]
pub struct RelayProgress {
    /// The JetStream stream published to.
    pub stream: String,
    /// Global position of the last event published.
    pub position: i64,
    /// Events in the log not yet published.
    pub lag: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SigningKeysStatus {
    /// Keys loaded (retired ones included).
    pub loaded: usize,
    /// When the keys were last read from the database.
    #[schema(format = DateTime, example = "2026-01-01T00:00:00Z")]
    pub last_reload: String,
    /// Seconds since then: past the reload interval, reloads are failing (see the warn log;
    /// they are retried every second).
    pub secs_since_reload: i64,
    /// `IDENTITY_SIGNING_KEY_RELOAD_SECS`.
    pub reload_interval_secs: u64,
}

/// The signing keys as this instance has them: how many, and how long since they were last
/// read (a reload that keeps failing makes this grow past the reload interval).
fn signing_keys(state: &AppState) -> SigningKeysStatus {
    let last = state.access_tokens.last_reload();
    SigningKeysStatus {
        loaded: state.access_tokens.loaded_keys(),
        last_reload: last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        secs_since_reload: (chrono::Utc::now() - last).num_seconds().max(0),
        reload_interval_secs: state.access_tokens.reload_interval().as_secs(),
    }
}
