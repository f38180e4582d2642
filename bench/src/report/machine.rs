//! Facts about the machine and the PostgreSQL server a run measured.

use serde::Serialize;
use sqlx::{Connection, PgConnection};

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub postgres: Option<String>,
    /// Settings that bound commit throughput.
    pub postgres_settings: Vec<(String, String)>,
    pub git_commit: Option<String>,
}

impl Machine {
    pub async fn probe(postgres_url: Option<&str>) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let (postgres, postgres_settings) = match postgres_url {
            Some(url) => postgres_facts(url).await.unwrap_or_default(),
            None => (None, Vec::new()),
        };
        let git_commit = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        Self {
            cpu,
            cores,
            memory_gib,
            kernel,
            postgres,
            postgres_settings,
            git_commit,
        }
    }
}

async fn postgres_facts(url: &str) -> anyhow::Result<(Option<String>, Vec<(String, String)>)> {
    let mut conn = PgConnection::connect(url).await?;
    let version: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut conn)
        .await?;
    let mut settings = Vec::new();
    for name in [
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "commit_delay",
        "shared_buffers",
        "max_connections",
    ] {
        let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(&mut conn)
            .await?;
        settings.push((name.to_owned(), value));
    }
    Ok((Some(version), settings))
}
