//! Appends as calls of `append_event_batches` (migrations 0017 and 0020): a group of appends in
//! one statement, which is the whole (implicit) transaction: reserve positions (first, under the
//! global lock), then for the group (set-based), or per append if one is refused, bump each stream's version against its expectation, insert
//! the events, write the claims, a login's session key and a new user's data key. One round
//! trip and one commit for the group: on a shared machine PostgreSQL's cost per statement
//! and per commit, not per row, is what a login pays for.

use sqlx::postgres::PgPool;
use sqlx::Postgres;

use super::call::{GroupCall, Inline, ResultRow};
use super::refusal::{failed, Refusal};
use crate::store::prepared::PreparedAppend;
use crate::store::shared::Driver;
use crate::store::{AppendError, StoreError};

/// Each event's position and stream version, in batch order.
pub(super) type Written = Vec<(i64, i64)>;

/// Whether the append has side writes the call does not carry (a phone's look-up entry:
/// rare). It then goes alone, in one transaction with them.
pub(super) fn goes_alone(prepared: &PreparedAppend) -> bool {
    !Inline::of(&prepared.side_writes).beside.is_empty()
}

/// Writes the group in one call and commits it; per append, what it wrote or why it was
/// refused. An error that fails the call (the connection lost) fails every append in it.
pub(super) async fn write_group(
    pool: &PgPool,
    group: &[PreparedAppend],
) -> Vec<Result<Written, AppendError>> {
    let mut outcomes: Vec<Option<Result<Written, AppendError>>> =
        group.iter().map(|_| None).collect();
    let mut call = GroupCall::default();
    // Indices into `group` of the appends in the call, in call order.
    let mut sent = Vec::with_capacity(group.len());
    for (i, prepared) in group.iter().enumerate() {
        match call.push(prepared) {
            Ok(()) => sent.push(i),
            Err(e) => outcomes[i] = Some(Err(e)),
        }
    }
    if call.batches() > 0 {
        match call.query().fetch_all(pool).await {
            Ok(rows) => {
                for (i, result) in sent.iter().zip(by_batch(rows, sent.len())) {
                    outcomes[*i] = Some(checked(result, &group[*i]));
                }
            }
            // No connection in time: nothing was sent, each append failed the same way, and
            // says so (a wait for the pool, not a failure of the database).
            Err(sqlx::Error::PoolTimedOut) => {
                for &i in &sent {
                    outcomes[i] = Some(Err(StoreError::Database(sqlx::Error::PoolTimedOut).into()));
                }
            }
            Err(e) => {
                let (message, unavailable) = (e.to_string(), crate::store::is_sqlx_unavailable(&e));
                let shared = || StoreError::SharedWrite {
                    message: message.clone(),
                    unavailable,
                };
                let mut first = Some(e);
                for &i in &sent {
                    outcomes[i] = Some(Err(match first.take() {
                        Some(e) => failed(e, &group[i]),
                        None => shared().into(),
                    }));
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| Err(unanswered())))
        .collect()
}

/// One append and the side writes the call cannot carry, in one transaction.
pub(super) async fn append_alone(
    pool: &PgPool,
    prepared: &PreparedAppend,
) -> Result<Written, AppendError> {
    let mut call = GroupCall::default();
    call.push(prepared)?;
    let mut tx = crate::sql::begin(pool)
        .await
        .map_err(|e| failed(e, prepared))?;
    let rows = call
        .query()
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| failed(e, prepared))?;
    let result = by_batch(rows, 1).pop().ok_or_else(unanswered)?;
    // A refused append returns here, and dropping `tx` rolls it back.
    let written = checked(result, prepared)?;
    for write in Inline::of(&prepared.side_writes).beside {
        let (sql, args) = write.statement();
        <Postgres as Driver>::run(&mut tx, sql, &args).await?;
    }
    tx.commit().await.map_err(|e| failed(e, prepared))?;
    Ok(written)
}

/// The call's rows per batch (`batches` of them, numbered from 1): the events it wrote, in
/// position order (the order they were reserved in: batch order), or its refusal.
fn by_batch(rows: Vec<ResultRow>, batches: usize) -> Vec<Result<Written, Refusal>> {
    let mut results: Vec<Result<Written, Refusal>> = (0..batches).map(|_| Ok(Vec::new())).collect();
    for (batch, position, version, code, message, detail, constraint) in rows {
        let Some(result) = usize::try_from(batch - 1)
            .ok()
            .and_then(|b| results.get_mut(b))
        else {
            continue;
        };
        match (code, position, version) {
            (Some(code), _, _) => {
                *result = Err(Refusal {
                    code,
                    message: message.unwrap_or_default(),
                    detail,
                    constraint,
                })
            }
            (None, Some(position), Some(version)) => {
                if let Ok(written) = result {
                    written.push((position, version));
                }
            }
            (None, _, _) => {}
        }
    }
    for written in results.iter_mut().flatten() {
        written.sort_unstable();
    }
    results
}

/// The batch's outcome as `append` answers it, once every event is accounted for.
fn checked(
    result: Result<Written, Refusal>,
    prepared: &PreparedAppend,
) -> Result<Written, AppendError> {
    let written = result.map_err(|refusal| refusal.into_error(prepared))?;
    if written.len() != prepared.event_count() {
        return Err(StoreError::Corrupt(format!(
            "{} events written of {}",
            written.len(),
            prepared.event_count()
        ))
        .into());
    }
    Ok(written)
}

fn unanswered() -> AppendError {
    StoreError::Corrupt("append_event_batches did not answer for an append".into()).into()
}
