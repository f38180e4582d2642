//! Rebuild: replay the whole log into a fresh generation of a projection's tables beside the
//! live one, then swap it in. Queries and the live runner keep working meanwhile; the swap
//! happens in one transaction holding the projection's lock, after applying what the log
//! gained during the rebuild, and retires the old generation, dropped once the swaps are done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use infra::store::{RecordedEvent, Store};

use crate::db::{Db, Loader};
use crate::error::ProjectionError;
use crate::models::Projection;
use crate::runner::BATCH;
use crate::table::Indexes;
use crate::{checkpoint, schema, stats_zone, ProjectionStatus, ReadModels};

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
    db.dialect.start_checkpointing();
    let zone = models.stats_timezone();
    if projections.contains(&Projection::DailyStats) {
        // Refuses to rebuild the stats in a zone other than a live instance's.
        stats_zone::announce(db, models.instance(), zone).await?;
    }
    let mut targets = Vec::new();
    for projection in projections {
        let mut tx = db.begin().await?;
        let generation = checkpoint::next_generation(&mut tx, projection.name()).await?;
        schema::create_generation(&mut tx, db, projection, generation, Indexes::ForWrites).await?;
        tx.commit().await?;
        targets.push((projection, generation));
    }
    let built = build(db, &store, &targets, zone).await;
    let result = match built {
        Ok(position) => swap_all(db, store.as_ref(), &targets, position, zone).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        // Leave no half-built tables behind (best effort: the error is what matters): the
        // generations not swapped in are retired, and dropped as a swap's old ones are.
        for (projection, generation) in &targets {
            if let Ok(mut tx) = db.begin().await {
                // Under the lock a swap holds: one whose commit is still landing is waited for.
                let locked = db.dialect.lock(&mut tx, projection.name()).await;
                let current = checkpoint::load(&mut tx, projection.name()).await;
                if locked.is_ok()
                    && current.is_ok_and(|c| c.generation != *generation)
                    && schema::retire(&mut tx, *projection, *generation)
                        .await
                        .is_ok()
                {
                    let _ = tx.commit().await;
                }
            }
        }
        // A failure is logged there; the rebuild's own error is the one to report.
        let _ = schema::drop_retired(db).await;
        return Err(e);
    }
    // The log's erasures were applied to the new generations and the old ones dropped (or
    // left retired for the next start): no page as it was before either stays in a WAL of the
    // read models' own (SQLite).
    db.dialect.owe_purge();
    db.dialect.purge_if_owed(db).await;
    models.status().await
}

/// Events per read while building: ten times the runner's batch. Nobody waits on these
/// transactions, and fewer, larger batches mean fewer statements, lookups and commits.
const BUILD_BATCH: u32 = 10_000;

/// Fills the new generations from position 0 to what is readable now, then adds their
/// deferred indexes; returns the position reached.
///
/// The tables are invisible until the swap and are dropped if the rebuild fails, so each
/// projection commits on its own and the batches need not be one transaction; for the same
/// reason their appended rows may go by the database's bulk path, committed on their own.
async fn build(
    db: &Db,
    store: &Arc<dyn Store>,
    targets: &[(Projection, i64)],
    zone: Tz,
) -> Result<i64, ProjectionError> {
    let began = Instant::now();
    let loader = db.dialect.loader();
    let loaded = load(db, store, targets, zone, loader.as_ref()).await;
    if let Some(loader) = &loader {
        loader.close().await;
    }
    let Loaded {
        position,
        reading,
        applying,
    } = loaded?;
    let indexing = Instant::now();
    for (projection, generation) in targets {
        let mut tx = db.begin().await?;
        schema::create_deferred_indexes(&mut tx, *projection, *generation).await?;
        tx.commit().await?;
    }
    // The live queries meet the new tables with statistics of their final size, not after
    // autovacuum's next pass (PostgreSQL's advice after a bulk load). ANALYZEs while the tables
    // grew were tried too: at 1M events they cost more than their plans gained (21.5k → 19.0k
    // events/s, BENCHMARKS.md).
    analyze_all(db, targets).await?;
    // Where a rebuild's time goes: `reading` is time spent waiting for the log beyond what
    // overlapped with applying.
    tracing::debug!(
        position,
        total = ?began.elapsed(),
        reading = ?reading,
        applying = ?applying,
        indexing = ?indexing.elapsed(),
        "built"
    );
    Ok(position)
}

/// What [`load`] reached, and where its time went.
struct Loaded {
    position: i64,
    reading: Duration,
    applying: Duration,
}

/// Applies the whole readable log to the new generations, batch by batch.
async fn load(
    db: &Db,
    store: &Arc<dyn Store>,
    targets: &[(Projection, i64)],
    zone: Tz,
    loader: Option<&Arc<dyn Loader>>,
) -> Result<Loaded, ProjectionError> {
    let began = Instant::now();
    let (mut reading, mut applying) = (Duration::ZERO, Duration::ZERO);
    let mut position = 0;
    let mut events = store.read_all(position, BUILD_BATCH).await?;
    reading += began.elapsed();
    while let Some(last) = events.last() {
        position = last.position;
        // Read and decode the next batch on another thread while this one is written.
        let next = tokio::spawn({
            let store = store.clone();
            async move { store.read_all(position, BUILD_BATCH).await }
        });
        let started = Instant::now();
        if let Err(e) = apply_all(db, targets, &events, zone, loader).await {
            next.abort();
            return Err(e);
        }
        let applied = Instant::now();
        applying += applied - started;
        events = next.await??;
        reading += applied.elapsed();
    }
    Ok(Loaded {
        position,
        reading,
        applying,
    })
}

async fn analyze_all(db: &Db, targets: &[(Projection, i64)]) -> Result<(), ProjectionError> {
    for (projection, generation) in targets {
        let mut tx = db.begin().await?;
        schema::analyze_generation(&mut tx, db, *projection, *generation).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Applies a batch to every target, each projection in its own transaction (its appended rows
/// by `loader`, where there is one): on PostgreSQL they run at once on separate connections; on
/// SQLite they queue for the one writer.
async fn apply_all(
    db: &Db,
    targets: &[(Projection, i64)],
    events: &[RecordedEvent],
    zone: Tz,
    loader: Option<&Arc<dyn Loader>>,
) -> Result<(), ProjectionError> {
    futures::future::try_join_all(targets.iter().map(|&(projection, generation)| async move {
        let mut tx = db.begin().await?.loading(loader.cloned());
        projection.apply(&mut tx, generation, events, zone).await?;
        tx.commit().await?;
        Ok::<_, ProjectionError>(())
    }))
    .await?;
    Ok(())
}

async fn swap_all(
    db: &Db,
    store: &dyn Store,
    targets: &[(Projection, i64)],
    position: i64,
    zone: Tz,
) -> Result<(), ProjectionError> {
    for (projection, generation) in targets {
        swap(db, store, *projection, *generation, position, zone).await?;
    }
    // Once for all (one WAL purge after them all). Not dropped means the old rows are still
    // in the database: the rebuild has not done its job (the personal-data migration's
    // rebuild, whose old generation holds clear values, keeps its record and runs again at
    // the next start).
    schema::drop_retired(db).await
}

/// Under the projection's lock: apply what the log gained since the build, make the new
/// generation live, retire the old one (dropped by `swap_all` once every swap has committed).
async fn swap(
    db: &Db,
    store: &dyn Store,
    projection: Projection,
    generation: i64,
    mut position: i64,
    zone: Tz,
) -> Result<(), ProjectionError> {
    let name = projection.name();
    let mut tx = db.begin().await?;
    db.dialect.lock(&mut tx, name).await?;
    loop {
        let events = store.read_all(position, BATCH).await?;
        let Some(last) = events.last() else { break };
        projection.apply(&mut tx, generation, &events, zone).await?;
        position = last.position;
    }
    let old = checkpoint::load(&mut tx, name).await?.generation;
    checkpoint::switch(&mut tx, name, generation, position).await?;
    schema::point_views(&mut tx, db, projection, generation).await?;
    if projection == Projection::DailyStats {
        // The new tables' days are in `zone`: from now on the runners must count in it too.
        stats_zone::record(&mut tx, zone).await?;
    }
    if old != generation {
        schema::retire(&mut tx, projection, old).await?;
    }
    tx.commit().await?;
    tracing::info!(projection = name, generation, position, "rebuilt");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use domain::{EventId, Metadata, StreamId};
    use futures::future::BoxFuture;
    use infra::sql::PoolSettings;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::db::Val;

    /// Records what it is given to load, and loads nothing.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, usize)>>);

    impl Loader for Recorder {
        fn load<'a>(
            &'a self,
            table: &'a str,
            columns: &'a [&'static str],
            values: &'a [Val],
        ) -> BoxFuture<'a, Result<(), ProjectionError>> {
            let rows = values.len() / columns.len();
            self.0.lock().unwrap().push((table.to_owned(), rows));
            Box::pin(async { Ok(()) })
        }

        fn close(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    fn login(position: i64) -> RecordedEvent {
        let session = Uuid::from_u128(u128::try_from(position).unwrap());
        RecordedEvent {
            position,
            event_id: EventId::from_uuid(Uuid::now_v7()),
            stream_id: StreamId::from_stored(format!("session-{session}")),
            stream_version: 1,
            event_type: crate::event::USER_LOGGED_IN.into(),
            schema_version: 1,
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            payload: json!({"session_id": session, "user_id": Uuid::from_u128(7),
                "appid": "wxapp", "openid": "o1", "is_new_user": false}),
            metadata: Metadata::system(Uuid::from_u128(3)),
        }
    }

    /// A rebuild's swap retires the old generation and the rebuild drops it before it returns:
    /// only the new generation's tables are left, and nothing stays recorded as retired.
    async fn a_rebuild_leaves_only_the_new_generation(url: String) {
        let store = infra::store::connect(&url).await.unwrap();
        let models = ReadModels::connect(&url, chrono_tz::UTC).await.unwrap();
        rebuild(&models, store, Some("audit_log")).await.unwrap();
        assert_eq!(
            schema::tests::tables_and_retired(models.db(), &url, "audit%").await,
            ["audit_log_g2", "audit_sessions_g2"]
        );
    }

    #[tokio::test]
    async fn a_rebuild_leaves_only_the_new_generation_on_sqlite() {
        a_rebuild_leaves_only_the_new_generation(testkit::fresh_sqlite_url()).await;
    }

    #[tokio::test]
    async fn a_rebuild_leaves_only_the_new_generation_on_postgres() {
        if let Some(url) = testkit::fresh_postgres_url().await {
            a_rebuild_leaves_only_the_new_generation(url).await;
        }
    }

    /// A build's batch sends the rows its projections only append by the loader, and writes
    /// the rest (here `audit_sessions`, `sessions`) in its transactions.
    #[tokio::test]
    async fn a_builds_appended_rows_go_by_its_loader() {
        let db = Db::connect(&testkit::fresh_sqlite_url(), &PoolSettings::PATIENT)
            .await
            .unwrap();
        let targets = [
            (Projection::AuditLog, 2),
            (Projection::LoginHistory, 2),
            (Projection::Sessions, 2),
        ];
        for (projection, generation) in targets {
            let mut tx = db.begin().await.unwrap();
            schema::create_generation(&mut tx, &db, projection, generation, Indexes::ForWrites)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let recorder = Arc::new(Recorder::default());
        let loader: Arc<dyn Loader> = recorder.clone();
        let events = [login(1), login(2)];
        apply_all(&db, &targets, &events, chrono_tz::UTC, Some(&loader))
            .await
            .unwrap();
        let mut loaded = recorder.0.lock().unwrap().clone();
        loaded.sort();
        assert_eq!(
            loaded,
            [
                ("audit_log_g2".to_owned(), 2),
                ("login_history_g2".to_owned(), 2)
            ]
        );
        // The transactions wrote the rest, and not the rows the loader had.
        for (table, written) in [
            ("audit_sessions_g2", 2),
            ("sessions_g2", 2),
            ("audit_log_g2", 0),
        ] {
            let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&db.read)
                .await
                .unwrap();
            assert_eq!(rows, written, "{table}");
        }
    }
}
