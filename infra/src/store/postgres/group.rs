//! Group commit: one writer task per store sends appends to PostgreSQL, one call of
//! `append_event_batches` at a time. The first append goes at once; those that arrive while a
//! call is in flight queue, and go together in the next call, up to `MAX_GROUP`. So concurrent
//! logins share a statement, a transaction and a WAL flush, and an idle service waits for
//! nothing (no timer).
//!
//! One append's conflict or error is its own, its neighbours commit: the call first writes the
//! whole group set-based in one subtransaction (migration 0020), and on any refusal writes it
//! again with each append in a subtransaction of its own (0017's path). An error that fails the whole call
//! (the connection lost) fails every append in it. Each caller is answered once the group has
//! committed (or failed). The call runs in this task, not the caller's: a caller that goes
//! away cannot cut it short, and its append stands (or not) all the same.
//!
//! A call that found no connection within the pool's acquire timeout while the pool had room
//! for one (so no connection could be opened: the server is down or unreachable) fails the
//! appends queued at that moment with it, unsent: each would otherwise wait for that call and
//! then as long again for its own, and a request's 503 would take two acquire timeouts or
//! more instead of one. A pool that was full (a flood of requests, the server fine) sheds
//! nothing: the queued appends go on to their own call.

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::append::write_group;
use crate::sql::Liveness;
use crate::store::is_pool_wait;
use crate::store::prepared::PreparedAppend;
use crate::store::{AppendError, RecordedEvent, StoreError};

/// Appends that queued while a call was in flight go in one call, up to this many: on the
/// per-append path each is a subtransaction (one more for the set-based try before it), and
/// past 64 of them a transaction's subtransaction ids no longer fit in
/// its cache, which slows every snapshot taken meanwhile, on every connection.
const MAX_GROUP: usize = 32;

/// Appends waiting for the writer beyond this many wait to be queued (back pressure).
const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<Vec<RecordedEvent>, AppendError>>;

/// The queue to the store's append writer.
pub(super) struct GroupCommit {
    jobs: mpsc::Sender<(PreparedAppend, Reply)>,
}

impl GroupCommit {
    /// Starts the writer; it stops once the queue is dropped (with the store).
    pub fn start(pool: PgPool, liveness: Liveness) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(writer(pool, liveness, queue));
        Self { jobs }
    }

    /// Appends with whatever else is queued, once the group has committed.
    pub async fn append(
        &self,
        prepared: PreparedAppend,
    ) -> Result<Vec<RecordedEvent>, AppendError> {
        let gone = || StoreError::SharedWrite {
            message: "the PostgreSQL append writer has stopped".into(),
            unavailable: true,
        };
        let (reply, appended) = oneshot::channel();
        self.jobs
            .send((prepared, reply))
            .await
            .map_err(|_| gone())?;
        appended.await.map_err(|_| gone())?
    }

    /// How many appends wait for the writer (not counting the call in flight).
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }
}

/// Each call takes a connection from the pool afresh: after a failed call (the server
/// restarted, say) the next one runs on a live connection, tested first while the pool
/// distrusts the database.
async fn writer(
    pool: PgPool,
    liveness: Liveness,
    mut queue: mpsc::Receiver<(PreparedAppend, Reply)>,
) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let (group, replies): (Vec<PreparedAppend>, Vec<Reply>) = jobs.drain(..).unzip();
        tracing::trace!(appends = group.len(), "group commit");
        let outcomes = write_group(&pool, &group).await;
        for outcome in &outcomes {
            liveness.observe(outcome);
        }
        let unreachable = outcomes
            .iter()
            .any(|outcome| outcome.as_ref().is_err_and(|e| is_pool_wait(e)))
            && pool.size() < pool.options().get_max_connections();
        for ((prepared, reply), outcome) in group.into_iter().zip(replies).zip(outcomes) {
            // The caller may have gone away; its append stands (or not) all the same.
            let _ = reply.send(outcome.map(|written| prepared.into_records(written)));
        }
        if unreachable {
            fail_queued(&mut queue);
        }
    }
}

/// Answers every append queued now as its call would have been answered: no connection in
/// time (see the module). None of them was sent.
fn fail_queued(queue: &mut mpsc::Receiver<(PreparedAppend, Reply)>) {
    while let Ok((_, reply)) = queue.try_recv() {
        let _ = reply.send(Err(StoreError::Database(sqlx::Error::PoolTimedOut).into()));
    }
}
