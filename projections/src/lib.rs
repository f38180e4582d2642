//! Read models built from the global event stream: one runner for all projections (checkpoints,
//! catch-up, then live), the tables and their queries, and rebuild.
//!
//! Read models live in the event store's database on PostgreSQL, in a file of their own beside
//! the store's on SQLite (`db/sqlite.rs`). Each projection's tables exist in
//! generations (`users_g1`, …) behind views (`users`) so that a rebuild can fill fresh tables
//! and swap them in while queries go on; see `schema`.

mod checkpoint;
mod cursor;
mod db;
mod error;
mod event;
mod models;
mod queries;
mod rebuild;
mod runner;
mod schema;
mod stats_zone;
mod table;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use infra::sql::PoolSettings;
use serde::Serialize;
use sqlx::Row;

pub use cursor::parse_cursor;
pub use error::ProjectionError;
pub use queries::{
    AccountRecord, AuditFilter, AuditRecord, DailyStatsRecord, LoginFilter, LoginRecord, Page,
    PageRequest, SessionFilter, SessionRecord, UserFilter, UserRecord, MAX_PAGE_LIMIT,
};
pub use rebuild::rebuild;
pub use runner::{run_one_batch, spawn_runners, RunnerHandle};

use db::Db;
use models::Projection;

/// The projections, by the names `status`, `rebuild` and the CLI use.
pub const PROJECTIONS: &[&str] = &[
    "users",
    "login_history",
    "audit_log",
    "daily_stats",
    "sessions",
];

/// Where a projection stands: the position of the last event applied, the log's head, and
/// the difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub position: i64,
    pub head: i64,
    pub lag: i64,
}

/// The read models' database handle: queries, status, and what runners and rebuilds write
/// through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadModels {
    db: Arc<Db>,
    stats_timezone: Tz,
    /// This process's name in `stats_zone_instances`.
    instance: uuid::Uuid,
}

impl ReadModels {
    /// Connects to the read models' database (on SQLite their file beside the store's, after
    /// dropping what an older version left in the store's), creates their tables if missing
    /// and drops the generations a rebuild retired but had not dropped (seconds on SQLite for a
    /// large one). `stats_timezone` (`IDENTITY_STATS_TIMEZONE`) is where the daily stats' days
    /// start. Waits for connections patiently (`PoolSettings::PATIENT`).
    pub async fn connect(database_url: &str, stats_timezone: Tz) -> Result<Self, ProjectionError> {
        Self::connect_with(database_url, stats_timezone, &PoolSettings::PATIENT).await
    }

    /// `connect`, with PostgreSQL's connections waited for as `settings` say.
    pub async fn connect_with(
        database_url: &str,
        stats_timezone: Tz,
        settings: &PoolSettings,
    ) -> Result<Self, ProjectionError> {
        let db = Db::connect(database_url, settings).await?;
        schema::init(&db, stats_timezone).await?;
        // Left by a rebuild that stopped between its swap and its drops. A failure is logged
        // there and tried again at the next rebuild or start.
        let _ = schema::drop_retired(&db).await;
        Ok(Self {
            db: Arc::new(db),
            stats_timezone,
            instance: uuid::Uuid::new_v4(),
        })
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// The zone whose midnight starts a day of the daily stats.
    pub fn stats_timezone(&self) -> Tz {
        self.stats_timezone
    }

    pub(crate) fn instance(&self) -> uuid::Uuid {
        self.instance
    }

    /// At start, before the runners: announces this instance's stats zone, refusing
    /// (`StatsZoneInUse`) when a live instance counts days in another one, and rebuilds
    /// `daily_stats` if they were built in another zone. Returns that zone if so.
    pub async fn settle_stats_timezone(
        &self,
        store: Arc<dyn infra::store::Store>,
    ) -> Result<Option<String>, ProjectionError> {
        stats_zone::announce(&self.db, self.instance, self.stats_timezone).await?;
        let mut conn = self.db.read.acquire().await?;
        let recorded = stats_zone::recorded(&mut conn).await?;
        drop(conn);
        if recorded.zone == self.stats_timezone.name() {
            return Ok(None);
        }
        tracing::warn!(
            from = %recorded.zone,
            to = %self.stats_timezone.name(),
            "IDENTITY_STATS_TIMEZONE changed: rebuilding daily_stats in the new zone"
        );
        rebuild(self, store, Some("daily_stats")).await?;
        Ok(Some(recorded.zone))
    }

    /// Every projection's checkpoint against the log's head.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let (head, positions) = self
            .db
            .read(|pool| async move {
                let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                    .fetch_one(&pool)
                    .await?;
                Ok((head, checkpoint::all(&pool).await?))
            })
            .await?;
        Ok(PROJECTIONS
            .iter()
            .map(|name| {
                let position = positions
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, p)| *p);
                ProjectionStatus {
                    name: (*name).to_owned(),
                    position,
                    head,
                    lag: (head - position).max(0),
                }
            })
            .collect())
    }

    /// Waits until every projection has applied the log up to `head` (for tests and the
    /// CLI).
    pub async fn wait_for_catch_up(
        &self,
        head: i64,
        timeout: Duration,
    ) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status().await?;
            if status.iter().all(|s| s.position >= head) {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ProjectionError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every row of every read-model table (live generation), as text, table by table in a
    /// fixed order: for tests that compare two read models.
    #[doc(hidden)]
    pub async fn dump(&self) -> Result<Vec<(String, Vec<String>)>, ProjectionError> {
        let mut dump = Vec::new();
        for projection in Projection::ALL {
            for table in projection.tables() {
                let columns = table.column_names();
                let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
                let sql = format!(
                    "SELECT {} FROM {} ORDER BY {}",
                    columns.join(", "),
                    table.name,
                    order.join(", ")
                );
                let rows = sqlx::query(&sql).fetch_all(&self.db.read).await?;
                let mut lines = Vec::with_capacity(rows.len());
                for row in rows {
                    let mut fields = Vec::with_capacity(columns.len());
                    for i in 0..columns.len() {
                        let field = match row.try_get::<Option<i64>, _>(i) {
                            Ok(v) => format!("{v:?}"),
                            Err(_) => format!("{:?}", row.try_get::<Option<String>, _>(i)?),
                        };
                        fields.push(field);
                    }
                    lines.push(fields.join("|"));
                }
                dump.push((table.name.to_owned(), lines));
            }
        }
        Ok(dump)
    }
}
