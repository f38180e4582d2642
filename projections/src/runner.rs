//! The projection runners: one task per projection, catching up from its checkpoint in
//! batches, then following the log live.
//!
//! A batch is one transaction: take the projection's lock (PostgreSQL advisory lock; on
//! SQLite the transaction takes the write lock first), confirm the checkpoint, apply the
//! events, move the checkpoint. So an event's effect commits exactly once, whichever instance
//! runs the batch, and a runner aborted mid-batch leaves nothing behind.

use std::sync::Arc;
use std::time::Duration;

use infra::backoff::Backoff;
use infra::store::{AppendWaiter, RecordedEvent, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint;
use crate::db::Tx;
use crate::error::ProjectionError;
use crate::models::Projection;
use crate::ReadModels;

/// Events per transaction.
pub(crate) const BATCH: u32 = 1000;
/// After a wake-up that found nothing (on PostgreSQL a commit can take a moment to become
/// readable), poll again this soon, doubling up to 1 s: the steady fallback poll.
const IDLE: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
/// After an append wakes an idle runner, it waits this long before reading, so a burst of
/// appends (concurrent logins) lands in one batch: one read-model transaction instead of one
/// per append. Each transaction takes the database's write lock (on SQLite, the one the event
/// store's appends need too) and costs a commit; the wait bounds the extra read-model lag.
const LINGER: Duration = Duration::from_millis(25);
/// How often a runner checks whether the instance running its projection went away.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// After failures in a row: 20 ms, doubling up to 10 s.
const ERROR_BACKOFF: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(10));

/// The running projections. Dropping it aborts them (safe: a batch is a transaction);
/// `shutdown` lets the current batches finish first.
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunnerHandle {
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts a runner per projection in the background.
pub fn spawn_runners(models: ReadModels, store: Arc<dyn Store>) -> RunnerHandle {
    let (stop, stopped) = watch::channel(false);
    let tasks = Projection::ALL
        .into_iter()
        .map(|projection| {
            tokio::spawn(run(
                models.clone(),
                store.clone(),
                projection,
                stopped.clone(),
            ))
        })
        .collect();
    RunnerHandle { stop, tasks }
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

#[tracing::instrument(skip_all, fields(projection = projection.name()))]
async fn run(
    models: ReadModels,
    store: Arc<dyn Store>,
    projection: Projection,
    mut stop: watch::Receiver<bool>,
) {
    let mut appended = AppendWaiter::new(store.appended());
    let mut idle = IDLE;
    let mut failures: u32 = 0;
    while !*stop.borrow() {
        // Everything announced so far is covered by the read about to happen.
        appended.mark_seen();
        let pause = match step(&models, store.as_ref(), projection).await {
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
                ERROR_BACKOFF.after(failures)
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
}

/// Applies the next batch after the checkpoint, if any.
pub(crate) async fn step(
    models: &ReadModels,
    store: &dyn Store,
    projection: Projection,
) -> Result<Step, ProjectionError> {
    let db = models.db();
    let name = projection.name();
    // Read outside the transaction, so it stays short: on PostgreSQL an open writing
    // transaction holds back what every log reader may see.
    let from = checkpoint::position(&db.read, name).await?;
    let events = store.read_all(from, BATCH).await?;
    if events.is_empty() {
        return Ok(Step::Idle);
    }
    let mut tx = db.begin().await?;
    if !db.dialect.try_lock(&mut tx, name).await? {
        return Ok(Step::Busy);
    }
    let current = checkpoint::load(&mut tx, name).await?;
    if current.position != from {
        return Ok(Step::Stale);
    }
    apply(&mut tx, projection, current.generation, &events).await?;
    tx.commit().await?;
    Ok(if events.len() >= BATCH as usize {
        Step::AppliedFull
    } else {
        Step::AppliedRest
    })
}

/// Applies the events to `generation` and moves the checkpoint past them. The caller holds
/// the lock and commits.
pub(crate) async fn apply(
    tx: &mut Tx,
    projection: Projection,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    projection.apply(tx, generation, events).await?;
    checkpoint::advance(tx, projection.name(), last.position).await
}
