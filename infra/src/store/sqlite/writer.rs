//! The store's one writer: appends (a registration's data key rides in its append as a side
//! write) queue for one task, which commits whatever queued meanwhile in one `BEGIN IMMEDIATE`
//! transaction (group commit), so a group costs one commit and one WAL sync however many
//! logins it holds.
//!
//! A group is first written as it comes, straight into the transaction: appends that touch
//! different streams as one set, in one script (`set`), the others one by one. Only when a
//! job is refused part-way (a stream moved, a claim is taken) is the transaction rolled back and
//! the group written again with each job in its own savepoint, so the refusal undoes that job
//! alone. Savepoints are not free in SQLite: while one is open, every page a statement changes
//! for the first time is first copied to the sub-journal (in the writer's memory:
//! `temp_store`). Refusals are rare (two first logins of one person racing), so
//! the common group pays none of that.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use self::set::Run;
use super::append::{self, Failure, Written};
use super::turn::{HeldTurn, WriteTurn};
use crate::store::fault::is_sqlx_unavailable;
use crate::store::prepared::PreparedAppend;
use crate::store::{AppendBatch, AppendError, RecordedEvent, StoreError};

/// Jobs that queued while the writer was busy commit together, up to this many.
const MAX_GROUP: usize = 64;

/// An append waiting for the writer, with whom to answer once its group has committed.
pub(super) struct Job {
    pub batch: AppendBatch,
    pub reply: oneshot::Sender<Result<Vec<RecordedEvent>, AppendError>>,
    /// The write turn's `ticket` when it queued: it fails without being tried if a writer
    /// found the file busy since (see `WriteTurn`).
    pub ticket: u64,
}

/// Takes the store's write turn per group, so other writers (the checkpointer, side tables)
/// interleave.
pub(super) async fn run(pool: SqlitePool, turn: Arc<WriteTurn>, mut jobs: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut tried = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        let held = turn.wait().await;
        // More may have queued while waiting for the turn.
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        for job in group.drain(..) {
            match turn.behind_busy(job.ticket) {
                Some(busy) => {
                    let _ = job.reply.send(Err(busy.into()));
                }
                None => tried.push(job),
            }
        }
        if !tried.is_empty() {
            commit_group(&pool, &held, tried.drain(..)).await;
        }
    }
}

/// Commits the group and answers its jobs. A BUSY failure fails the appends queued meanwhile
/// too (`HeldTurn::observe`).
async fn commit_group(pool: &SqlitePool, turn: &HeldTurn, jobs: impl Iterator<Item = Job>) {
    let (prepared, replies): (Vec<_>, Vec<_>) = jobs
        .map(|job| (PreparedAppend::new(job.batch), job.reply))
        .unzip();
    let written = write_group(pool, &prepared).await;
    turn.observe(&written);
    let outcomes = match written {
        Ok(outcomes) => outcomes,
        Err(e) => {
            // The first job gets the error itself, the others its text.
            let (message, unavailable) = (e.to_string(), crate::store::is_sqlx_unavailable(&e));
            let shared = || StoreError::SharedWrite {
                message: message.clone(),
                unavailable,
            };
            let mut first = Some(e);
            (0..prepared.len())
                .map(|_| {
                    Err(first
                        .take()
                        .map_or_else(shared, StoreError::Database)
                        .into())
                })
                .collect()
        }
    };
    // The caller may have gone away; what it asked for stands (or not) all the same.
    for ((prepared, reply), outcome) in prepared.into_iter().zip(replies).zip(outcomes) {
        let _ = reply.send(outcome.map(|written| prepared.into_records(written)));
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
    // Rare by design (two first logins of one person racing); often, a sign of a set gone wrong.
    tracing::debug!(
        appends = appends.len(),
        "group refused part-way; written again one by one"
    );
    let mut tx = crate::sql::begin_with(pool, "BEGIN IMMEDIATE").await?;
    let outcomes = write_isolated(&mut tx, appends).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Every append straight into the transaction, several at once where they can be (`set`);
/// `None` once one fails after it was sent (what it wrote before the failure stays in the
/// transaction, which must be rolled back).
async fn write_together(
    conn: &mut SqliteConnection,
    appends: &[PreparedAppend],
) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
    let mut outcomes = Vec::with_capacity(appends.len());
    for run in set::runs(appends) {
        let written = match run {
            Run::Alone(i) => append::write(conn, &appends[i], false)
                .await
                .map(|written| vec![Ok(written)]),
            Run::Set(range) => set::write(conn, &appends[range]).await,
        };
        match written {
            Ok(written) => outcomes.extend(written),
            // Nothing was sent: nothing to undo (only an append alone fails so).
            Err(Failure::Unsent(e)) => outcomes.push(Err(e)),
            Err(Failure::Other(e)) => {
                unless_database(e)?;
                return Ok(None);
            }
            Err(Failure::Guard) => return Ok(None),
        }
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

mod set;
#[cfg(test)]
mod tests;
