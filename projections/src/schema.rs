//! Read-model tables come in generations: projection tables are named `{table}_g{N}` and
//! queries go through a view `{table}` on the current generation. A rebuild fills generation
//! N+1 beside the live one and swaps the views in one transaction, so queries keep working
//! throughout and never see a half-built table. The swap retires the old generation
//! (`retired_generations`); its tables are dropped after the swap has committed, one statement
//! at a time, and what a crash leaves retired is dropped at the next start.

use chrono_tz::Tz;
use sqlx::AnyConnection;

use crate::checkpoint;
use crate::db::Db;
use crate::error::ProjectionError;
use crate::models::Projection;
use crate::stats_zone;
use crate::table::{Indexes, Table};

/// Creates the checkpoint and retired-generation tables and, for projections seen for the
/// first time, generation 1.
/// Instances starting together serialise on a lock.
/// `stats_zone` is recorded as the daily stats' zone if they are created now.
pub(crate) async fn init(db: &Db, stats_zone: Tz) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    db.dialect.lock_init(&mut tx).await?;
    checkpoint::create_table(&mut tx, db.dialect.int_type()).await?;
    create_retired_table(&mut tx, db.dialect.int_type()).await?;
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

/// Creates the projection's empty tables for `generation`, replacing any already under that
/// number.
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

async fn drop_generation(
    conn: &mut AnyConnection,
    projection: Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    per_table(conn, projection, |table| [table.drop(generation)]).await
}

/// `retired_generations`: generations no longer in use whose tables are still to drop
/// ([`retire`], [`drop_retired`]); `int` is the dialect's integer type.
async fn create_retired_table(conn: &mut AnyConnection, int: &str) -> Result<(), ProjectionError> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS retired_generations (\
         name text NOT NULL, \
         generation {int} NOT NULL, \
         PRIMARY KEY (name, generation))"
    );
    sqlx::query(&sql).execute(conn).await?;
    Ok(())
}

/// `generation` is not the projection's live one and nothing writes to it any more (a swap's
/// old generation, in the swap's transaction; a failed rebuild's new one). Its tables are
/// dropped by [`drop_retired`] once the transaction has committed, not in it (see
/// [`Db::write_alone`]); recorded so that a crash before that leaves them to the next start,
/// not in the database for good.
pub(crate) async fn retire(
    conn: &mut AnyConnection,
    projection: Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO retired_generations (name, generation) VALUES ($1, $2) \
         ON CONFLICT (name, generation) DO NOTHING",
    )
    .bind(projection.name())
    .bind(generation)
    .execute(conn)
    .await?;
    Ok(())
}

/// Drops the tables of every retired generation, each by a statement of its own outside any
/// transaction ([`Db::write_alone`]), then forgets the generation, and empties the WAL of
/// what they held (SQLite: [`crate::db::Dialect::purge_if_owed`]). A retired generation is
/// never live again and nothing writes to it, so no projection lock is taken; instances doing
/// it at once drop `IF EXISTS`. A failure is logged and returned: what is left stays recorded
/// for the next rebuild or start.
pub(crate) async fn drop_retired(db: &Db) -> Result<(), ProjectionError> {
    let dropped = try_drop_retired(db).await;
    if dropped.as_ref().is_ok_and(|&any| any) {
        db.dialect.purge_if_owed(db).await;
    }
    if let Err(error) = &dropped {
        tracing::warn!(
            %error,
            "a retired generation of the read models could not be dropped yet: tried again at \
             the next rebuild or start"
        );
    }
    dropped.map(drop)
}

/// Whether it dropped any.
async fn try_drop_retired(db: &Db) -> Result<bool, ProjectionError> {
    // Each retired generation with its projection's live one.
    let retired: Vec<(String, i64, Option<i64>)> = db
        .read(|pool| async move {
            Ok(sqlx::query_as(
                "SELECT r.name, r.generation, c.generation FROM retired_generations r \
                 LEFT JOIN projection_checkpoints c ON c.name = r.name",
            )
            .fetch_all(&pool)
            .await?)
        })
        .await?;
    let mut any = false;
    for (name, generation, live) in retired {
        // An unknown name is a projection a later version added: its tables are not ours.
        let Some(projection) = Projection::from_name(&name) else {
            continue;
        };
        if live == Some(generation) {
            // No path retires a live generation; should one ever, its views must keep it.
            tracing::error!(
                projection = name,
                generation,
                "a live generation is recorded as retired: not dropped"
            );
            continue;
        }
        for table in projection.tables() {
            db.write_alone(&table.drop(generation)).await?;
        }
        let mut tx = db.begin().await?;
        sqlx::query("DELETE FROM retired_generations WHERE name = $1 AND generation = $2")
            .bind(projection.name())
            .bind(generation)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // The WAL may hold the dropped pages as they were (SQLite).
        db.dialect.owe_purge();
        any = true;
        tracing::debug!(projection = name, generation, "retired generation dropped");
    }
    Ok(any)
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
pub(crate) mod tests {
    use super::*;

    /// The read models' tables named like `pattern` and the generations recorded as retired
    /// (as `{name}{generation}`), in order, on the database at `url` (either backend).
    pub(crate) async fn tables_and_retired(db: &Db, url: &str, pattern: &str) -> Vec<String> {
        let tables = if url.starts_with("postgres") {
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        };
        let mut names: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT name FROM ({tables}) AS t WHERE name LIKE $1 \
             UNION ALL SELECT name || generation FROM retired_generations"
        ))
        .bind(pattern)
        .fetch_all(&db.read)
        .await
        .unwrap();
        names.sort();
        names
    }

    /// A rebuild that stopped between its swap and its drops leaves the old generation
    /// recorded as retired: the next start drops it, and only it; a live generation recorded
    /// as retired (no path does that) is not dropped.
    async fn a_generation_left_retired_is_dropped_at_the_next_start(url: String) {
        let models = crate::ReadModels::connect(&url, chrono_tz::UTC)
            .await
            .unwrap();
        let db = models.db();
        for generation in [5, 6] {
            let mut tx = db.begin().await.unwrap();
            create_generation(&mut tx, db, Projection::AuditLog, generation, Indexes::All)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let mut tx = db.begin().await.unwrap();
        retire(&mut tx, Projection::AuditLog, 5).await.unwrap();
        retire(&mut tx, Projection::AuditLog, 1).await.unwrap();
        tx.commit().await.unwrap();

        let again = crate::ReadModels::connect(&url, chrono_tz::UTC)
            .await
            .unwrap();
        assert_eq!(
            tables_and_retired(again.db(), &url, "audit%").await,
            [
                "audit_log1",
                "audit_log_g1",
                "audit_log_g6",
                "audit_sessions_g1",
                "audit_sessions_g6"
            ],
            "the live generation (still recorded) and one not retired (a rebuild's, say) stay"
        );
    }

    #[tokio::test]
    async fn a_generation_left_retired_is_dropped_at_the_next_start_on_sqlite() {
        a_generation_left_retired_is_dropped_at_the_next_start(testkit::fresh_sqlite_url()).await;
    }

    #[tokio::test]
    async fn a_generation_left_retired_is_dropped_at_the_next_start_on_postgres() {
        if let Some(url) = testkit::fresh_postgres_url().await {
            a_generation_left_retired_is_dropped_at_the_next_start(url).await;
        }
    }

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
