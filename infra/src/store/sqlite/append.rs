//! Appends on SQLite: bump each stream's version against its expectation, insert the events,
//! write the claims and the side writes (a login's session key, a new user's data key), all in
//! the writer task's group transaction on the single write connection.
//!
//! sqlx runs each SQLite command on the connection's worker thread, and every command is a
//! hand-off to that thread and back. Appends are the serialised section of a SQLite service,
//! so they queue for one writer task (`writer`) that commits whatever queued meanwhile in one
//! transaction (group commit). Most of a group goes as sets, several appends in one script
//! (`writer::set`); this file writes an append alone (one the sets leave out, and each append
//! of a refused group in its own savepoint), its body as one multi-statement script (each
//! statement binding the next of the script's arguments). Checks inside a script (a
//! stream's expected version, a claim held by someone else) insert a row into
//! `append_guards`, whose trigger aborts the script when the check failed; only then does the
//! writer look at what failed.
//!
//! Several statements in one query is a SQLite-only sqlx behaviour (0.8 runs them in order and
//! returns every statement's rows); sqlx means to drop it one day (launchbadge/sqlx#3108), and
//! then this file and `writer::set` go back to one command per statement.

use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Arguments, Row};

use super::codec::time_to_db;
use crate::store::prepared::{metadata_to_json, schema_version_to_db, ClaimRow, PreparedAppend};
use crate::store::{AppendError, ExpectedVersion, SideWrite, StoreError, StreamAppend};

/// Big appends (the benchmark's data generator writes a thousand events at once) are cut into
/// several scripts, run in the same transaction, so no one script's text grows without bound.
const MAX_SCRIPT_PARAMS: usize = 10_000;

/// The message of `append_guards_check` (migration 0007).
const GUARD_FAILED: &str = "append guard failed";

pub(super) enum Failure {
    /// A check in the script failed: a stream moved or a claim is held by someone else.
    Guard,
    /// The append could not be put into SQL; nothing was sent.
    Unsent(AppendError),
    Other(AppendError),
}

/// Each event's position and stream version, in batch order.
pub(super) type Written = Vec<(i64, i64)>;

/// Writes the append into the transaction; in its own savepoint (`append`) if `isolated`.
pub(super) async fn write(
    conn: &mut SqliteConnection,
    prepared: &PreparedAppend,
    isolated: bool,
) -> Result<Written, Failure> {
    if prepared.is_empty() {
        return Ok(Vec::new());
    }
    let mut written = Vec::with_capacity(prepared.event_count());
    for script in scripts(prepared, isolated).map_err(Failure::Unsent)? {
        let rows = sqlx::query_with(&script.sql, script.args)
            .persistent(script.reusable)
            .fetch_all(&mut *conn)
            .await
            .map_err(sent_failure)?;
        for row in &rows {
            written.push(event_row(row)?);
        }
    }
    if written.len() != prepared.event_count() {
        return Err(Failure::Other(
            StoreError::Corrupt(format!(
                "{} events written of {}",
                written.len(),
                prepared.event_count()
            ))
            .into(),
        ));
    }
    // Released only now, after the checks above: a failure is always reported while the
    // savepoint is open, so the writer can roll back to it (an extra command, on the rare
    // refused path only).
    if isolated {
        sqlx::query("RELEASE append")
            .execute(&mut *conn)
            .await
            .map_err(|e| Failure::Other(db(e)))?;
    }
    Ok(written)
}

/// What a script that was sent failed with: a guard, or anything else.
pub(super) fn sent_failure(e: sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Database(e) if e.message().contains(GUARD_FAILED) => Failure::Guard,
        e => Failure::Other(db(e)),
    }
}

fn event_row(row: &SqliteRow) -> Result<(i64, i64), Failure> {
    let get = |column: &str| {
        row.try_get::<i64, _>(column)
            .map_err(|e| Failure::Other(db(e)))
    };
    Ok((get("position")?, get("stream_version")?))
}

/// Statements with their parameters, sent to SQLite as one command.
struct Script {
    sql: String,
    args: SqliteArguments<'static>,
    params: usize,
    /// Small scripts recur (an append alone is one of a few shapes) and are worth caching
    /// prepared.
    reusable: bool,
}

impl Script {
    fn new() -> Self {
        Self {
            sql: String::new(),
            args: SqliteArguments::default(),
            params: 0,
            reusable: true,
        }
    }

    /// Adds an argument; returns its placeholder. Placeholders are anonymous (`?`): sqlx binds
    /// a script's arguments to its statements' placeholders in order, and numbered ones would
    /// leave gaps it fills wrongly.
    fn arg<T>(&mut self, value: T) -> Result<&'static str, AppendError>
    where
        T: sqlx::Encode<'static, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + 'static,
    {
        self.args
            .add(value)
            .map_err(|e| StoreError::Corrupt(format!("append argument: {e}")))?;
        self.params += 1;
        Ok("?")
    }

    fn guard(&mut self, check: &str) {
        self.sql.push_str("INSERT INTO append_guards (guard, ok) ");
        self.sql.push_str(check);
        self.sql.push_str(";\n");
    }
}

/// Splits the append into scripts of at most `MAX_SCRIPT_PARAMS` parameters, statements in
/// this order: stream versions (in lock order), events (in batch order, each returning its
/// position and version), released claims, claims, the side writes.
fn scripts(prepared: &PreparedAppend, isolated: bool) -> Result<Vec<Script>, AppendError> {
    let mut scripts = vec![Script::new()];

    for &i in &prepared.lock_order {
        bump_version(room(&mut scripts, 4), &prepared.streams[i])?;
    }

    for (stream, event, back) in prepared.events_with_later() {
        let stream_id = stream.stream_id.as_str();
        let s = room(&mut scripts, 10);
        // Placeholders are anonymous, so arguments go in the order they appear.
        let event_id = s.arg(event.event_id.to_string())?;
        let stream = s.arg(stream_id.to_owned())?;
        let version = format!(
            "(SELECT version FROM streams WHERE stream_id = {}) - {}",
            s.arg(stream_id.to_owned())?,
            s.arg(back)?
        );
        let rest = [
            s.arg(event.event_type.clone())?,
            s.arg(schema_version_to_db(event.schema_version)?)?,
            s.arg(time_to_db(event.occurred_at))?,
            s.arg(event.payload.to_string())?,
            s.arg(metadata_to_json(&event.metadata)?.to_string())?,
        ]
        .join(", ");
        s.sql.push_str(&format!(
            "INSERT INTO events \
             (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata) \
             VALUES ({event_id}, {stream}, {version}, {rest}) RETURNING position, stream_version;\n"
        ));
    }

    if let Some(user) = prepared.release_claims_of {
        let s = room(&mut scripts, 1);
        let user = s.arg(user.to_string())?;
        s.sql
            .push_str(&format!("DELETE FROM claims WHERE user_id = {user};\n"));
    }
    for claim in &prepared.claims {
        insert_claim(room(&mut scripts, 6), claim)?;
    }
    for write in &prepared.side_writes {
        side_write(room(&mut scripts, 4), write)?;
    }

    // Isolated, the append is one savepoint inside its group's transaction (`write` releases it).
    if isolated {
        if let Some(first) = scripts.first_mut() {
            first.sql.insert_str(0, "SAVEPOINT append;\n");
        }
    }
    let several = scripts.len() > 1;
    for script in &mut scripts {
        script.reusable = !several && prepared.event_count() <= 8;
    }
    Ok(scripts)
}

/// A side-table row written with the append (see `SideWrite`).
fn side_write(s: &mut Script, write: &SideWrite) -> Result<(), AppendError> {
    match write {
        SideWrite::SessionKey {
            appid,
            account,
            sealed,
        } => {
            let (appid, openid) = (s.arg(appid.clone())?, s.arg(account.as_str().to_owned())?);
            let (sealed, now) = (
                s.arg(sealed.clone())?,
                s.arg(time_to_db(chrono::Utc::now()))?,
            );
            s.sql.push_str(&format!(
                "INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at) \
                 VALUES ({appid}, {openid}, {sealed}, {now}) \
                 ON CONFLICT (appid, openid) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at;\n"
            ));
        }
        SideWrite::PhoneIndex { user, hash } => {
            let (user, hash) = (s.arg(user.to_string())?, s.arg(hash.clone())?);
            s.sql.push_str(&format!(
                "INSERT INTO phone_lookup (user_id, phone_index) VALUES ({user}, {hash}) \
                 ON CONFLICT (user_id) DO UPDATE SET phone_index = excluded.phone_index;\n"
            ));
        }
        SideWrite::DataKey { user, sealed } => {
            let (user, sealed) = (s.arg(user.to_string())?, s.arg(sealed.clone())?);
            let now = s.arg(time_to_db(chrono::Utc::now()))?;
            s.sql.push_str(&format!(
                "INSERT INTO user_data_keys (user_id, sealed_key, created_at) \
                 VALUES ({user}, {sealed}, {now});\n"
            ));
        }
    }
    Ok(())
}

/// The script to add a statement of `params` parameters to.
fn room(scripts: &mut Vec<Script>, params: usize) -> &mut Script {
    if scripts
        .last()
        .is_none_or(|s| s.params + params > MAX_SCRIPT_PARAMS)
    {
        scripts.push(Script::new());
    }
    let last = scripts.len() - 1;
    &mut scripts[last]
}

/// Moves the stream's version past its new events; the guard fails the script when the
/// expectation does not hold (`changes()` counts the rows the statement before touched).
fn bump_version(s: &mut Script, stream: &StreamAppend) -> Result<(), AppendError> {
    let id = stream.stream_id.as_str().to_owned();
    let added = stream.events.len() as i64;
    match stream.expected {
        ExpectedVersion::NoStream => {
            let values = format!("{}, {}", s.arg(id)?, s.arg(added)?);
            s.sql.push_str(&format!(
                "INSERT INTO streams (stream_id, version) VALUES ({values}) \
                 ON CONFLICT (stream_id) DO NOTHING;\n"
            ));
            s.guard("VALUES ('stream', changes())");
        }
        ExpectedVersion::Exactly(version) => {
            let (added, id, version) = (s.arg(added)?, s.arg(id)?, s.arg(version)?);
            s.sql.push_str(&format!(
                "UPDATE streams SET version = version + {added} \
                 WHERE stream_id = {id} AND version = {version};\n"
            ));
            s.guard("VALUES ('stream', changes())");
        }
        ExpectedVersion::Any => {
            let values = format!("{}, {}", s.arg(id)?, s.arg(added)?);
            s.sql.push_str(&format!(
                "INSERT INTO streams (stream_id, version) VALUES ({values}) \
                 ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + excluded.version;\n"
            ));
        }
    }
    Ok(())
}

/// A claim already held by someone else fails the script; one the same user holds is fine.
fn insert_claim(s: &mut Script, claim: &ClaimRow) -> Result<(), AppendError> {
    let owner = claim.owner.to_string();
    for statement in 0..2 {
        let kind = s.arg(claim.kind)?;
        let value = s.arg(claim.value.clone())?;
        let owner = s.arg(owner.clone())?;
        if statement == 0 {
            s.sql.push_str(&format!(
                "INSERT INTO claims (kind, value, user_id) VALUES ({kind}, {value}, {owner}) \
                 ON CONFLICT (kind, value) DO NOTHING;\n"
            ));
        } else {
            s.guard(&format!(
                "SELECT 'claim', EXISTS (SELECT 1 FROM claims \
                 WHERE kind = {kind} AND value = {value} AND user_id = {owner})"
            ));
        }
    }
    Ok(())
}

/// After a failed guard (and the rollback to the append's savepoint): which expectation or
/// claim failed, against the group's transaction as the append saw it.
pub(super) async fn diagnose(
    conn: &mut SqliteConnection,
    prepared: &PreparedAppend,
) -> Result<AppendError, sqlx::Error> {
    // Versions as the script would have moved them, stream by stream in lock order.
    let mut moved: Vec<(&str, i64)> = Vec::new();
    for &i in &prepared.lock_order {
        let stream = &prepared.streams[i];
        let id = stream.stream_id.as_str();
        let version = match moved.iter().rev().find(|(s, _)| *s == id) {
            Some(&(_, v)) => Some(v),
            None => {
                sqlx::query_scalar::<_, i64>("SELECT version FROM streams WHERE stream_id = ?1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
            }
        };
        let holds = match stream.expected {
            ExpectedVersion::NoStream => version.is_none(),
            ExpectedVersion::Exactly(v) => version == Some(v),
            ExpectedVersion::Any => true,
        };
        if !holds {
            return Ok(AppendError::VersionConflict(stream.stream_id.clone()));
        }
        moved.push((id, version.unwrap_or(0) + stream.events.len() as i64));
    }
    let released = prepared.release_claims_of.map(|u| u.to_string());
    for claim in &prepared.claims {
        let holder: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM claims WHERE kind = ?1 AND value = ?2")
                .bind(claim.kind)
                .bind(&claim.value)
                .fetch_optional(&mut *conn)
                .await?;
        let owner = claim.owner.to_string();
        let free = holder.is_none() || holder == released || holder.as_deref() == Some(&owner);
        if !free {
            return Ok(AppendError::ClaimTaken { kind: claim.kind });
        }
    }
    Ok(match prepared.first_locked_stream() {
        Some(stream) => AppendError::VersionConflict(stream),
        None => StoreError::Corrupt("an append guard failed, but no check does".into()).into(),
    })
}

fn db(e: sqlx::Error) -> AppendError {
    AppendError::Store(StoreError::Database(e))
}
