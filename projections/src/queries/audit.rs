use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::rejections::{self, REJECTIONS};
use super::{
    after_cursor, json_or_null_at, time_at, time_page, AuditFilter, Page, PageRequest, TimeList,
    Where,
};
use crate::error::ProjectionError;
use crate::ReadModels;

/// One event from the `audit_log` read model, or a tally of refused logins (which are not
/// events: see `rejections`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditRecord {
    /// The event's position; negative for a tally of refused logins (no event).
    pub position: i64,
    pub occurred_at: DateTime<Utc>,
    /// `user:{id}`, `admin:{key id}` or `system`.
    pub actor: String,
    /// The event type.
    pub action: String,
    /// The user concerned, else the event's stream.
    pub target: String,
    pub stream_id: String,
    pub appid: Option<String>,
    pub client_ip: Option<String>,
    /// The payload with personal data replaced by `"[redacted]"`. For refused logins:
    /// `appid`, `reason`, `day`, `attempts`, `last_at`, `user_id` (a blocked user) and
    /// `other_addresses` (counted without their address: the app's day had too many).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl ReadModels {
    /// Audit entries, newest first.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, ProjectionError> {
        let mut w = Where::default();
        if let Some(user) = filter.user_id {
            let p = w.arg(user.to_string());
            w.and(format!("target = {p}"));
        }
        if let Some(actor) = &filter.actor {
            let p = w.arg(actor.as_str());
            w.and(format!("actor = {p}"));
        }
        if let Some(action) = &filter.action {
            let p = w.arg(action.as_str());
            w.and(format!("action = {p}"));
        }
        let after = after_cursor(AUDIT.kind, page)?;
        let size = page.size();
        let (from, to) = (filter.from, filter.to);
        let mut rows = self
            .newest_first_rows(&AUDIT, w, from, to, after, size + 1)
            .await?;
        // Refused logins are not events: merge their page in (both lists share the order
        // and the cursor; tallies have negative positions).
        if let Some(w) = rejections::audit_conditions(filter) {
            rows.extend(
                self.newest_first_rows(&REJECTIONS, w, from, to, after, size + 1)
                    .await?,
            );
            rows.sort_by_key(|r| std::cmp::Reverse((r.occurred_at, r.position)));
            rows.truncate(size + 1);
        }
        Ok(time_page(AUDIT.kind, rows, size, AUDIT.key))
    }
}

const AUDIT: TimeList<AuditRecord> = TimeList {
    kind: 'a',
    columns: "position, occurred_at, actor, action, target, stream_id, appid, client_ip, details",
    view: "audit_log",
    decode,
    key: |r| (r.occurred_at, r.position),
};

fn decode(row: &AnyRow) -> Result<AuditRecord, ProjectionError> {
    Ok(AuditRecord {
        position: row.try_get("position")?,
        occurred_at: time_at(row, "occurred_at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        stream_id: row.try_get("stream_id")?,
        appid: row.try_get("appid")?,
        client_ip: row.try_get("client_ip")?,
        details: json_or_null_at(row, "details")?.unwrap_or_default(),
    })
}
