//! The projections: each owns some tables and folds a batch of events into them, inside the
//! runner's transaction. Events a projection does not use are skipped.

mod audit;
mod logins;
mod sessions;
mod stats;
mod users;

use infra::store::RecordedEvent;
use sqlx::AnyConnection;

use crate::error::ProjectionError;
use crate::schema::Table;

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

    /// Applies `events` (in position order) to the tables of `generation`.
    pub async fn apply(
        self,
        conn: &mut AnyConnection,
        generation: i64,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        match self {
            Self::Users => users::apply(conn, generation, events).await,
            Self::LoginHistory => logins::apply(conn, generation, events).await,
            Self::AuditLog => audit::apply(conn, generation, events).await,
            Self::DailyStats => stats::apply(conn, generation, events).await,
            Self::Sessions => sessions::apply(conn, generation, events).await,
        }
    }
}
