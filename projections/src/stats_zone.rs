//! The zone the daily stats are built in (`IDENTITY_STATS_TIMEZONE`). A day of `daily_stats`
//! starts at midnight in that zone, so rows built in two zones must never sit side by side:
//!
//! - the zone the live `daily_stats` tables were built in is recorded (`read_model_settings`),
//!   set when they are first created and changed only by the rebuild's swap, in its
//!   transaction;
//! - a runner applies a batch only if the recorded zone is its own, checked in the batch's
//!   transaction, so an instance left running in another zone stops instead of mixing;
//! - each instance announces its zone (`stats_zone_instances`, refreshed by its runner): one
//!   starting in another zone than a live one refuses to start, instead of the two rebuilding
//!   the stats back and forth;
//! - at start, an instance whose zone differs from the recorded one rebuilds `daily_stats`
//!   (`ReadModels::settle_stats_timezone`).
//!
//! Refused-login tallies cannot be rebuilt (they are not events): those first counted before
//! the zone took effect (`since`) are left out of the daily stats.

use std::time::Duration;

use chrono_tz::Tz;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::db::Db;
use crate::error::ProjectionError;

/// The `read_model_settings` row of the zone.
const SETTING: &str = "daily_stats.timezone";

/// How often a running instance refreshes its announcement.
pub(crate) const BEAT: Duration = Duration::from_secs(10);
/// An announcement older than this is of an instance gone (crashed without leaving).
pub(crate) const GONE_AFTER: Duration = Duration::from_secs(30);

/// The zone the live stats were built in, and since when (microseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub zone: String,
    pub since: i64,
}

/// Creates the tables; records `zone` if nothing is recorded yet: the zone of stats about to
/// be built (`fresh`), else UTC, the only zone of the versions before the setting existed.
pub(crate) async fn init(
    conn: &mut AnyConnection,
    int: &str,
    zone: Tz,
    fresh: bool,
) -> Result<(), ProjectionError> {
    for sql in [
        format!(
            "CREATE TABLE IF NOT EXISTS read_model_settings (name text PRIMARY KEY NOT NULL, \
             value text NOT NULL, since {int} NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS stats_zone_instances (instance_id text PRIMARY KEY \
             NOT NULL, timezone text NOT NULL, seen_at {int} NOT NULL)"
        ),
    ] {
        sqlx::query(&sql).execute(&mut *conn).await?;
    }
    let built_in = if fresh { zone } else { Tz::UTC };
    sqlx::query(
        "INSERT INTO read_model_settings (name, value, since) VALUES ($1, $2, 0) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(SETTING)
    .bind(built_in.name())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn recorded(conn: &mut AnyConnection) -> Result<Recorded, ProjectionError> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT value, since FROM read_model_settings WHERE name = $1")
            .bind(SETTING)
            .fetch_optional(conn)
            .await?;
    row.map(|(zone, since)| Recorded { zone, since })
        .ok_or_else(|| ProjectionError::Corrupt("no recorded stats time zone".into()))
}

/// Refuses a batch built in `zone` when the live stats are in another one.
pub(crate) async fn ensure_recorded(
    conn: &mut AnyConnection,
    zone: Tz,
) -> Result<(), ProjectionError> {
    let recorded = recorded(conn).await?;
    if recorded.zone == zone.name() {
        return Ok(());
    }
    Err(ProjectionError::StatsZoneChanged {
        recorded: recorded.zone,
        ours: zone.name().to_owned(),
    })
}

/// Records that the stats are now built in `zone` (the rebuild's swap).
pub(crate) async fn record(conn: &mut AnyConnection, zone: Tz) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE read_model_settings SET value = $2, since = $3 \
         WHERE name = $1 AND value <> $2",
    )
    .bind(SETTING)
    .bind(zone.name())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Announces this instance in `zone`, unless a live instance announced another zone.
pub(crate) async fn announce(db: &Db, instance: Uuid, zone: Tz) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    db.dialect.lock_init(&mut tx).await?;
    let gone = gone_before();
    sqlx::query("DELETE FROM stats_zone_instances WHERE seen_at < $1")
        .bind(gone)
        .execute(&mut *tx)
        .await?;
    let other: Option<(String,)> = sqlx::query_as(
        "SELECT timezone FROM stats_zone_instances WHERE instance_id <> $1 AND timezone <> $2 \
         LIMIT 1",
    )
    .bind(instance.to_string())
    .bind(zone.name())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((theirs,)) = other {
        return Err(ProjectionError::StatsZoneInUse {
            theirs,
            ours: zone.name().to_owned(),
        });
    }
    beat_in(&mut tx, instance, zone).await?;
    tx.commit().await?;
    Ok(())
}

/// Refreshes this instance's announcement.
pub(crate) async fn beat(db: &Db, instance: Uuid, zone: Tz) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    beat_in(&mut tx, instance, zone).await?;
    tx.commit().await
}

async fn beat_in(
    conn: &mut AnyConnection,
    instance: Uuid,
    zone: Tz,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO stats_zone_instances (instance_id, timezone, seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (instance_id) DO UPDATE SET timezone = excluded.timezone, \
         seen_at = excluded.seen_at",
    )
    .bind(instance.to_string())
    .bind(zone.name())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Withdraws this instance's announcement (a clean shutdown).
pub(crate) async fn leave(db: &Db, instance: Uuid) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM stats_zone_instances WHERE instance_id = $1")
        .bind(instance.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Instances last seen before this time (microseconds since the epoch) count as gone.
pub(crate) fn gone_before() -> i64 {
    now() - micros(GONE_AFTER)
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
