//! The observer: takes the snapshots from outside the service (a superuser connection), and
//! waits for the quiet moments a snapshot needs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

use super::snapshot::{Snapshot, Statement, Writes};
use crate::pgproxy::Counts;

/// The observer: a superuser on the cluster, outside the service's role and database.
pub(super) struct Observer {
    /// Connected to `--postgres-url`'s database (not the service's).
    pub(super) conn: PgConnection,
    /// The service's database, as the superuser.
    pub(super) service_db: PgConnectOptions,
    pub(super) role: String,
    pub(super) database: String,
    pub(super) observer_xacts: u64,
    pub(super) nats: bool,
}

impl Observer {
    pub(super) async fn snapshot(&mut self, proxy: Counts) -> anyhow::Result<Snapshot> {
        self.wait_idle().await?;
        let rows = sqlx::query(
            "SELECT queryid, toplevel, query, calls, rows, total_exec_time + total_plan_time AS ms, \
                    wal_bytes::float8 AS wal_bytes \
             FROM pg_stat_statements \
             WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = $1) \
               AND dbid = (SELECT oid FROM pg_database WHERE datname = $2)",
        )
        .bind(&self.role)
        .bind(&self.database)
        .fetch_all(&mut self.conn)
        .await
        .context("reading pg_stat_statements")?;
        let mut statements = HashMap::new();
        for row in rows {
            let toplevel: bool = row.try_get("toplevel")?;
            statements.insert(
                (row.try_get::<i64, _>("queryid")?, toplevel),
                Statement {
                    query: row.try_get("query")?,
                    toplevel,
                    calls: row.try_get::<i64, _>("calls")? as f64,
                    rows: row.try_get::<i64, _>("rows")? as f64,
                    ms: row.try_get("ms")?,
                    wal_bytes: row.try_get("wal_bytes")?,
                },
            );
        }
        let row = sqlx::query(
            "SELECT d.xact_commit, d.xact_rollback, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS lsn, \
                    pg_snapshot_xmax(pg_current_snapshot())::text::float8 AS xids, \
                    w.wal_records, w.wal_fpi \
             FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = $1",
        )
        .bind(&self.database)
        .fetch_one(&mut self.conn)
        .await?;
        // NaN (shown as such) where the server no longer counts them in pg_stat_wal.
        let io = crate::pgserver::wal_io(&mut self.conn).await;
        let mut snapshot = Snapshot {
            statements,
            commits: row.try_get::<i64, _>("xact_commit")? as f64,
            rollbacks: row.try_get::<i64, _>("xact_rollback")? as f64,
            wal_lsn: row.try_get("lsn")?,
            xids: row.try_get("xids")?,
            wal_records: row.try_get::<i64, _>("wal_records")? as f64,
            wal_fpi: row.try_get::<i64, _>("wal_fpi")? as f64,
            wal_writes: io.map_or(f64::NAN, |io| io.writes),
            wal_syncs: io.map_or(f64::NAN, |io| io.syncs),
            proxy,
            ..Snapshot::default()
        };
        // Rows written per table: only readable from inside the service's database. This
        // transaction is flushed into the next window's commits, which take it out again.
        let mut conn = self.service_db.connect().await?;
        self.observer_xacts += 1;
        let rows = sqlx::query(
            "SELECT relname::text AS relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del \
             FROM pg_stat_user_tables",
        )
        .fetch_all(&mut conn)
        .await?;
        conn.close().await?;
        for row in rows {
            snapshot.tables.insert(
                row.try_get("relname")?,
                Writes {
                    inserted: row.try_get::<i64, _>("n_tup_ins")? as f64,
                    updated: row.try_get::<i64, _>("n_tup_upd")? as f64,
                    hot_updated: row.try_get::<i64, _>("n_tup_hot_upd")? as f64,
                    deleted: row.try_get::<i64, _>("n_tup_del")? as f64,
                },
            );
        }
        snapshot.observer_xacts = self.observer_xacts;
        Ok(snapshot)
    }

    /// Waits until no backend is left on the service's database (the service stopped, the
    /// observer's own connections closed): a backend flushes its statistics as it exits.
    pub(super) async fn wait_idle(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&self.database)
                    .fetch_one(&mut self.conn)
                    .await?;
            if n == 0 {
                break;
            }
            if Instant::now() > deadline {
                let left: Vec<String> = sqlx::query_scalar(
                    "SELECT concat_ws(' ', pid, usename, backend_type, state, wait_event_type, \
                            wait_event, left(query, 120)) \
                     FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&self.database)
                .fetch_all(&mut self.conn)
                .await?;
                bail!(
                    "{n} backends still on {} after 60 s: {left:?}",
                    self.database
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The shared statistics are flushed in the exit path; leave it a moment to finish, and
        // the WAL writer (which reports its writes and syncs about once a second) time to report.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok(())
    }

    /// Waits until every projection (and the relay, if on) has applied the whole log.
    pub(super) async fn wait_caught_up(&mut self) -> anyhow::Result<()> {
        let mut conn = self.service_db.connect().await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let sql = if self.nats {
            "SELECT (SELECT COALESCE(MAX(position), 0) FROM events) <= \
                    LEAST((SELECT MIN(position) FROM projection_checkpoints), \
                          (SELECT MIN(position) FROM relay_checkpoints))"
        } else {
            "SELECT (SELECT COALESCE(MAX(position), 0) FROM events) <= \
                    (SELECT MIN(position) FROM projection_checkpoints)"
        };
        let result = loop {
            self.observer_xacts += 1;
            let done: Option<bool> = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
            if done == Some(true) {
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!("the read models did not catch up in 300 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        conn.close().await?;
        result
    }
}
