//! Read-model tables come in generations: projection tables are named `{table}_g{N}` and
//! queries go through a view `{table}` on the current generation. A rebuild fills generation
//! N+1 beside the live one and swaps the views in one transaction, so queries keep working
//! throughout and never see a half-built table.

use chrono_tz::Tz;
use sqlx::AnyConnection;

use crate::checkpoint;
use crate::db::Db;
use crate::error::ProjectionError;
use crate::models::Projection;
use crate::stats_zone;
use crate::table::{Indexes, Table};

/// Creates the checkpoint table and, for projections seen for the first time, generation 1.
/// Instances starting together serialise on a lock.
/// `stats_zone` is recorded as the daily stats' zone if they are created now.
pub(crate) async fn init(db: &Db, stats_zone: Tz) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    db.dialect.lock_init(&mut tx).await?;
    checkpoint::create_table(&mut tx, db.dialect.int_type()).await?;
    let mut fresh_stats = false;
    for projection in Projection::ALL {
        if checkpoint::insert_first(&mut tx, projection.name()).await? {
            create_generation(&mut tx, db, projection, 1, Indexes::All).await?;
            point_views(&mut tx, db, projection, 1).await?;
            fresh_stats |= projection == Projection::DailyStats;
        }
    }
    stats_zone::init(&mut tx, db.dialect.int_type(), stats_zone, fresh_stats).await?;
    tx.commit().await?;
    Ok(())
}

/// Creates the projection's empty tables for `generation`, replacing leftovers of a rebuild
/// that died.
pub(crate) async fn create_generation(
    conn: &mut AnyConnection,
    db: &Db,
    projection: Projection,
    generation: i64,
    indexes: Indexes,
) -> Result<(), ProjectionError> {
    drop_generation(conn, projection, generation).await?;
    per_table(conn, projection, |table| {
        table.create(db.dialect.int_type(), generation, indexes)
    })
    .await
}

/// Adds the indexes `create_generation` left out with `Indexes::ForWrites`.
pub(crate) async fn create_deferred_indexes(
    conn: &mut AnyConnection,
    projection: Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    per_table(conn, projection, |table| table.deferred_indexes(generation)).await
}

/// Refreshes the planner's statistics of `generation`'s tables, where the dialect has such a
/// statement (PostgreSQL): a rebuild calls it once its tables are complete.
pub(crate) async fn analyze_generation(
    conn: &mut AnyConnection,
    db: &Db,
    projection: Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    per_table(conn, projection, |table| {
        db.dialect.analyze(&table.physical(generation))
    })
    .await
}

pub(crate) async fn drop_generation(
    conn: &mut AnyConnection,
    projection: Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    per_table(conn, projection, |table| [table.drop(generation)]).await
}

/// Points the projection's views at `generation` (atomically, inside the caller's
/// transaction).
pub(crate) async fn point_views(
    conn: &mut AnyConnection,
    db: &Db,
    projection: Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    per_table(conn, projection, |table| {
        let select = format!("SELECT * FROM {}", table.physical(generation));
        db.dialect.point_view(table.name, &select)
    })
    .await
}

/// Runs the statements `statements` gives for each of the projection's tables, in order.
async fn per_table<S: IntoIterator<Item = String>>(
    conn: &mut AnyConnection,
    projection: Projection,
    statements: impl Fn(&Table) -> S,
) -> Result<(), ProjectionError> {
    for table in projection.tables() {
        for statement in statements(table) {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuild_gets_every_index_once_its_deferred_ones_are_added() {
        for projection in Projection::ALL {
            for table in projection.tables() {
                let mut rebuilt = table.create("INTEGER", 7, Indexes::ForWrites);
                rebuilt.extend(table.deferred_indexes(7));
                rebuilt.sort();
                let mut all = table.create("INTEGER", 7, Indexes::All);
                all.sort();
                assert_eq!(rebuilt, all, "{}", table.name);
            }
        }
    }
}
