//! The store's one writer: appends and new users' data keys queue for one task, which commits
//! whatever queued meanwhile in one `BEGIN IMMEDIATE` transaction (group commit), so a group
//! costs one commit and one WAL sync however many logins it holds.
//!
//! A group is first written as it comes, each job straight into the transaction. Only when a
//! job is refused part-way (a stream moved, a claim is taken) is the transaction rolled back and
//! the group written again with each job in its own savepoint, so the refusal undoes that job
//! alone. Savepoints are not free in SQLite: while one is open, every page a statement changes
//! for the first time is first copied to the sub-journal (past 64 KiB, a temporary file made
//! and deleted per transaction). Refusals are rare (two first logins of one person racing), so
//! the common group pays none of that.

use std::sync::Arc;

use domain::UserId;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool};
use sqlx::{Arguments, Row};
use tokio::sync::{mpsc, oneshot};

use super::append::{self, Failure, Written};
use super::codec::time_to_db;
use crate::store::prepared::PreparedAppend;
use crate::store::{AppendBatch, AppendError, RecordedEvent, StoreError};

/// Jobs that queued while the writer was busy commit together, up to this many.
const MAX_GROUP: usize = 64;

/// A job waiting for the writer.
pub(super) enum Job {
    Append {
        batch: AppendBatch,
        reply: oneshot::Sender<Result<Vec<RecordedEvent>, AppendError>>,
    },
    /// A user's sealed data key, stored unless they have one; answered with the one stored.
    DataKey {
        user: UserId,
        sealed: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, StoreError>>,
    },
}

/// A job as the transaction writes it, with whom to answer once the group has committed.
enum Work {
    Append(
        PreparedAppend,
        oneshot::Sender<Result<Vec<RecordedEvent>, AppendError>>,
    ),
    DataKey(
        UserId,
        Vec<u8>,
        oneshot::Sender<Result<Vec<u8>, StoreError>>,
    ),
}

/// What a job wrote, or why it was refused.
enum Outcome {
    Append(Result<Written, AppendError>),
    DataKey(Result<Vec<u8>, StoreError>),
}

/// Takes the store's write turn per group, so other writers (projections) interleave.
pub(super) async fn run(
    pool: SqlitePool,
    turn: Arc<tokio::sync::Mutex<()>>,
    mut jobs: mpsc::Receiver<Job>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        let _turn = turn.lock().await;
        // More may have queued while waiting for the turn.
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&pool, group.drain(..)).await;
    }
}

async fn commit_group(pool: &SqlitePool, jobs: impl Iterator<Item = Job>) {
    let works: Vec<Work> = jobs
        .map(|job| match job {
            Job::Append { batch, reply } => Work::Append(PreparedAppend::new(batch), reply),
            Job::DataKey {
                user,
                sealed,
                reply,
            } => Work::DataKey(user, sealed, reply),
        })
        .collect();
    let outcomes = match write_group(pool, &works).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            // The first job gets the error itself, the others its text.
            let shared = e.to_string();
            let mut first = Some(e);
            let mut error = || {
                first.take().map_or_else(
                    || StoreError::SharedWrite(shared.clone()),
                    StoreError::Database,
                )
            };
            works
                .iter()
                .map(|work| match work {
                    Work::Append(..) => Outcome::Append(Err(error().into())),
                    Work::DataKey(..) => Outcome::DataKey(Err(error())),
                })
                .collect()
        }
    };
    // The caller may have gone away; what it asked for stands (or not) all the same.
    for (work, outcome) in works.into_iter().zip(outcomes) {
        match (work, outcome) {
            (Work::Append(prepared, reply), Outcome::Append(outcome)) => {
                let _ = reply.send(outcome.map(|written| prepared.into_records(written)));
            }
            (Work::DataKey(.., reply), Outcome::DataKey(outcome)) => {
                let _ = reply.send(outcome);
            }
            // Outcomes are made job by job, in order, each of its job's kind.
            _ => unreachable!("an outcome of another kind of job"),
        }
    }
}

/// Writes and commits the group: together first, in savepoints if a job was refused.
async fn write_group(pool: &SqlitePool, works: &[Work]) -> Result<Vec<Outcome>, sqlx::Error> {
    // IMMEDIATE takes the write lock up front, so the transaction never has to upgrade a read
    // lock (which could fail with SQLITE_BUSY if another process were writing).
    let mut tx = crate::sql::begin_with(pool, "BEGIN IMMEDIATE").await?;
    if let Some(outcomes) = write_together(&mut tx, works).await? {
        tx.commit().await?;
        return Ok(outcomes);
    }
    // A failure that ended the transaction (SQLite rolls back by itself on some errors) makes
    // this fail too, and so the whole group.
    tx.rollback().await?;
    let mut tx = crate::sql::begin_with(pool, "BEGIN IMMEDIATE").await?;
    let outcomes = write_isolated(&mut tx, works).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Every job straight into the transaction; `None` once one is refused after it was sent
/// (what it wrote before the refusal stays in the transaction, which must be rolled back).
async fn write_together(
    conn: &mut SqliteConnection,
    works: &[Work],
) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
    let mut outcomes = Vec::with_capacity(works.len());
    for work in works {
        let outcome = match work {
            Work::Append(prepared, _) => match append::write(conn, prepared, false).await {
                Ok(written) => Outcome::Append(Ok(written)),
                // Nothing was sent: nothing to undo.
                Err(Failure::Unsent(e)) => Outcome::Append(Err(e)),
                Err(Failure::Guard | Failure::Other(_)) => return Ok(None),
            },
            Work::DataKey(user, sealed, _) => match data_key(conn, *user, sealed, false).await {
                Ok(stored) => Outcome::DataKey(Ok(stored)),
                Err(_) => return Ok(None),
            },
        };
        outcomes.push(outcome);
    }
    Ok(Some(outcomes))
}

/// Each job in its own savepoint, so one job's refusal undoes that job alone.
async fn write_isolated(
    conn: &mut SqliteConnection,
    works: &[Work],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut outcomes = Vec::with_capacity(works.len());
    for work in works {
        let outcome = match work {
            Work::Append(prepared, _) => {
                Outcome::Append(match append::write(conn, prepared, true).await {
                    Ok(written) => Ok(written),
                    Err(Failure::Unsent(e)) => Err(e),
                    Err(failure) => {
                        undo(conn).await?;
                        Err(match failure {
                            Failure::Guard => append::diagnose(conn, prepared).await?,
                            Failure::Other(e) | Failure::Unsent(e) => e,
                        })
                    }
                })
            }
            Work::DataKey(user, sealed, _) => {
                Outcome::DataKey(match data_key(conn, *user, sealed, true).await {
                    Ok(stored) => Ok(stored),
                    Err(e) => {
                        undo(conn).await?;
                        Err(StoreError::Database(e))
                    }
                })
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Undoes the job whose savepoint (`append`) is open. A failure that ended the transaction
/// makes this fail too, and so the whole group.
async fn undo(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("ROLLBACK TO append; RELEASE append")
        .execute(conn)
        .await
        .map(drop)
}

/// Stores the key unless the user has one, and reads back the one stored: one command.
async fn data_key(
    conn: &mut SqliteConnection,
    user: UserId,
    sealed: &[u8],
    isolated: bool,
) -> Result<Vec<u8>, sqlx::Error> {
    const INSERT: &str = "INSERT INTO user_data_keys (user_id, sealed_key, created_at) \
         VALUES (?1, ?2, ?3) ON CONFLICT (user_id) DO NOTHING;\n\
         SELECT sealed_key FROM user_data_keys WHERE user_id = ?1;\n";
    const ISOLATED: &str = "SAVEPOINT append;\n\
         INSERT INTO user_data_keys (user_id, sealed_key, created_at) \
         VALUES (?1, ?2, ?3) ON CONFLICT (user_id) DO NOTHING;\n\
         SELECT sealed_key FROM user_data_keys WHERE user_id = ?1;\n\
         RELEASE append;\n";
    let mut args = SqliteArguments::default();
    let user = user.to_string();
    args.add(user).map_err(sqlx::Error::Encode)?;
    args.add(sealed.to_vec()).map_err(sqlx::Error::Encode)?;
    args.add(time_to_db(chrono::Utc::now()))
        .map_err(sqlx::Error::Encode)?;
    let rows = sqlx::query_with(if isolated { ISOLATED } else { INSERT }, args)
        .fetch_all(conn)
        .await?;
    match rows.first() {
        Some(row) => row.try_get(0),
        None => Err(sqlx::Error::RowNotFound),
    }
}

#[cfg(test)]
mod tests;
