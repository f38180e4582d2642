//! The projections: each owns some tables and folds a batch of events into them, inside the
//! runner's transaction. Events a projection does not use are skipped.

mod audit;
mod logins;
mod sessions;
mod stats;
mod users;

use chrono_tz::Tz;
use infra::store::RecordedEvent;
use sqlx::any::AnyRow;

use crate::db::{bind, Tx, Val};
use crate::error::ProjectionError;
use crate::table::Table;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Projection {
    Users,
    LoginHistory,
    AuditLog,
    DailyStats,
    Sessions,
}

impl Projection {
    pub const ALL: [Self; 5] = [
        Self::Users,
        Self::LoginHistory,
        Self::AuditLog,
        Self::DailyStats,
        Self::Sessions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::LoginHistory => "login_history",
            Self::AuditLog => "audit_log",
            Self::DailyStats => "daily_stats",
            Self::Sessions => "sessions",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn tables(self) -> &'static [Table] {
        match self {
            Self::Users => users::TABLES,
            Self::LoginHistory => logins::TABLES,
            Self::AuditLog => audit::TABLES,
            Self::DailyStats => stats::TABLES,
            Self::Sessions => sessions::TABLES,
        }
    }

    /// Applies `events` (in position order) to the tables of `generation`; `zone` starts the
    /// days of the daily stats.
    pub async fn apply(
        self,
        tx: &mut Tx,
        generation: i64,
        events: &[RecordedEvent],
        zone: Tz,
    ) -> Result<(), ProjectionError> {
        match self {
            Self::Users => users::apply(tx, generation, events).await,
            Self::LoginHistory => logins::apply(tx, generation, events).await,
            Self::AuditLog => audit::apply(tx, generation, events).await,
            Self::DailyStats => stats::apply(tx, generation, events, zone).await,
            Self::Sessions => sessions::apply(tx, generation, events).await,
        }
    }
}

/// Ids per `IN (…)` list.
const IN_LIST: usize = 500;

/// Runs `statement` for `ids`, at most [`IN_LIST`] at a time: `{ids}` in it stands for the
/// list's placeholders, the ids are bound to them. The rows of every run, in order.
async fn for_ids(
    tx: &mut Tx,
    statement: &str,
    ids: impl IntoIterator<Item = String>,
) -> Result<Vec<AnyRow>, ProjectionError> {
    let ids: Vec<String> = ids.into_iter().collect();
    let mut rows = Vec::new();
    for chunk in ids.chunks(IN_LIST) {
        let sql = statement.replace("{ids}", &tx.placeholders(1, chunk.len()));
        // A full list recurs batch after batch: worth preparing.
        let mut query = sqlx::query(&sql).persistent(chunk.len() == IN_LIST);
        for id in chunk {
            query = bind(query, Val::from(id.as_str()));
        }
        rows.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}
