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
    /// The schema `pg_walinspect` is installed in, once asked for (see
    /// [`PgServer::attributing_wal`]).
    walinspect: Option<String>,
}

/// The WAL's position and the syncs to disk so far.
#[derive(Debug, Clone)]
pub struct WalSample {
    lsn: f64,
    /// The same position as PostgreSQL spells it, for `pg_walinspect`.
    position: String,
    syncs: Option<f64>,
}

/// The WAL of a level that went to one relation (its records' first block), per login.
#[derive(Debug, Clone, Serialize)]
pub struct RelationWal {
    /// The relation's name; `(none)` for records without a block (commits, for one), `(other)`
    /// for relations of other databases of the server.
    pub relation: String,
    pub records_per_login: f64,
    pub bytes_per_login: f64,
    /// The part of `bytes_per_login` that is full-page images.
    pub full_page_bytes_per_login: f64,
}

/// How many relations the attribution names; the rest are summed into one row.
const RELATIONS_SHOWN: i64 = 14;

/// WAL written per login over a level.
#[derive(Debug, Clone, Serialize)]
pub struct WalUse {
    /// `pg_current_wal_lsn()` moved by this much, divided by the logins.
    pub bytes_per_login: f64,
    /// `pg_stat_wal.wal_sync` (fsyncs of the WAL by every process, after the server's own
    /// grouping of commits), divided by the logins. Processes report it about once a second,
    /// so a short level's figure is approximate.
    pub syncs_per_login: Option<f64>,
    /// By relation, where the level asked for it ([`PgServer::attributing_wal`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_relation: Option<Vec<RelationWal>>,
}

impl PgServer {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(url).await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        let postmaster = u32::try_from(backend).ok().and_then(cpu::postmaster_of);
        Ok(Self {
            conn,
            postmaster,
            walinspect: None,
        })
    }

    /// Makes [`Self::wal_by_relation`] answer: installs `pg_walinspect` into the connection's
    /// schema (the bench's own, dropped with it) unless the database has it already, in
    /// whichever schema. Needs a superuser; left off where refused.
    pub async fn attributing_wal(mut self) -> Self {
        let installed = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            .execute(&mut self.conn)
            .await;
        let schema = sqlx::query_scalar(
            "SELECT quote_ident(n.nspname) FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_walinspect'",
        )
        .fetch_optional(&mut self.conn)
        .await;
        match (installed, schema) {
            (Ok(_), Ok(Some(schema))) => self.walinspect = Some(schema),
            (Err(e), _) | (_, Err(e)) => eprintln!("  no WAL by relation: {e}"),
            (Ok(_), Ok(None)) => eprintln!("  no WAL by relation: pg_walinspect not found"),
        }
        self
    }

    /// The WAL written between two samples, by relation, per login: the largest
    /// [`RELATIONS_SHOWN`] and the rest in one row. `None` without `pg_walinspect` or when the
    /// server has already recycled part of the range.
    pub async fn wal_by_relation(
        &mut self,
        from: &WalSample,
        to: &WalSample,
        logins: u64,
    ) -> Option<Vec<RelationWal>> {
        let schema = self.walinspect.as_deref().filter(|_| logins > 0)?;
        // A record's first block names its relation: `rel <tablespace>/<database>/<filenode>`
        // (`pg_filenode_relation` wants 0 for the database's default tablespace).
        // The range ends at most where the WAL is flushed: PostgreSQL 15 refuses to read further.
        let rows = sqlx::query(&format!(
            "WITH records AS ( \
               SELECT record_length, fpi_length, \
                      substring(block_ref from 'rel ([0-9]+)/[0-9]+/[0-9]+')::oid AS space, \
                      substring(block_ref from 'rel [0-9]+/([0-9]+)/[0-9]+')::oid AS db, \
                      substring(block_ref from 'rel [0-9]+/[0-9]+/([0-9]+)')::oid AS filenode \
               FROM {schema}.pg_get_wal_records_info($1::pg_lsn, \
                    least($2::pg_lsn, pg_current_wal_flush_lsn()))), \
             named AS ( \
               SELECT record_length, fpi_length, CASE \
                 WHEN filenode IS NULL THEN '(none)' \
                 WHEN db <> (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   THEN '(other)' \
                 ELSE coalesce(pg_filenode_relation( \
                   CASE WHEN space = (SELECT oid FROM pg_tablespace WHERE spcname = 'pg_default') \
                     THEN 0 ELSE space END, filenode)::text, '(dropped)') END AS relation \
               FROM records), \
             totals AS ( \
               SELECT relation, count(*)::float8 AS records, sum(record_length)::float8 AS bytes, \
                      sum(fpi_length)::float8 AS fpi, \
                      row_number() OVER (ORDER BY sum(record_length) DESC) AS rank \
               FROM named GROUP BY relation) \
             SELECT CASE WHEN rank <= $3 THEN relation ELSE '(the rest)' END AS relation, \
                    sum(records) AS records, sum(bytes) AS bytes, sum(fpi) AS fpi \
             FROM totals GROUP BY 1 ORDER BY min(rank)"
        ))
        .bind(&from.position)
        .bind(&to.position)
        .bind(RELATIONS_SHOWN)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| eprintln!("  no WAL by relation: {e}"))
        .ok()?;
        let n = logins as f64;
        rows.iter()
            .map(|row| {
                Some(RelationWal {
                    relation: row.try_get("relation").ok()?,
                    records_per_login: row.try_get::<f64, _>("records").ok()? / n,
                    bytes_per_login: row.try_get::<f64, _>("bytes").ok()? / n,
                    full_page_bytes_per_login: row.try_get::<f64, _>("fpi").ok()? / n,
                })
            })
            .collect()
    }

    /// Writes every dirty page: the next change to each page logs a full-page image again.
    pub async fn checkpoint(&mut self) -> anyhow::Result<()> {
        sqlx::query("CHECKPOINT").execute(&mut self.conn).await?;
        Ok(())
    }

    /// `None` if the server does not answer (the level is then reported without WAL).
    pub async fn wal(&mut self) -> Option<WalSample> {
        let row = sqlx::query(
            "SELECT pg_wal_lsn_diff(lsn, '0/0')::float8 AS lsn, lsn::text AS position \
             FROM pg_current_wal_lsn() AS lsn",
        )
        .fetch_one(&mut self.conn)
        .await
        .ok()?;
        let syncs = wal_io(&mut self.conn).await.map(|io| io.syncs);
        Some(WalSample {
            lsn: row.try_get("lsn").ok()?,
            position: row.try_get("position").ok()?,
            syncs,
        })
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
            by_relation: None,
        })
    }
}

/// Stands in for autovacuum's `ANALYZE` on a server that runs without it (this machine's CI
/// configuration has `autovacuum = off`; a deployment's does not). Without fresh statistics,
/// statements planned while the schema's tables were small keep those plans: a login's read of
/// its streams then scans the whole log (22k sequential scans of `events` in 2.5 minutes of a
/// soak), so every login gets slower as the log grows and the levels measure that instead.
/// Only analyzes (never vacuums), with autovacuum's default rule read from the statistics
/// views (more than 50 rows + 10 % of the live ones changed since the last `ANALYZE`), every
/// 10 s, until dropped.
pub struct StandInAutoanalyze(tokio::task::JoinHandle<()>);

impl StandInAutoanalyze {
    /// `None` where the server's own autovacuum is on (or the server does not answer).
    pub async fn start_if_needed(url: &str) -> Option<Self> {
        let mut conn = PgConnection::connect(url).await.ok()?;
        let setting: String = sqlx::query_scalar("SHOW autovacuum")
            .fetch_one(&mut conn)
            .await
            .ok()?;
        if setting == "on" {
            return None;
        }
        eprintln!("  the server runs with autovacuum = off: the bench analyzes its tables instead");
        Some(Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                let due: Vec<String> = match sqlx::query_scalar(
                    "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables \
                     WHERE schemaname = current_schema() \
                       AND n_mod_since_analyze > 50 + 0.1 * n_live_tup",
                )
                .fetch_all(&mut conn)
                .await
                {
                    Ok(due) => due,
                    Err(e) => {
                        eprintln!("  stand-in ANALYZE stopped: {e}");
                        return;
                    }
                };
                for table in due {
                    if let Err(e) = sqlx::query(&format!("ANALYZE {table}"))
                        .execute(&mut conn)
                        .await
                    {
                        eprintln!("  stand-in ANALYZE of {table}: {e}");
                    }
                }
            }
        })))
    }
}

impl Drop for StandInAutoanalyze {
    fn drop(&mut self) {
        self.0.abort();
    }
}
