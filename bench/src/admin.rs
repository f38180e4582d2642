//! Admin queries through HTTP, one after another: one user's login history page and a global
//! app/time-range page (`limit=50`), each from a random user or a random one-day window.

use std::time::Instant;

use chrono::{Duration, SecondsFormat};
use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;
use serde_json::Value;

use crate::generate::Sample;
use crate::report::Latency;
use crate::service::{ADMIN_TOKEN, APP_A};

/// Unrecorded requests first (connections, caches).
const WARM_UP: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub events: i64,
    pub requests: usize,
    pub user_page: Latency,
    /// Mean items on a user's page (a page of 50 at most).
    pub user_page_items: f64,
    pub global_page: Latency,
    pub global_page_items: f64,
    pub errors: u64,
}

pub async fn run(
    http: &reqwest::Client,
    base: &str,
    sample: &Sample,
    events: i64,
    requests: usize,
) -> anyhow::Result<Admin> {
    anyhow::ensure!(!sample.users.is_empty(), "no users to look up");
    let mut errors = 0;
    let user_path = |i: usize| {
        let user = sample.users[i % sample.users.len()];
        format!("/v1/admin/users/{user}/logins?limit=50")
    };
    let (user_page, user_page_items) = timed(http, base, requests, &mut errors, user_path).await;
    let span = (sample.last - sample.first - Duration::days(1))
        .num_seconds()
        .max(1);
    let global_path = |_| {
        let from = sample.first + Duration::seconds(rand::thread_rng().gen_range(0..span));
        let to = from + Duration::days(1);
        format!(
            "/v1/admin/logins?appid={APP_A}&from={}&to={}&limit=50",
            from.to_rfc3339_opts(SecondsFormat::Secs, true),
            to.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    };
    let (global_page, global_page_items) =
        timed(http, base, requests, &mut errors, global_path).await;
    Ok(Admin {
        events,
        requests,
        user_page,
        user_page_items,
        global_page,
        global_page_items,
        errors,
    })
}

async fn timed(
    http: &reqwest::Client,
    base: &str,
    requests: usize,
    errors: &mut u64,
    path: impl Fn(usize) -> String,
) -> (Latency, f64) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut items = 0usize;
    for i in 0..WARM_UP + requests {
        let url = format!("{base}{}", path(i));
        let began = Instant::now();
        let answer = http.get(&url).bearer_auth(ADMIN_TOKEN).send().await;
        let page = match answer {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
            Ok(r) => {
                if *errors == 0 {
                    eprintln!("  admin query {url}: HTTP {}", r.status());
                }
                None
            }
            Err(_) => None,
        };
        let elapsed = began.elapsed();
        let Some(page) = page else {
            *errors += 1;
            continue;
        };
        if i >= WARM_UP {
            let _ = histogram.record(
                u64::try_from(elapsed.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
            items += page["items"].as_array().map_or(0, Vec::len);
        }
    }
    (
        Latency::of(&histogram),
        items as f64 / requests.max(1) as f64,
    )
}
