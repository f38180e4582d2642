//! Around a login level: the CPU each process spent (`cpu`) and, on PostgreSQL, the WAL the
//! server wrote (`pgserver`), divided by the logins done.

use std::future::Future;

use crate::cpu::CpuSample;
use crate::login::LevelResult;
use crate::pgserver::PgServer;
use crate::service::Service;

/// Runs one login level, notes what it cost per login, and prints its headline.
pub async fn level(
    service: &Service,
    mut server: Option<&mut PgServer>,
    level: impl Future<Output = LevelResult>,
) -> LevelResult {
    let postmaster = server.as_ref().and_then(|s| s.postmaster);
    let wal_before = match server.as_mut() {
        Some(s) => s.wal().await,
        None => None,
    };
    let before = CpuSample::now(service.pid(), postmaster);
    let mut level = level.await;
    level.cpu = before.per_unit(&CpuSample::now(service.pid(), postmaster), level.logins);
    let wal_after = match server.as_mut() {
        Some(s) => s.wal().await,
        None => None,
    };
    level.wal = wal_before
        .zip(wal_after)
        .and_then(|(a, b)| a.per_unit(&b, level.logins));
    let postgres = level
        .cpu
        .as_ref()
        .and_then(|c| c.postgres_ms)
        .map_or(String::new(), |ms| {
            format!(", PostgreSQL {ms:.2} ms CPU/login")
        });
    let wal = level.wal.as_ref().map_or(String::new(), |w| {
        format!(", {:.0} WAL bytes/login", w.bytes_per_login)
    });
    eprintln!(
        "  {:.0} logins/s, p99 {:.2} ms, {} errors{postgres}{wal}",
        level.logins_per_sec, level.login.p99_ms, level.errors
    );
    level
}
