//! Rebuild: replay the whole log into a fresh generation of a projection's tables beside the
//! live one, then swap it in. Queries and the live runner keep working meanwhile; the swap
//! happens in one transaction holding the projection's lock, after applying what the log
//! gained during the rebuild.

use std::sync::Arc;

use infra::store::Store;

use crate::db::{self, Db};
use crate::error::ProjectionError;
use crate::models::Projection;
use crate::runner::BATCH;
use crate::{checkpoint, schema, ProjectionStatus, ReadModels};

/// Rebuilds one projection by name, or all of them (reading the log once for all).
pub async fn rebuild(
    models: &ReadModels,
    store: Arc<dyn Store>,
    name: Option<&str>,
) -> Result<Vec<ProjectionStatus>, ProjectionError> {
    let projections = match name {
        Some(name) => vec![Projection::from_name(name)
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))?],
        None => Projection::ALL.to_vec(),
    };
    let db = models.db();
    let mut targets = Vec::new();
    for projection in projections {
        let mut tx = db.begin().await?;
        let generation = checkpoint::next_generation(&mut tx, projection.name()).await?;
        schema::create_generation(&mut tx, db.backend, projection, generation).await?;
        tx.commit().await?;
        targets.push((projection, generation));
    }
    let built = build(db, store.as_ref(), &targets).await;
    let result = match built {
        Ok(position) => swap_all(db, store.as_ref(), &targets, position).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        // Leave no half-built tables behind (best effort: the error is what matters).
        for (projection, generation) in &targets {
            if let Ok(mut tx) = db.begin().await {
                let current = checkpoint::load(&mut tx, projection.name()).await;
                if current.is_ok_and(|c| c.generation != *generation)
                    && schema::drop_generation(&mut tx, *projection, *generation)
                        .await
                        .is_ok()
                {
                    let _ = tx.commit().await;
                }
            }
        }
        return Err(e);
    }
    models.status().await
}

/// Fills the new generations from position 0 to what is readable now; returns the position
/// reached.
async fn build(
    db: &Db,
    store: &dyn Store,
    targets: &[(Projection, i64)],
) -> Result<i64, ProjectionError> {
    let mut position = 0;
    loop {
        let events = store.read_all(position, BATCH).await?;
        let Some(last) = events.last() else {
            return Ok(position);
        };
        let mut tx = db.begin().await?;
        for (projection, generation) in targets {
            projection.apply(&mut tx, *generation, &events).await?;
        }
        tx.commit().await?;
        position = last.position;
    }
}

async fn swap_all(
    db: &Db,
    store: &dyn Store,
    targets: &[(Projection, i64)],
    position: i64,
) -> Result<(), ProjectionError> {
    for (projection, generation) in targets {
        swap(db, store, *projection, *generation, position).await?;
    }
    Ok(())
}

/// Under the projection's lock: apply what the log gained since the build, make the new
/// generation live, drop the old one.
async fn swap(
    db: &Db,
    store: &dyn Store,
    projection: Projection,
    generation: i64,
    mut position: i64,
) -> Result<(), ProjectionError> {
    let name = projection.name();
    let mut tx = db.begin().await?;
    db::lock(&mut tx, db.backend, name).await?;
    loop {
        let events = store.read_all(position, BATCH).await?;
        let Some(last) = events.last() else { break };
        projection.apply(&mut tx, generation, &events).await?;
        position = last.position;
    }
    let old = checkpoint::load(&mut tx, name).await?.generation;
    checkpoint::switch(&mut tx, name, generation, position).await?;
    schema::point_views(&mut tx, db.backend, projection, generation).await?;
    if old != generation {
        schema::drop_generation(&mut tx, projection, old).await?;
    }
    tx.commit().await?;
    tracing::info!(projection = name, generation, position, "rebuilt");
    Ok(())
}
