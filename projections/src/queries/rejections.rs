//! Refused logins for the admin API. They are not events (an anonymous caller must not grow
//! the log): infra keeps them as tallies in `login_rejections`, one row per app, day (in the stats' zone),
//! reason, client IP and blocked user, and the audit log and daily stats read them from there.

use std::collections::BTreeMap;

use chrono::NaiveDate;
// The event type refused logins had in the log is their action in the audit log.
use domain::event_facts::LOGIN_REJECTED;
use infra::store::{FOLDED_IP, NO_IP};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{time_at, AuditFilter, AuditRecord, TimeList, Where};
use crate::error::ProjectionError;
use crate::ReadModels;

/// The tallies as audit entries: at the time of their first rejection, with a negative
/// position (they are not events, and never meet an event's position).
pub(crate) const REJECTIONS: TimeList<AuditRecord> = TimeList {
    kind: 'a',
    columns: "position, occurred_at, appid, day, reason, client_ip, user_id, attempts, last_at",
    view: "(SELECT -id AS position, first_at AS occurred_at, appid, day, reason, client_ip, \
           user_id, attempts, last_at FROM login_rejections) AS rejections",
    decode,
    key: |r| (r.occurred_at, r.position),
};

/// Whether an audit filter can match a refused login, and its conditions if so.
pub(crate) fn audit_conditions(filter: &AuditFilter) -> Option<Where> {
    if filter.actor.as_deref().is_some_and(|a| a != "system")
        || filter
            .action
            .as_deref()
            .is_some_and(|a| a != LOGIN_REJECTED)
    {
        return None;
    }
    let mut w = Where::default();
    if let Some(user) = filter.user_id {
        let p = w.arg(user.to_string());
        w.and(format!("user_id = {p}"));
    }
    Some(w)
}

fn decode(row: &AnyRow) -> Result<AuditRecord, ProjectionError> {
    let appid: String = row.try_get("appid")?;
    let user_id: String = row.try_get("user_id")?;
    let client_ip: String = row.try_get("client_ip")?;
    let stream_id = format!("app-{appid}");
    Ok(AuditRecord {
        position: row.try_get("position")?,
        occurred_at: time_at(row, "occurred_at")?,
        actor: "system".to_owned(),
        action: LOGIN_REJECTED.to_owned(),
        target: if user_id.is_empty() {
            stream_id.clone()
        } else {
            user_id.clone()
        },
        stream_id,
        client_ip: (client_ip != NO_IP && client_ip != FOLDED_IP).then_some(client_ip.clone()),
        details: json!({
            "appid": appid,
            "reason": row.try_get::<String, _>("reason")?,
            "day": row.try_get::<String, _>("day")?,
            "attempts": row.try_get::<i64, _>("attempts")?,
            "last_at": time_at(row, "last_at")?,
            "user_id": (!user_id.is_empty()).then_some(user_id),
            // The app's day had too many addresses: these were counted without theirs.
            "other_addresses": client_ip == FOLDED_IP,
        }),
        appid: Some(appid),
    })
}

/// Refused logins per `(appid, day)`, by reason.
pub(crate) type RejectionCounts = BTreeMap<(String, String), BTreeMap<String, i64>>;

impl ReadModels {
    /// Refused logins per app and day from `from` to `to` (inclusive), by reason: only the
    /// tallies begun in the stats' current zone (see `stats_zone`).
    pub(crate) async fn rejection_counts(
        &self,
        appid: Option<&str>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<RejectionCounts, ProjectionError> {
        let mut w = Where::default();
        w.days(appid, from, to);
        w.and(
            "first_at >= COALESCE((SELECT since FROM read_model_settings \
             WHERE name = 'daily_stats.timezone'), 0)"
                .to_owned(),
        );
        let sql = format!(
            "SELECT appid, day, reason, CAST(SUM(attempts) AS BIGINT) AS attempts \
             FROM login_rejections {} GROUP BY appid, day, reason",
            w.sql()
        );
        let rows = w.fetch_all(self.db(), &sql).await?;
        let mut counts = RejectionCounts::new();
        for row in rows {
            let key = (row.try_get("appid")?, row.try_get("day")?);
            counts
                .entry(key)
                .or_default()
                .insert(row.try_get("reason")?, row.try_get("attempts")?);
        }
        Ok(counts)
    }
}
