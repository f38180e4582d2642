//! Why an append failed, as `AppendError`: from a batch's refusal row of
//! `append_event_batches` (migrations 0017 and 0020), or from a database error that failed the call.

use std::borrow::Cow;

use domain::StreamId;
use sqlx::error::{DatabaseError, ErrorKind};

use crate::store::prepared::PreparedAppend;
use crate::store::{AppendError, StoreError};

/// The error a batch's block caught: what PostgreSQL would have raised had the batch been
/// appended alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub constraint: Option<String>,
}

impl Refusal {
    /// IA001 (DETAIL: the stream) and IA002 (DETAIL: the claim's kind) are the function's own
    /// refusals; anything else is the database error, still carrying its code and constraint.
    pub fn into_error(self, prepared: &PreparedAppend) -> AppendError {
        match (self.code.as_str(), self.detail.as_deref()) {
            ("IA001", Some(stream)) => {
                return AppendError::VersionConflict(StreamId::from_stored(stream.to_owned()))
            }
            ("IA002", Some(kind)) => {
                if let Some(claim) = prepared.claims.iter().find(|c| c.kind == kind) {
                    return AppendError::ClaimTaken { kind: claim.kind };
                }
            }
            _ => {}
        }
        if concurrent(Some(&self.code), self.constraint.as_deref()) {
            if let Some(stream) = prepared.first_locked_stream() {
                return AppendError::VersionConflict(stream);
            }
        }
        db(sqlx::Error::Database(Box::new(self)))
    }
}

/// A database error that failed a whole call (a group whose connection was lost, say): the
/// batch's refusals are all caught inside the call, so only a concurrency error is named.
pub(super) fn failed(e: sqlx::Error, prepared: &PreparedAppend) -> AppendError {
    if let sqlx::Error::Database(db_err) = &e {
        if concurrent(db_err.code().as_deref(), db_err.constraint()) {
            if let Some(stream) = prepared.first_locked_stream() {
                return AppendError::VersionConflict(stream);
            }
        }
    }
    db(e)
}

pub(super) fn db(e: sqlx::Error) -> AppendError {
    AppendError::Store(StoreError::Database(e))
}

/// Database errors that can only mean "another writer changed these streams first": callers
/// answer them by reloading and deciding again. The database does not say which stream, so
/// the first one in lock order is named.
fn concurrent(code: Option<&str>, constraint: Option<&str>) -> bool {
    match code {
        // Serialization failure, deadlock, a row lock not granted within the call's
        // `lock_timeout` (migration 0017: another instance's group holds it).
        Some("40001" | "40P01" | "55P03") => true,
        // Unique violation on a stream's versions.
        Some("23505") => matches!(
            constraint,
            Some("events_stream_version_unique" | "streams_pkey")
        ),
        _ => false,
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl std::error::Error for Refusal {}

impl DatabaseError for Refusal {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.code))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }

    fn kind(&self) -> ErrorKind {
        match self.code.as_str() {
            "23505" => ErrorKind::UniqueViolation,
            "23503" => ErrorKind::ForeignKeyViolation,
            "23502" => ErrorKind::NotNullViolation,
            "23514" => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}
