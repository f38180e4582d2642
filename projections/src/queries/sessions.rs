//! Open sessions of a user, newest first, from the `sessions` read model; and waiting for it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::{
    json_or_null_at, time_at, time_or_null_at, uuid_at, Page, PageRequest, TimeList, Where,
};
use crate::checkpoint;
use crate::error::ProjectionError;
use crate::ReadModels;

/// One open session as the read model has it. `client_ip` and `device` are as the login's
/// payload carried them (possibly sealed): the API opens them before answering.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub appid: Option<String>,
    /// The login's position in the log.
    pub position: i64,
    pub created_at: DateTime<Utc>,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub client_ip: Option<String>,
    pub device: Option<serde_json::Value>,
}

/// Which of a user's sessions still count: those begun after `started_after` (a log
/// position), at or after `created_since`, and active (logged in or refreshed) at or after
/// `active_since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFilter {
    pub started_after: Option<i64>,
    pub created_since: DateTime<Utc>,
    pub active_since: DateTime<Utc>,
}

impl ReadModels {
    /// The user's sessions that pass `filter`, newest first.
    pub async fn open_sessions(
        &self,
        user_id: Uuid,
        filter: &SessionFilter,
        page: &PageRequest,
    ) -> Result<Page<SessionRecord>, ProjectionError> {
        let mut w = Where::default();
        let p = w.arg(user_id.to_string());
        w.and(format!("user_id = {p}"));
        if let Some(position) = filter.started_after {
            let p = w.arg(position);
            w.and(format!("position > {p}"));
        }
        let p = w.arg(filter.created_since.timestamp_micros());
        w.and(format!("occurred_at >= {p}"));
        let p = w.arg(filter.active_since.timestamp_micros());
        w.and(format!("COALESCE(refreshed_at, occurred_at) >= {p}"));
        self.newest_first(SESSIONS, w, None, None, page).await
    }

    /// Every session of the user the read model holds as open, whatever its age (for
    /// revoking them all).
    pub async fn session_ids_of(&self, user_id: Uuid) -> Result<Vec<Uuid>, ProjectionError> {
        let ids: Vec<String> = self
            .db()
            .read(|pool| async move {
                Ok(sqlx::query_scalar(
                    "SELECT session_id FROM sessions WHERE user_id = $1 \
                     ORDER BY occurred_at, position",
                )
                .bind(user_id.to_string())
                .fetch_all(&pool)
                .await?)
            })
            .await?;
        ids.iter()
            .map(|id| Uuid::try_parse(id).map_err(|e| ProjectionError::Corrupt(e.to_string())))
            .collect()
    }

    /// The log's head: the highest position written.
    pub async fn head(&self) -> Result<i64, ProjectionError> {
        self.db()
            .read(|pool| async move {
                Ok(
                    sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                        .fetch_one(&pool)
                        .await?,
                )
            })
            .await
    }

    /// Waits until the `sessions` read model has applied the log up to `position`; false if
    /// it has not within `timeout`.
    pub async fn wait_for_sessions(
        &self,
        position: i64,
        timeout: Duration,
    ) -> Result<bool, ProjectionError> {
        let deadline = Instant::now() + timeout;
        loop {
            if checkpoint::position(&self.db().read, "sessions").await? >= position {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

const SESSIONS: TimeList<SessionRecord> = TimeList {
    kind: 's',
    columns: "session_id, user_id, appid, position, occurred_at, refreshed_at, client_ip, device",
    view: "sessions",
    decode,
    key: |r| (r.created_at, r.position),
};

fn decode(row: &AnyRow) -> Result<SessionRecord, ProjectionError> {
    Ok(SessionRecord {
        session_id: uuid_at(row, "session_id")?,
        user_id: uuid_at(row, "user_id")?,
        appid: row.try_get("appid")?,
        position: row.try_get("position")?,
        created_at: time_at(row, "occurred_at")?,
        refreshed_at: time_or_null_at(row, "refreshed_at")?,
        client_ip: row.try_get("client_ip")?,
        device: json_or_null_at(row, "device")?,
    })
}
