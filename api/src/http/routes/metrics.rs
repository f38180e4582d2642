//! `GET /metrics`: Prometheus text format. Projection progress is read at scrape time, so
//! every instance reports the shared truth (the checkpoints live in the database).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::http::state::AppState;
use crate::http::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabel {
    projection: String,
}

/// Prometheus metrics
///
/// OpenMetrics text: `identity_projection_lag_events`, `identity_projection_position` (by
/// `projection`), `identity_event_log_head_position` and `identity_login_rejections_total`
/// (this instance's refused logins, by `appid` and `reason`).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "The metrics, OpenMetrics text format", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 500, description = "`internal`: the read models' progress could not be read"),
    )
)]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let status = state.read_models.status().await?;
    let lag = Family::<ProjectionLabel, Gauge>::default();
    let position = Family::<ProjectionLabel, Gauge>::default();
    let head = Gauge::<i64>::default();
    for projection in &status {
        let label = ProjectionLabel {
            projection: projection.name.clone(),
        };
        lag.get_or_create(&label).set(projection.lag);
        position.get_or_create(&label).set(projection.position);
        head.set(projection.head);
    }
    let mut registry = Registry::with_prefix("identity");
    registry.register(
        "projection_lag_events",
        "Events in the log not yet applied to the projection",
        lag,
    );
    registry.register(
        "projection_position",
        "Global position of the last event the projection applied",
        position,
    );
    if let Some(stream) = &state.relay_stream {
        let relay = infra::relay::status(state.store.as_ref(), stream).await?;
        let relay_lag = Gauge::<i64>::default();
        relay_lag.set((head.get() - relay.position).max(0));
        registry.register(
            "nats_relay_lag_events",
            "Events in the log not yet published to NATS JetStream",
            relay_lag,
        );
    }
    state.rejections.register(&mut registry);
    state.metrics.register(&mut registry);
    state.wechat.metrics().register(&mut registry);
    state.access_tokens.register(&mut registry);
    registry.register(
        "event_log_head_position",
        "Global position of the newest readable event",
        head,
    );
    let mut body = String::new();
    encode(&mut body, &registry).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}
