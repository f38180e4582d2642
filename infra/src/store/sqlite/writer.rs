//! The store's one writer: appends (a registration's data key rides in its append as a side
//! write) queue for one task, which commits whatever queued meanwhile in one `BEGIN IMMEDIATE`
//! transaction (group commit), so a group costs one commit and one WAL sync however many
//! logins it holds.
//!
//! A group is first written as it comes, each job straight into the transaction. Only when a
//! job is refused part-way (a stream moved, a claim is taken) is the transaction rolled back and
//! the group written again with each job in its own savepoint, so the refusal undoes that job
//! alone. Savepoints are not free in SQLite: while one is open, every page a statement changes
//! for the first time is first copied to the sub-journal (past 64 KiB, a temporary file made
//! and deleted per transaction). Refusals are rare (two first logins of one person racing), so
//! the common group pays none of that.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::append::{self, Failure, Written};
use super::turn::{Turn, WriteTurn};
use crate::store::fault::is_sqlx_unavailable;
use crate::store::prepared::PreparedAppend;
use crate::store::{AppendBatch, AppendError, RecordedEvent, StoreError};

/// Jobs that queued while the writer was busy commit together, up to this many.
const MAX_GROUP: usize = 64;

/// An append waiting for the writer, with whom to answer once its group has committed.
pub(super) struct Job {
    pub batch: AppendBatch,
    pub reply: oneshot::Sender<Result<Vec<RecordedEvent>, AppendError>>,
}

/// Takes the store's write turn per group, so other writers (projections) interleave.
pub(super) async fn run(pool: SqlitePool, turn: Arc<WriteTurn>, mut jobs: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        let taken = turn.take().await;
        // More may have queued while waiting for the turn.
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let failed = match &taken {
            Ok(turn) => commit_group(&pool, turn, group.drain(..)).await,
            // A writer ahead found the database unavailable (see `turn`).
            Err(e) => {
                let failure = GroupFailure {
                    message: e.to_string(),
                    unavailable: true,
                };
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(failure.error().into()));
                }
                Some(failure)
            }
        };
        drop(taken);
        if let Some(unavailable) = failed {
            // The database failed the group as unavailable: busy past the wait for its lock
            // (another process writing), full, gone. The appends that queued meanwhile would
            // wait as long again for the same answer; they get it now, so that no append
            // waits for more than one group's wait (a request's 503 within about
            // `PoolSettings::acquire_timeout`).
            while let Ok(job) = jobs.try_recv() {
                let _ = job.reply.send(Err(unavailable.error().into()));
            }
        }
    }
}

/// Commits the group and answers its jobs; the failure they shared if the database was
/// unavailable.
async fn commit_group(
    pool: &SqlitePool,
    turn: &Turn,
    jobs: impl Iterator<Item = Job>,
) -> Option<GroupFailure> {
    let (prepared, replies): (Vec<_>, Vec<_>) = jobs
        .map(|job| (PreparedAppend::new(job.batch), job.reply))
        .unzip();
    let mut unavailable = None;
    let written = write_group(pool, &prepared).await;
    turn.observe(&written);
    let outcomes = match written {
        Ok(outcomes) => outcomes,
        Err(e) => {
            // The first job gets the error itself, the others its text.
            let failure = GroupFailure {
                message: e.to_string(),
                unavailable: crate::store::is_sqlx_unavailable(&e),
            };
            let mut first = Some(e);
            let outcomes = (0..prepared.len())
                .map(|_| {
                    Err(first
                        .take()
                        .map_or_else(|| failure.error(), StoreError::Database)
                        .into())
                })
                .collect();
            unavailable = failure.unavailable.then_some(failure);
            outcomes
        }
    };
    // The caller may have gone away; what it asked for stands (or not) all the same.
    for ((prepared, reply), outcome) in prepared.into_iter().zip(replies).zip(outcomes) {
        let _ = reply.send(outcome.map(|written| prepared.into_records(written)));
    }
    unavailable
}

/// Why a whole group failed, for each of its appends.
struct GroupFailure {
    message: String,
    unavailable: bool,
}

impl GroupFailure {
    fn error(&self) -> StoreError {
        StoreError::SharedWrite {
            message: self.message.clone(),
            unavailable: self.unavailable,
        }
    }
}

/// What an append wrote, or why it was refused.
type Outcome = Result<Written, AppendError>;

/// Writes and commits the group: together first, in savepoints if a job was refused.
async fn write_group(
    pool: &SqlitePool,
    appends: &[PreparedAppend],
) -> Result<Vec<Outcome>, sqlx::Error> {
    // IMMEDIATE takes the write lock up front, so the transaction never has to upgrade a read
    // lock (which could fail with SQLITE_BUSY if another process were writing).
    let mut tx = crate::sql::begin_with(pool, "BEGIN IMMEDIATE").await?;
    if let Some(outcomes) = write_together(&mut tx, appends).await? {
        tx.commit().await?;
        return Ok(outcomes);
    }
    // A failure that ended the transaction (SQLite rolls back by itself on some errors) makes
    // this fail too, and so the whole group.
    tx.rollback().await?;
    let mut tx = crate::sql::begin_with(pool, "BEGIN IMMEDIATE").await?;
    let outcomes = write_isolated(&mut tx, appends).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Every append straight into the transaction; `None` once one fails after it was sent
/// (what it wrote before the failure stays in the transaction, which must be rolled back).
async fn write_together(
    conn: &mut SqliteConnection,
    appends: &[PreparedAppend],
) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
    let mut outcomes = Vec::with_capacity(appends.len());
    for prepared in appends {
        outcomes.push(match append::write(conn, prepared, false).await {
            Ok(written) => Ok(written),
            // Nothing was sent: nothing to undo.
            Err(Failure::Unsent(e)) => Err(e),
            Err(Failure::Other(e)) => {
                unless_database(e)?;
                return Ok(None);
            }
            Err(Failure::Guard) => return Ok(None),
        });
    }
    Ok(Some(outcomes))
}

/// Each append in its own savepoint, so one append's failure undoes that append alone.
/// `append::write` reports every failure of a sent append while its savepoint is still open.
async fn write_isolated(
    conn: &mut SqliteConnection,
    appends: &[PreparedAppend],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut outcomes = Vec::with_capacity(appends.len());
    for prepared in appends {
        outcomes.push(match append::write(conn, prepared, true).await {
            Ok(written) => Ok(written),
            Err(Failure::Unsent(e)) => Err(e),
            Err(Failure::Other(e)) => {
                let e = unless_database(e)?;
                undo(conn).await?;
                Err(e)
            }
            Err(Failure::Guard) => {
                undo(conn).await?;
                Err(append::diagnose(conn, prepared).await?)
            }
        });
    }
    Ok(outcomes)
}

/// An append's own failure as it is; the database's (a full disk, an I/O error, a busy file:
/// see `store::fault`) as the error of the whole group. No append of the group can succeed
/// then, so none is written again on its own, and no rollback that fails in turn ("no
/// transaction is active": SQLite may have rolled back by itself) takes its place in the
/// answers. The transaction is dropped: sqlx rolls it back, and a connection left inside a
/// transaction is replaced (`sql::checked_pool`).
fn unless_database(e: AppendError) -> Result<AppendError, sqlx::Error> {
    match e {
        AppendError::Store(StoreError::Database(e)) if is_sqlx_unavailable(&e) => Err(e),
        e => Ok(e),
    }
}

/// Undoes the append whose savepoint (`append`) is open. A failure that ended the
/// transaction makes this fail too, and so the whole group.
async fn undo(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("ROLLBACK TO append; RELEASE append")
        .execute(conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests;
