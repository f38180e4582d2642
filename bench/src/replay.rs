//! Replay: `projections::rebuild` of every read model over the whole log, timed.

use std::sync::Arc;
use std::time::Instant;

use infra::store::Store;
use projections::ReadModels;
use serde::{Deserialize, Serialize};

use crate::cpu::{CpuSample, CpuUse};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replay {
    /// The log's head when the rebuild ended.
    pub events: i64,
    /// Seconds of each rebuild.
    pub runs: Vec<f64>,
    pub median_seconds: f64,
    pub events_per_sec: f64,
    /// CPU per event replayed, over all runs: the rebuild runs in this process (`harness`);
    /// PostgreSQL's processes apart when the server is on this machine.
    pub cpu: Option<CpuUse>,
}

/// Rebuilds all read models `runs` times; events/s from the median run.
pub async fn run(database_url: &str, store: Arc<dyn Store>, runs: usize) -> anyhow::Result<Replay> {
    let models = ReadModels::connect(database_url, chrono_tz::UTC).await?;
    let mut seconds = Vec::new();
    let mut events = 0;
    let postmaster = postmaster(database_url).await;
    let before = CpuSample::now(None, postmaster);
    for _ in 0..runs.max(1) {
        let began = Instant::now();
        let status = projections::rebuild(&models, store.clone(), None).await?;
        seconds.push(began.elapsed().as_secs_f64());
        // On PostgreSQL a rebuild reads up to the oldest running transaction on the server;
        // what it reached is what it replayed.
        events = status.iter().map(|s| s.position).min().unwrap_or(0);
        let head = status.first().map_or(0, |s| s.head);
        if events < head {
            eprintln!("  replay reached {events} of {head} events (an older transaction on the server held it back)");
        }
    }
    let replayed = u64::try_from(events).unwrap_or(0) * seconds.len() as u64;
    let cpu = before.per_unit(&CpuSample::now(None, postmaster), replayed);
    let median_seconds = median(&seconds);
    Ok(Replay {
        events,
        median_seconds,
        events_per_sec: events as f64 / median_seconds.max(f64::EPSILON),
        runs: seconds,
        cpu,
    })
}

/// The PostgreSQL server's postmaster, when the database is on a server on this machine.
async fn postmaster(database_url: &str) -> Option<u32> {
    let url = infra::database_url::DatabaseUrl::parse(database_url).ok()?;
    if url.backend() != infra::database_url::Backend::Postgres {
        return None;
    }
    crate::pgserver::PgServer::connect(database_url)
        .await
        .ok()?
        .postmaster
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Waits until every read model has applied the whole log (the service's runners do it).
pub async fn caught_up(database_url: &str) -> anyhow::Result<i64> {
    let models = ReadModels::connect(database_url, chrono_tz::UTC).await?;
    let head = models.status().await?.first().map_or(0, |s| s.head);
    models
        .wait_for_catch_up(head, std::time::Duration::from_secs(1800))
        .await?;
    Ok(head)
}

/// On PostgreSQL, waits (up to a minute) until every committed event is readable: readers see
/// the log only below the oldest transaction still running on the server.
pub async fn readable(database_url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let url = infra::database_url::DatabaseUrl::parse(database_url)?;
    if url.backend() != infra::database_url::Backend::Postgres {
        return Ok(());
    }
    let mut conn = sqlx::PgConnection::connect(database_url).await?;
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let readable: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM events \
             WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()))",
        )
        .fetch_one(&mut conn)
        .await?;
        if readable {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("  part of the log is still unreadable after 60 s (a long transaction on the server); going on");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
