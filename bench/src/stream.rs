//! `/v1/events` catch-up: page through the whole log with `limit=1000`, as an analytics
//! consumer starting from zero would; three passes, the median reported (one pass is a few
//! seconds, short enough for a neighbour on a shared machine to move it).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::service::ADMIN_TOKEN;

const PAGE: u32 = 1000;
const PASSES: usize = 3;

/// What the consumer reads of a page: the rest of each event is skipped, not built into a
/// tree, so the load generator's parsing takes less of the shared CPU.
#[derive(Deserialize)]
struct Page {
    events: Vec<Position>,
    next_after: Option<i64>,
}

#[derive(Deserialize)]
struct Position {
    position: i64,
}

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
        /// Every pass's seconds, in order.
        passes: Vec<f64>,
    },
}

pub async fn run(http: &reqwest::Client, base: &str) -> anyhow::Result<Stream> {
    let mut runs = Vec::with_capacity(PASSES);
    for _ in 0..PASSES {
        match pass(http, base).await? {
            Some(run) => runs.push(run),
            None => return Ok(Stream::Unavailable),
        }
    }
    let passes: Vec<f64> = runs.iter().map(|&(_, _, seconds)| seconds).collect();
    runs.sort_by(|a, b| a.2.total_cmp(&b.2));
    let (events, pages, seconds) = runs[runs.len() / 2];
    Ok(Stream::Measured {
        events,
        pages,
        seconds,
        events_per_sec: events as f64 / seconds.max(f64::EPSILON),
        passes,
    })
}

/// One catch-up from position 0: (events, pages, seconds), or `None` when the endpoint is not
/// there.
async fn pass(http: &reqwest::Client, base: &str) -> anyhow::Result<Option<(u64, u64, f64)>> {
    let began = Instant::now();
    let (mut after, mut events, mut pages) = (0i64, 0u64, 0u64);
    loop {
        let response = http
            .get(format!("{base}/v1/events?after={after}&limit={PAGE}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND && pages == 0 {
            return Ok(None);
        }
        anyhow::ensure!(
            response.status().is_success(),
            "GET /v1/events answered HTTP {}",
            response.status()
        );
        let page: Page = response.json().await?;
        let batch = page.events.len() as u64;
        let Some(last) = page.events.last().map(|e| e.position) else {
            break;
        };
        let next = page.next_after.or(Some(last));
        anyhow::ensure!(
            next.is_some_and(|n| n > after),
            "/v1/events did not move forward"
        );
        after = next.unwrap_or(after);
        events += batch;
        pages += 1;
    }
    Ok(Some((events, pages, began.elapsed().as_secs_f64())))
}
