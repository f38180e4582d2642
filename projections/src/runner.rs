//! The projection runner: one task for every read model, catching up from the checkpoints in
//! batches, then following the log live.
//!
//! A batch is read from the log once and applied to every read model in ONE transaction:
//! take every projection's lock (PostgreSQL advisory locks; on SQLite the transaction takes
//! the write lock first), load the checkpoints, apply to each projection the events past its
//! own checkpoint (into its live generation), move the checkpoints. So an event's effect
//! commits exactly once, whichever instance runs the batch, the read models move together,
//! and a runner aborted mid-batch leaves nothing behind. One transaction, one log read and
//! one wake-up per batch instead of one per projection: what PostgreSQL pays per event.
//!
//! Projections keep their own checkpoints and generations, so a rebuild of one (which takes
//! that projection's lock to swap) may leave it ahead of the others; the runner reads from
//! the lowest checkpoint and each projection skips what it has.

use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use infra::backoff::Backoff;
use infra::store::{AppendWaiter, RecordedEvent, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint::{self, Checkpoint};
use crate::db::Tx;
use crate::error::ProjectionError;
use crate::event::USER_ERASED;
use crate::models::Projection;
use crate::{stats_zone, ReadModels};

/// Events per transaction.
pub(crate) const BATCH: u32 = 1000;
/// After a wake-up that found nothing (on PostgreSQL a commit can take a moment to become
/// readable), poll again this soon, doubling up to 1 s: the steady fallback poll.
const IDLE: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
/// After an append wakes an idle runner, it waits this long before reading, so a burst of
/// appends (concurrent logins) lands in one batch: one read-model transaction instead of one
/// per append. Each transaction takes the read models' write lock and costs a commit; the wait
/// bounds the extra read-model lag.
const LINGER: Duration = Duration::from_millis(25);
/// How often a runner checks whether the instance running the projections went away.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// After failures in a row: 20 ms, doubling up to 10 s.
const ERROR_BACKOFF: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(10));
/// The same while the database is unavailable, up to 1 s only: the read models catch up within
/// a second of it coming back.
const UNAVAILABLE_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(20), Duration::from_secs(1));

/// The running projection runner. Dropping it aborts it (safe: a batch is a transaction);
/// `shutdown` lets the current batch finish first.
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunnerHandle {
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // Awaited in place (the handle is `Drop`); aborting it afterwards is a no-op.
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the one runner of every read model in the background.
pub fn spawn_runners(models: ReadModels, store: Arc<dyn Store>) -> RunnerHandle {
    models.db().dialect.start_checkpointing();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(models, store, stopped));
    RunnerHandle { stop, task }
}

/// What one step of a runner did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A whole batch: there may be more to read at once.
    AppliedFull,
    /// The runner caught up with the log.
    AppliedRest,
    /// Nothing new to read.
    Idle,
    /// Another instance holds the projection's lock.
    Busy,
    /// The checkpoint moved between reading it and locking (another instance, or a rebuild).
    Stale,
}

#[tracing::instrument(skip_all)]
async fn run(models: ReadModels, store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    let mut reader = Reader::default();
    let mut appended = AppendWaiter::new(store.appended());
    let mut idle = IDLE;
    let mut failures: u32 = 0;
    let mut beaten: Option<std::time::Instant> = None;
    while !*stop.borrow() {
        if beaten.is_none_or(|at| at.elapsed() >= stats_zone::BEAT) {
            beaten = Some(std::time::Instant::now());
            let (db, instance, zone) = (models.db(), models.instance(), models.stats_timezone());
            if let Err(e) = stats_zone::beat(db, instance, zone).await {
                tracing::warn!(error = %e, "could not announce this instance's stats time zone");
            }
        }
        // Everything announced so far is covered by the read about to happen.
        appended.mark_seen();
        let pause = match reader.step(&models, store.as_ref()).await {
            Ok(Step::AppliedFull | Step::Stale) => {
                failures = 0;
                idle.reset();
                continue;
            }
            Ok(Step::AppliedRest) => {
                // Caught up: under steady load more appends are already on their way, so
                // linger before reading them, as after a wake-up, to batch them.
                failures = 0;
                idle.reset();
                tokio::select! {
                    () = tokio::time::sleep(LINGER) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            Ok(Step::Idle) => {
                failures = 0;
                idle.pause()
            }
            Ok(Step::Busy) => LOCK_RETRY,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "projection batch failed");
                if infra::store::is_database_unavailable(&e) {
                    UNAVAILABLE_BACKOFF.after(failures)
                } else {
                    ERROR_BACKOFF.after(failures)
                }
            }
        };
        let woke = tokio::select! {
            woke = appended.appended() => woke,
            () = tokio::time::sleep(pause) => false,
            _ = stop.changed() => false,
        };
        if woke {
            idle.reset();
            tokio::select! {
                () = tokio::time::sleep(LINGER) => {}
                _ = stop.changed() => {}
            }
        }
    }
    if let Err(e) = stats_zone::leave(models.db(), models.instance()).await {
        tracing::debug!(error = %e, "could not withdraw this instance's stats time zone");
    }
}

/// Where the next batch starts: the lowest checkpoint as of this runner's last batch, so a
/// steady runner reads the log without reading the checkpoints first. Forgotten when another
/// instance or a rebuild may have moved them; then the next step reads them again.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    from: Option<i64>,
}

impl Reader {
    /// Applies the next batch after the checkpoints, if any.
    pub(crate) async fn step(
        &mut self,
        models: &ReadModels,
        store: &dyn Store,
    ) -> Result<Step, ProjectionError> {
        let step = self.try_step(models, store).await;
        if !matches!(step, Ok(Step::AppliedFull | Step::AppliedRest | Step::Idle)) {
            self.from = None;
        }
        let db = models.db();
        db.dialect.purge_if_owed(db).await;
        step
    }

    async fn try_step(
        &mut self,
        models: &ReadModels,
        store: &dyn Store,
    ) -> Result<Step, ProjectionError> {
        let db = models.db();
        // Read outside the transaction, so it stays short: on PostgreSQL an open writing
        // transaction holds back what every log reader may see.
        let from = match self.from {
            Some(from) => from,
            None => lowest(&checkpoint::all(&db.read).await?),
        };
        self.from = Some(from);
        let events = store.read_all(from, BATCH).await?;
        let Some(last) = events.last() else {
            return Ok(Step::Idle);
        };
        let mut tx = db.begin().await?;
        let names = Projection::ALL.map(Projection::name);
        if !db.dialect.try_lock_all(&mut tx, &names).await? {
            return Ok(Step::Busy);
        }
        let checkpoints = checkpoint::load_all(&mut tx).await?;
        let mut current = Vec::with_capacity(Projection::ALL.len());
        for projection in Projection::ALL {
            let found = checkpoints.iter().find(|(n, _)| n == projection.name());
            let Some(&(_, checkpoint)) = found else {
                return Err(ProjectionError::Corrupt(format!(
                    "no checkpoint row for projection {}",
                    projection.name()
                )));
            };
            if checkpoint.position < from {
                // Behind what was read: the read does not cover it.
                return Ok(Step::Stale);
            }
            current.push((projection, checkpoint));
        }
        // Stats built in another zone are never added to (see `stats_zone`).
        stats_zone::ensure_recorded(&mut tx, models.stats_timezone()).await?;
        apply(&mut tx, &current, &events, models.stats_timezone()).await?;
        tx.commit().await?;
        if events.iter().any(|e| e.event_type == USER_ERASED) {
            db.dialect.owe_purge();
        }
        self.from = current
            .iter()
            .map(|(_, c)| c.position.max(last.position))
            .min();
        Ok(if events.len() >= BATCH as usize {
            Step::AppliedFull
        } else {
            Step::AppliedRest
        })
    }
}

/// The lowest position among the projections' checkpoints (0 if one is missing).
fn lowest(positions: &[(String, i64)]) -> i64 {
    Projection::ALL
        .iter()
        .map(|p| {
            positions
                .iter()
                .find(|(n, _)| n == p.name())
                .map_or(0, |(_, position)| *position)
        })
        .min()
        .unwrap_or(0)
}

/// Applies to each projection the events past its checkpoint, into its generation, and moves
/// the checkpoints that moved past them. The caller holds the locks and commits.
pub(crate) async fn apply(
    tx: &mut Tx,
    projections: &[(Projection, Checkpoint)],
    events: &[RecordedEvent],
    zone: Tz,
) -> Result<(), ProjectionError> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    let mut advanced = Vec::with_capacity(projections.len());
    for &(projection, checkpoint) in projections {
        let start = events.partition_point(|e| e.position <= checkpoint.position);
        if start < events.len() {
            projection
                .apply(tx, checkpoint.generation, &events[start..], zone)
                .await?;
            advanced.push(projection.name());
        }
    }
    checkpoint::advance_all(tx, &advanced, last.position).await
}

/// Runs one batch as the runner does, starting from the checkpoints: whether it applied
/// events. For tests that drive the runner step by step.
#[doc(hidden)]
pub async fn run_one_batch(
    models: &ReadModels,
    store: &dyn Store,
) -> Result<bool, ProjectionError> {
    let step = Reader::default().step(models, store).await?;
    Ok(matches!(step, Step::AppliedFull | Step::AppliedRest))
}
