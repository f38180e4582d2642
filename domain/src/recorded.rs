//! What the store adds to an event that aggregates need besides its payload: where it sits in
//! the global log and when it happened.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The global position: commit order across every stream, so two events of different
    /// streams can be ordered without trusting any clock.
    pub position: i64,
    pub occurred_at: DateTime<Utc>,
}
