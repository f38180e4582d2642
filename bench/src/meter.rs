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
    if let (Some(server), Some(before), Some(after)) = (server, &wal_before, &wal_after) {
        level.wal = before.per_unit(after, level.logins);
        if let Some(wal) = level.wal.as_mut() {
            wal.by_relation = server.wal_by_relation(before, after, level.logins).await;
        }
    }
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
    if let Some(rows) = level.wal.as_ref().and_then(|w| w.by_relation.as_ref()) {
        let top: Vec<String> = rows
            .iter()
            .take(6)
            .map(|r| {
                format!(
                    "{} {:.0} ({:.0} in full pages)",
                    r.relation, r.bytes_per_login, r.full_page_bytes_per_login
                )
            })
            .collect();
        eprintln!("    WAL bytes/login by relation: {}", top.join(", "));
    }
    level
}
