//! The PostgreSQL server a login level runs against, watched from outside the service: its
//! processes (for their CPU, see `cpu`) and its WAL, so a level can say what one login cost
//! the server. Server-wide figures: whatever else runs on the same server counts too.

use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};

use crate::cpu;

pub struct PgServer {
    conn: PgConnection,
    /// The postmaster's pid when the server runs on this machine.
    pub postmaster: Option<u32>,
}

/// The WAL's position and the syncs to disk so far.
#[derive(Debug, Clone, Copy)]
pub struct WalSample {
    lsn: f64,
    syncs: Option<f64>,
}

/// WAL written per login over a level.
#[derive(Debug, Clone, Serialize)]
pub struct WalUse {
    /// `pg_current_wal_lsn()` moved by this much, divided by the logins.
    pub bytes_per_login: f64,
    /// `pg_stat_wal.wal_sync` (fsyncs of the WAL by every process, after the server's own
    /// grouping of commits), divided by the logins. Processes report it about once a second,
    /// so a short level's figure is approximate.
    pub syncs_per_login: Option<f64>,
}

impl PgServer {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(url).await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        let postmaster = u32::try_from(backend).ok().and_then(cpu::postmaster_of);
        Ok(Self { conn, postmaster })
    }

    /// `None` if the server does not answer (the level is then reported without WAL).
    pub async fn wal(&mut self) -> Option<WalSample> {
        let lsn: f64 =
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8")
                .fetch_one(&mut self.conn)
                .await
                .ok()?;
        let syncs = wal_io(&mut self.conn).await.map(|io| io.syncs);
        Some(WalSample { lsn, syncs })
    }
}

/// The WAL's writes and syncs to disk so far (`pg_stat_wal`, every process).
#[derive(Debug, Clone, Copy)]
pub struct WalIo {
    pub writes: f64,
    pub syncs: f64,
}

/// `None` from PostgreSQL 18 on, where these counters moved to `pg_stat_io`: the one reader of
/// them, so every report degrades the same way. Outside a transaction (a failed statement
/// would abort one).
pub async fn wal_io(conn: &mut PgConnection) -> Option<WalIo> {
    let row = sqlx::query(
        "SELECT wal_write::float8 AS writes, wal_sync::float8 AS syncs FROM pg_stat_wal",
    )
    .fetch_one(conn)
    .await
    .ok()?;
    Some(WalIo {
        writes: row.try_get("writes").ok()?,
        syncs: row.try_get("syncs").ok()?,
    })
}

impl WalSample {
    pub fn per_unit(&self, later: &Self, units: u64) -> Option<WalUse> {
        let n = (units > 0).then_some(units as f64)?;
        Some(WalUse {
            bytes_per_login: (later.lsn - self.lsn) / n,
            syncs_per_login: self.syncs.zip(later.syncs).map(|(a, b)| (b - a) / n),
        })
    }
}
