//! `sessions`: one row per open session (a login not yet logged out or revoked), for the
//! session lists of `/v1/me/sessions` and the admin API, and for revoking every open session
//! of a user. Sessions that outlive their lifetimes are filtered out by the queries (they end
//! without an event), not deleted here.
//!
//! `client_ip` and `device` are kept as the `UserLoggedIn` payload carries them (`device` as
//! JSON text): whatever sealing the payload has, the row has, and the API opens them when it
//! answers. Erasure empties them.

use std::collections::{BTreeMap, BTreeSet};

use infra::store::RecordedEvent;

use super::for_ids;
use crate::db::{Rows, Tx};
use crate::error::ProjectionError;
use crate::event::{
    self, SESSION_REFRESHED, SESSION_REVOKED, USER_ERASED, USER_LOGGED_IN, USER_LOGGED_OUT,
};
use crate::table::{table, Table};

table! {
    /// One open session.
    pub(crate) struct OpenSession as SESSIONS = "sessions" {
        session_id: String,
        user_id: String,
        appid: Option<String>,
        /// The login's log position and time: the list's order and keyset.
        position: i64,
        occurred_at: i64,
        refreshed_at: Option<i64>,
        client_ip: Option<String>,
        device: Option<String>,
    }
    key (session_id)
    indexes {
        user (user_id, occurred_at, position),
    }
    // Erasure empties a user's rows by `user_id`.
    write_indexes (user)
}

pub(crate) const TABLES: &[Table] = &[SESSIONS];

/// A batch folded in memory: logins of this batch become rows (with their later refreshes
/// and erasure already applied); the rest becomes updates and deletes of older rows.
#[derive(Default)]
struct Batch {
    new: BTreeMap<String, OpenSession>,
    refreshed: BTreeMap<String, i64>,
    ended: BTreeSet<String>,
    erased_users: BTreeSet<String>,
}

pub(super) async fn apply(
    tx: &mut Tx,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let mut batch = Batch::default();
    for e in events {
        let at = event::micros(e.occurred_at);
        match e.event_type.as_str() {
            USER_LOGGED_IN => {
                let (Some(session), Some(user)) = (
                    event::uuid_field(e, "session_id").or_else(|| event::session_stream(e)),
                    event::uuid_field(e, "user_id"),
                ) else {
                    continue;
                };
                let device = e
                    .payload
                    .get("device")
                    .filter(|d| !d.is_null())
                    .map(|d| d.to_string());
                batch.new.insert(
                    session.to_string(),
                    OpenSession {
                        session_id: session.to_string(),
                        user_id: user.to_string(),
                        appid: event::appid(e),
                        position: e.position,
                        occurred_at: at,
                        refreshed_at: None,
                        client_ip: event::text(e, "client_ip").map(str::to_owned),
                        device,
                    },
                );
            }
            SESSION_REFRESHED => {
                let Some(session) = event::session_stream(e).map(|s| s.to_string()) else {
                    continue;
                };
                match batch.new.get_mut(&session) {
                    Some(row) => row.refreshed_at = Some(at),
                    None => {
                        batch.refreshed.insert(session, at);
                    }
                }
            }
            USER_LOGGED_OUT | SESSION_REVOKED => {
                let Some(session) = event::session_stream(e).map(|s| s.to_string()) else {
                    continue;
                };
                if batch.new.remove(&session).is_none() {
                    batch.refreshed.remove(&session);
                    batch.ended.insert(session);
                }
            }
            USER_ERASED => {
                let Some(user) = event::user_stream(e).map(|u| u.to_string()) else {
                    continue;
                };
                for row in batch.new.values_mut().filter(|r| r.user_id == user) {
                    row.client_ip = None;
                    row.device = None;
                }
                batch.erased_users.insert(user);
            }
            _ => {}
        }
    }
    batch.write(tx, generation).await
}

impl Batch {
    async fn write(self, tx: &mut Tx, generation: i64) -> Result<(), ProjectionError> {
        let table = SESSIONS.physical(generation);
        if !self.new.is_empty() {
            let mut rows = Rows::new(generation);
            for row in self.new.into_values() {
                rows.push(row);
            }
            rows.insert(tx, "ON CONFLICT (session_id) DO NOTHING")
                .await?;
        }
        for (session, at) in self.refreshed {
            let sql = format!("UPDATE {table} SET refreshed_at = $1 WHERE session_id = $2");
            sqlx::query(&sql)
                .bind(at)
                .bind(session)
                .execute(&mut **tx)
                .await?;
        }
        let ended = format!("DELETE FROM {table} WHERE session_id IN ({{ids}})");
        for_ids(tx, &ended, self.ended).await?;
        for user in self.erased_users {
            let sql =
                format!("UPDATE {table} SET client_ip = NULL, device = NULL WHERE user_id = $1");
            sqlx::query(&sql).bind(user).execute(&mut **tx).await?;
        }
        Ok(())
    }
}
