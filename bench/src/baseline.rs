//! The baseline: what this PostgreSQL does with the simplest durable write, a one-row INSERT
//! per transaction (`pgbench -n -c C -j C -T secs -f script`), at the login levels' client
//! counts. A login commits at least one transaction, so this bounds login throughput on
//! PostgreSQL from above; the ratio shows how close the service gets (group commit across
//! concurrent logins can bring it near or past 1).

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

#[derive(Debug, Clone, Serialize)]
pub struct BaselineLevel {
    pub clients: usize,
    pub tps: f64,
}

pub async fn run(
    postgres_url: &str,
    clients: &[usize],
    duration: Duration,
) -> anyhow::Result<Vec<BaselineLevel>> {
    let table = format!("bench_pgbench_{:08x}", rand::random::<u32>());
    let mut conn = PgConnection::connect(postgres_url).await?;
    sqlx::query(&format!(
        "CREATE TABLE public.{table} (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), payload text NOT NULL)"
    ))
    .execute(&mut conn)
    .await?;
    let script = std::env::temp_dir().join(format!("{table}.sql"));
    std::fs::write(
        &script,
        format!("INSERT INTO public.{table} (payload) VALUES ('login');\n"),
    )?;
    let mut levels = Vec::new();
    let mut failure = None;
    for &c in clients {
        match pgbench(postgres_url, &script, c, duration).await {
            Ok(tps) => levels.push(BaselineLevel { clients: c, tps }),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&script);
    let _ = sqlx::query(&format!("DROP TABLE public.{table}"))
        .execute(&mut conn)
        .await;
    match failure {
        Some(e) => Err(e),
        None => Ok(levels),
    }
}

async fn pgbench(
    postgres_url: &str,
    script: &std::path::Path,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let secs = duration.as_secs().max(1).to_string();
    let c = clients.to_string();
    let output = tokio::process::Command::new("pgbench")
        .args(["-n", "-c", &c, "-j", &c, "-T", &secs, "-f"])
        .arg(script)
        .arg(postgres_url)
        .output()
        .await
        .context("running pgbench (is it on PATH?)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .with_context(|| format!("no `tps = …` line in pgbench's output:\n{stdout}"))
}
