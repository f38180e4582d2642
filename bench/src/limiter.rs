//! The login limiter's memory (issue 11): the service behind a trusted proxy, 100,000 logins
//! from 100,000 distinct client addresses (half IPv4, half IPv6 /64s) in `X-Forwarded-For`,
//! then its resident set. Each login is refused cheaply after the limiter has counted it (a
//! malformed appid), so what grows is the limiter's table, not the log.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::service::{free_port, serve_command, Backend, Database};

#[derive(Debug, Serialize)]
pub struct LimiterMemory {
    pub clients: u64,
    pub concurrency: usize,
    pub seconds: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub peak_rss_mib: f64,
    pub refused: u64,
}

pub async fn run(binary: &Path, clients: u64, concurrency: usize) -> anyhow::Result<LimiterMemory> {
    let db = Database::fresh(Backend::Sqlite, "").await?;
    let port = free_port()?;
    let mut child = serve_command(binary, port, &db)
        .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1")
        .env("IDENTITY_LOGIN_RATE_PER_MINUTE", "120")
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("the child's pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "identityd did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_before_mib = status_mib(pid, "VmRSS:");

    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, base, next, refused) =
                (http.clone(), base.clone(), next.clone(), refused.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= clients {
                        break;
                    }
                    let answer = http
                        .post(format!("{base}/v1/wechat/login"))
                        .header("x-forwarded-for", client_address(n))
                        .json(&serde_json::json!({ "appid": "limiter-bench", "code": "c" }))
                        .send()
                        .await;
                    if answer.map_or(true, |a| a.status() != 400) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let result = LimiterMemory {
        clients,
        concurrency,
        seconds,
        rss_before_mib,
        rss_after_mib: status_mib(pid, "VmRSS:"),
        peak_rss_mib: status_mib(pid, "VmHWM:"),
        refused: refused.load(Ordering::Relaxed),
    };
    let _ = child.kill().await;
    db.remove().await;
    Ok(result)
}

/// Distinct clients: even `n` an IPv4 address, odd `n` an IPv6 /64 of its own.
fn client_address(n: u64) -> String {
    if n & 1 == 0 {
        std::net::Ipv4Addr::from(0x0a00_0000 | (n as u32 & 0x00ff_ffff)).to_string()
    } else {
        std::net::Ipv6Addr::from_bits((0x2001_0db8_u128 << 96) | (u128::from(n) << 64) | 1)
            .to_string()
    }
}

fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0.0, |kib| kib as f64 / 1024.0)
}

pub fn markdown(m: &LimiterMemory) -> String {
    format!(
        "## Login limiter memory\n\n| clients | concurrency | seconds | RSS before | RSS after | peak RSS | not 400 |\n\
         |---|---|---|---|---|---|---|\n| {} | {} | {:.1} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} |\n",
        m.clients, m.concurrency, m.seconds, m.rss_before_mib, m.rss_after_mib, m.peak_rss_mib, m.refused
    )
}
