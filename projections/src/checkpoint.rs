//! `projection_checkpoints`: per projection, the live generation of its tables and the
//! position of the last event applied to them. Updated in the same transaction as the
//! read-model writes, which is what makes each event's effect happen exactly once.

use sqlx::AnyConnection;
use sqlx::AnyPool;

use crate::error::ProjectionError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub generation: i64,
    pub position: i64,
}

/// Creates the table if missing; `int` is the dialect's integer type.
pub(crate) async fn create_table(
    conn: &mut AnyConnection,
    int: &str,
) -> Result<(), ProjectionError> {
    // `last_generation` hands out rebuild generations, so two rebuilds never share tables.
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS projection_checkpoints (\
         name text PRIMARY KEY NOT NULL, \
         generation {int} NOT NULL, \
         position {int} NOT NULL, \
         last_generation {int} NOT NULL, \
         updated_at {int} NOT NULL)"
    );
    sqlx::query(&sql).execute(conn).await?;
    Ok(())
}

/// Adds the projection's row at generation 1, position 0; false if it was there already.
pub(crate) async fn insert_first(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<bool, ProjectionError> {
    let done = sqlx::query(
        "INSERT INTO projection_checkpoints (name, generation, position, last_generation, updated_at) \
         VALUES ($1, 1, 0, 1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Where a runner should read from next (outside any transaction; confirmed inside).
pub(crate) async fn position(pool: &AnyPool, name: &str) -> Result<i64, ProjectionError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    position.ok_or_else(|| missing(name))
}

pub(crate) async fn load(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Checkpoint, ProjectionError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT generation, position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    row.map(|(generation, position)| Checkpoint {
        generation,
        position,
    })
    .ok_or_else(|| missing(name))
}

/// Every projection's name and position.
pub(crate) async fn all(pool: &AnyPool) -> Result<Vec<(String, i64)>, ProjectionError> {
    Ok(
        sqlx::query_as("SELECT name, position FROM projection_checkpoints ORDER BY name")
            .fetch_all(pool)
            .await?,
    )
}

/// Every projection's checkpoint, inside the batch's transaction: one read for all.
pub(crate) async fn load_all(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, Checkpoint)>, ProjectionError> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT name, generation, position FROM projection_checkpoints")
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(name, generation, position)| {
            (
                name,
                Checkpoint {
                    generation,
                    position,
                },
            )
        })
        .collect())
}

/// Moves the checkpoints of `names` to `position`: one statement for the whole batch.
pub(crate) async fn advance_all(
    conn: &mut AnyConnection,
    names: &[&str],
    position: i64,
) -> Result<(), ProjectionError> {
    if names.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE projection_checkpoints SET position = $1, updated_at = $2 WHERE name IN ({})",
        crate::db::placeholders(3, names.len())
    );
    let mut query = sqlx::query(&sql).bind(position).bind(now());
    for name in names {
        query = query.bind(*name);
    }
    query.execute(conn).await?;
    Ok(())
}

/// Makes `generation`, built up to `position`, the live one.
pub(crate) async fn switch(
    conn: &mut AnyConnection,
    name: &str,
    generation: i64,
    position: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE projection_checkpoints SET generation = $2, position = $3, updated_at = $4 \
         WHERE name = $1",
    )
    .bind(name)
    .bind(generation)
    .bind(position)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// A generation number no other rebuild has used.
pub(crate) async fn next_generation(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<i64, ProjectionError> {
    let generation: Option<i64> = sqlx::query_scalar(
        "UPDATE projection_checkpoints SET last_generation = last_generation + 1 \
         WHERE name = $1 RETURNING last_generation",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    generation.ok_or_else(|| missing(name))
}

fn missing(name: &str) -> ProjectionError {
    ProjectionError::Corrupt(format!("no checkpoint row for projection {name}"))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
