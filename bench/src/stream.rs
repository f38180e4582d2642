//! `/v1/events` catch-up: page through the whole log with `limit=1000`, as an analytics
//! consumer starting from zero would.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::service::ADMIN_TOKEN;

const PAGE: u32 = 1000;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Stream {
    /// The endpoint answered 404 (not there yet in this build).
    Unavailable,
    Measured {
        events: u64,
        pages: u64,
        seconds: f64,
        events_per_sec: f64,
    },
}

pub async fn run(http: &reqwest::Client, base: &str) -> anyhow::Result<Stream> {
    let began = Instant::now();
    let (mut after, mut events, mut pages) = (0i64, 0u64, 0u64);
    loop {
        let response = http
            .get(format!("{base}/v1/events?after={after}&limit={PAGE}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND && pages == 0 {
            return Ok(Stream::Unavailable);
        }
        anyhow::ensure!(
            response.status().is_success(),
            "GET /v1/events answered HTTP {}",
            response.status()
        );
        let page: Value = response.json().await?;
        let batch = page["events"].as_array().map_or(0, Vec::len) as u64;
        if batch == 0 {
            break;
        }
        let last = page["events"][batch as usize - 1]["position"].as_i64();
        let next = page["next_after"].as_i64().or(last);
        anyhow::ensure!(
            next.is_some_and(|n| n > after),
            "/v1/events did not move forward"
        );
        after = next.unwrap_or(after);
        events += batch;
        pages += 1;
    }
    let seconds = began.elapsed().as_secs_f64();
    Ok(Stream::Measured {
        events,
        pages,
        seconds,
        events_per_sec: events as f64 / seconds.max(f64::EPSILON),
    })
}
