//! Several appends of a group written as one set: one script of fixed text for all of them,
//! each table's rows passed as one JSON array (`json_each`), so a set costs one hand-off to
//! sqlx's worker thread instead of one per append, and its text stays prepared. On a busy
//! machine every hand-off waits to be scheduled (BENCHMARKS.md, "SQLite's group commit written
//! as sets").
//!
//! A set must write what its appends would have written one after another. That holds when
//! no two of them touch a row that order matters for, so `runs` starts a new set before an
//! append that touches what the set already touches: a stream, a user's side rows (keyed by
//! that user's stream, which the triggers of erasure and phone withdrawal act on), an
//! account's session key. Appends that release claims (erasures), name a stream twice, or
//! are large are written alone, as before (`append::write`). Two appends claiming one value
//! for different users may share a set: the claim guard then fails it, and the writer writes
//! the group again append by append, which answers each as before.

use std::collections::HashSet;
use std::ops::Range;

use serde::Serialize;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments, Row};

use super::Outcome;
use crate::store::prepared::{metadata_to_json, schema_version_to_db, PreparedAppend};
use crate::store::sqlite::append::{sent_failure, Failure, Written};
use crate::store::sqlite::codec::time_to_db;
use crate::store::{AppendError, ExpectedVersion, SideWrite, StoreError};

/// A run of the group: a set written by one script, or an append written alone.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Run {
    Set(Range<usize>),
    Alone(usize),
}

/// Appends with more events than this are written alone, which bounds a set's arguments.
const MAX_EVENTS_IN_SET: usize = 64;

/// Cuts the group into runs, in order. A set holds at least two appends.
pub(super) fn runs(appends: &[PreparedAppend]) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut touched: HashSet<String> = HashSet::new();
    let close = |runs: &mut Vec<Run>, range: Range<usize>| match range.len() {
        0 => {}
        1 => runs.push(Run::Alone(range.start)),
        _ => runs.push(Run::Set(range)),
    };
    for (i, append) in appends.iter().enumerate() {
        let Some(rows) = ordered_rows(append) else {
            close(&mut runs, start..i);
            runs.push(Run::Alone(i));
            (start, touched) = (i + 1, HashSet::new());
            continue;
        };
        if rows.iter().any(|row| touched.contains(row)) {
            close(&mut runs, start..i);
            (start, touched) = (i, HashSet::new());
        }
        touched.extend(rows);
    }
    close(&mut runs, start..appends.len());
    runs
}

/// The rows the append touches whose order matters, named: its streams, the streams of the
/// users whose side rows it writes, and the accounts whose session key it replaces. `None`
/// when it is to be written alone.
fn ordered_rows(append: &PreparedAppend) -> Option<Vec<String>> {
    if append.release_claims_of.is_some() || append.event_count() > MAX_EVENTS_IN_SET {
        return None;
    }
    let mut rows: Vec<String> = append
        .streams
        .iter()
        .map(|s| s.stream_id.as_str().to_owned())
        .collect();
    rows.sort_unstable();
    if rows.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    for write in &append.side_writes {
        let row = match write {
            SideWrite::PhoneIndex { user, .. } | SideWrite::DataKey { user, .. } => {
                user.stream().as_str().to_owned()
            }
            SideWrite::SessionKey { appid, account, .. } => {
                format!("session key {appid} {}", account.as_str())
            }
        };
        if !rows.contains(&row) {
            rows.push(row);
        }
    }
    Some(rows)
}

/// The set's statements, in the order one append's script has them (`append::scripts`):
/// stream versions, events, claims, side writes. Each `json_each(?)` reads one table's rows,
/// each row an array; the guards compare what the statement before did with what was asked.
/// `WHERE true` is SQLite's rule for an upsert from a `SELECT` (without it, `ON CONFLICT`
/// would parse as a join's `ON`).
pub(super) const SCRIPT: &str = "\
UPDATE streams SET version = streams.version + (s.value ->> 1) FROM json_each(?) AS s \
 WHERE streams.stream_id = (s.value ->> 0) AND streams.version = (s.value ->> 2);
INSERT INTO append_guards (guard, ok) VALUES ('stream', changes() = ?);
INSERT INTO streams (stream_id, version) SELECT value ->> 0, value ->> 1 FROM json_each(?) WHERE true \
 ON CONFLICT (stream_id) DO NOTHING;
INSERT INTO append_guards (guard, ok) VALUES ('stream', changes() = ?);
INSERT INTO streams (stream_id, version) SELECT value ->> 0, value ->> 1 FROM json_each(?) WHERE true \
 ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + excluded.version;
INSERT INTO events \
 (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata) \
 SELECT e.value ->> 0, e.value ->> 1, \
  (SELECT version FROM streams WHERE stream_id = (e.value ->> 1)) - (e.value ->> 2), \
  e.value ->> 3, e.value ->> 4, e.value ->> 5, e.value ->> 6, e.value ->> 7 \
 FROM json_each(?) AS e ORDER BY e.key \
 RETURNING event_id, position, stream_version;
INSERT INTO claims (kind, value, user_id) SELECT value ->> 0, value ->> 1, value ->> 2 \
 FROM json_each(?) WHERE true ON CONFLICT (kind, value) DO NOTHING;
INSERT INTO append_guards (guard, ok) SELECT 'claim', NOT EXISTS (SELECT 1 FROM json_each(?) AS c \
 WHERE NOT EXISTS (SELECT 1 FROM claims \
  WHERE kind = (c.value ->> 0) AND value = (c.value ->> 1) AND user_id = (c.value ->> 2)));
INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at) \
 SELECT value ->> 0, value ->> 1, unhex(value ->> 2), value ->> 3 FROM json_each(?) WHERE true \
 ON CONFLICT (appid, openid) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at;
INSERT INTO phone_lookup (user_id, phone_index) SELECT value ->> 0, value ->> 1 FROM json_each(?) \
 WHERE true ON CONFLICT (user_id) DO UPDATE SET phone_index = excluded.phone_index;
INSERT INTO user_data_keys (user_id, sealed_key, created_at) \
 SELECT value ->> 0, unhex(value ->> 1), value ->> 2 FROM json_each(?);
";

/// The set's rows, table by table, each row as the script reads it.
#[derive(Default)]
struct Rows<'a> {
    /// (stream, events added, expected version)
    exactly: Vec<(&'a str, i64, i64)>,
    /// (stream, events added), expecting no stream.
    none: Vec<(&'a str, i64)>,
    /// (stream, events added), expecting any version.
    any: Vec<(&'a str, i64)>,
    events: Vec<EventRow<'a>>,
    /// (kind, value, owner)
    claims: Vec<(&'a str, &'a str, String)>,
    /// (appid, openid, sealed in hex, updated at)
    session_keys: Vec<(&'a str, &'a str, String, String)>,
    /// (user, phone index)
    phones: Vec<(String, &'a str)>,
    /// (user, sealed key in hex, created at)
    data_keys: Vec<(String, String, String)>,
}

/// (event id, stream, later events of its stream, type, schema version, occurred at, payload,
/// metadata): the stream's new version minus the later events is the event's version.
type EventRow<'a> = (String, &'a str, i64, &'a str, i32, String, String, String);

impl<'a> Rows<'a> {
    /// Adds the append's rows; if one cannot be put into SQL, none of them.
    fn add(&mut self, append: &'a PreparedAppend, now: &str) -> Result<(), AppendError> {
        // The only rows that can fail, so first.
        let events = append
            .events_with_later()
            .map(|(stream, event, later)| {
                Ok((
                    event.event_id.to_string(),
                    stream.stream_id.as_str(),
                    later,
                    event.event_type.as_str(),
                    schema_version_to_db(event.schema_version)?,
                    time_to_db(event.occurred_at),
                    event.payload.to_string(),
                    metadata_to_json(&event.metadata)?.to_string(),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.events.extend(events);
        for stream in &append.streams {
            let (id, added) = (stream.stream_id.as_str(), stream.events.len() as i64);
            match stream.expected {
                ExpectedVersion::Exactly(version) => self.exactly.push((id, added, version)),
                ExpectedVersion::NoStream => self.none.push((id, added)),
                ExpectedVersion::Any => self.any.push((id, added)),
            }
        }
        for claim in &append.claims {
            let owner = claim.owner.to_string();
            self.claims.push((claim.kind, &claim.value, owner));
        }
        for write in &append.side_writes {
            match write {
                SideWrite::SessionKey {
                    appid,
                    account,
                    sealed,
                } => self.session_keys.push((
                    appid,
                    account.as_str(),
                    hex::encode(sealed),
                    now.to_owned(),
                )),
                SideWrite::PhoneIndex { user, hash } => self.phones.push((user.to_string(), hash)),
                SideWrite::DataKey { user, sealed } => {
                    self.data_keys
                        .push((user.to_string(), hex::encode(sealed), now.to_owned()));
                }
            }
        }
        Ok(())
    }

    /// The script's arguments, in the order of its placeholders (anonymous, bound in order:
    /// the claims go twice, to their insert and to their guard).
    fn arguments(&self) -> Result<SqliteArguments<'static>, AppendError> {
        let mut args = SqliteArguments::default();
        let claims = json(&self.claims)?;
        add(&mut args, json(&self.exactly)?)?;
        add(&mut args, self.exactly.len() as i64)?;
        add(&mut args, json(&self.none)?)?;
        add(&mut args, self.none.len() as i64)?;
        add(&mut args, json(&self.any)?)?;
        add(&mut args, json(&self.events)?)?;
        add(&mut args, claims.clone())?;
        add(&mut args, claims)?;
        add(&mut args, json(&self.session_keys)?)?;
        add(&mut args, json(&self.phones)?)?;
        add(&mut args, json(&self.data_keys)?)?;
        Ok(args)
    }
}

fn add<T>(args: &mut SqliteArguments<'static>, value: T) -> Result<(), AppendError>
where
    T: sqlx::Encode<'static, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + 'static,
{
    args.add(value)
        .map_err(|e| StoreError::Corrupt(format!("append argument: {e}")).into())
}

fn json(rows: &impl Serialize) -> Result<String, AppendError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Corrupt(format!("append rows: {e}")).into())
}

/// Writes the set into the group's transaction and answers each append: what it wrote, or why
/// it could not be put into SQL (then it wrote nothing). `Failure::Guard` and
/// `Failure::Other` fail the whole set (never `Unsent`): what it wrote before the failure
/// stays in the transaction, which must be rolled back.
pub(super) async fn write(
    conn: &mut SqliteConnection,
    appends: &[PreparedAppend],
) -> Result<Vec<Outcome>, Failure> {
    let now = time_to_db(chrono::Utc::now());
    let mut rows = Rows::default();
    let added: Vec<Result<(), AppendError>> = appends.iter().map(|a| rows.add(a, &now)).collect();
    let args = rows.arguments().map_err(Failure::Other)?;
    let returned = sqlx::query_with(SCRIPT, args)
        .persistent(true)
        .fetch_all(&mut *conn)
        .await
        .map_err(sent_failure)?;
    let written = in_insert_order(&rows.events, &returned).map_err(Failure::Other)?;

    let mut written = written.into_iter();
    Ok(appends
        .iter()
        .zip(added)
        .map(|(append, added)| {
            added.map(|()| written.by_ref().take(append.event_count()).collect())
        })
        .collect())
}

/// Each event's (position, stream version), in the order the events were sent. The rows
/// `RETURNING` gives come in no promised order; the inserts are in `ORDER BY e.key`, so
/// sorted by position they must name the events in the order sent.
fn in_insert_order(
    sent: &[EventRow<'_>],
    returned: &[sqlx::sqlite::SqliteRow],
) -> Result<Written, AppendError> {
    let mut rows = returned
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<i64, _>("position")?,
                row.try_get::<i64, _>("stream_version")?,
                row.try_get::<&str, _>("event_id")?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::Database)?;
    rows.sort_unstable_by_key(|&(position, ..)| position);
    let in_order =
        rows.len() == sent.len() && rows.iter().zip(sent).all(|(row, event)| row.2 == event.0);
    if !in_order {
        return Err(StoreError::Corrupt(format!(
            "a set of {} events came back as {} rows, or out of order",
            sent.len(),
            rows.len()
        ))
        .into());
    }
    Ok(rows.into_iter().map(|(p, v, _)| (p, v)).collect())
}
