//! Which store failures are the database's availability rather than a fault of the request or
//! of our code: the connection was lost, the server is shutting down or refusing connections,
//! the pool had no connection in time, SQLite is busy or its disk is full. Such a failure
//! answers 503 `database_unavailable` ("retry"), everything else stays a 500 ("bug").
//!
//! One classifier for every path: the API walks an error's whole chain with
//! [`is_database_unavailable`], so a use case need not know which of its calls failed how.

use std::error::Error;

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

use super::{AppendError, StoreError};

/// True when some error in `err`'s chain says the database is unavailable (see the module).
pub fn is_database_unavailable(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(err) = err.downcast_ref::<sqlx::Error>() {
            if is_sqlx_unavailable(err) {
                return true;
            }
        }
        // Variants whose cause is kept as text, not as a source (the error is `transparent`
        // or crossed a channel): their own kind decides.
        let store = match err.downcast_ref::<AppendError>() {
            Some(AppendError::Store(store)) => Some(store),
            _ => err.downcast_ref::<StoreError>(),
        };
        match store {
            Some(StoreError::SharedWrite { unavailable, .. }) => return *unavailable,
            Some(StoreError::QueuedBehindBusy(_)) => return true,
            _ => {}
        }
        next = err.source();
    }
    false
}

/// True when some error in `err`'s chain says the connection it ran on was lost (broken
/// socket, or the server ended the session: shut down, crashed, restarted): the statement may
/// well succeed on another connection. A subset of [`is_database_unavailable`]; a pool that
/// had no connection in time is not one (asking again would wait as long again).
pub fn is_connection_lost(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(err) = err.downcast_ref::<sqlx::Error>() {
            return match err {
                sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
                sqlx::Error::Database(err) => err
                    .try_downcast_ref::<PgDatabaseError>()
                    .is_some_and(|pg| postgres_connection_lost(pg.code())),
                _ => false,
            };
        }
        next = err.source();
    }
    false
}

/// The database itself failed or went away, as opposed to this process waiting too long for
/// one of its own pooled connections. A flood of requests empties the pool without anything
/// being wrong with the database: only a failure of the database makes a pool test its
/// connections or readiness probe writes, so that a flood cannot feed on itself or take every
/// instance out of rotation.
pub fn is_database_failure(err: &(dyn Error + 'static)) -> bool {
    is_database_unavailable(err) && !is_pool_wait(err)
}

/// The chain's cause is our pool having no connection in time (or being closed).
pub(crate) fn is_pool_wait(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(err) = err.downcast_ref::<sqlx::Error>() {
            return matches!(err, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed);
        }
        next = err.source();
    }
    false
}

impl StoreError {
    /// The database is unavailable (a retry later may succeed); see the module.
    pub fn is_unavailable(&self) -> bool {
        is_database_unavailable(self)
    }
}

/// One sqlx error, by kind and, for a server's error, by its code.
pub(crate) fn is_sqlx_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(err) => {
            if let Some(pg) = err.try_downcast_ref::<PgDatabaseError>() {
                postgres_unavailable(pg.code())
            } else if let Some(sqlite) = err.try_downcast_ref::<SqliteError>() {
                sqlite.code().is_some_and(|code| sqlite_unavailable(&code))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs of an unavailable server: class 08 (connection exception), 53
/// (insufficient resources: disk full, out of memory, too many connections), 57P01–57P05
/// (shut down by an administrator or a crash, cannot connect now, idle session ended), 58030
/// (I/O error) and 25006 (a read-only transaction: the server is a standby, as after a
/// failover that moved the primary elsewhere).
fn postgres_unavailable(sqlstate: &str) -> bool {
    sqlstate.starts_with("08")
        || sqlstate.starts_with("53")
        || matches!(
            sqlstate,
            "57P01" | "57P02" | "57P03" | "57P05" | "58030" | "25006"
        )
}

/// The SQLSTATEs of a session the server ended: class 08 (connection exception), 57P01
/// (administrator shutdown), 57P02 (crash shutdown), 57P05 (idle session timeout).
fn postgres_connection_lost(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P05")
}

/// True when some error in `err`'s chain is SQLite's BUSY (primary code 5): another process
/// held the lock the statement needed for the whole busy wait. Unlike a full disk, which may
/// refuse one large write and take a small one, it says every write queued behind would wait
/// as long again (see `sqlite::turn`).
pub(crate) fn is_sqlite_busy(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(sqlx::Error::Database(err)) = err.downcast_ref::<sqlx::Error>() {
            return err
                .try_downcast_ref::<SqliteError>()
                .and_then(|sqlite| sqlite.code())
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| code & 0xff == 5);
        }
        next = err.source();
    }
    false
}

/// SQLite result codes of an unavailable database, by primary code (the low byte of an
/// extended code): BUSY 5, NOMEM 7, READONLY 8 (the file or its file system turned
/// read-only), IOERR 10, FULL 13, CANTOPEN 14, PROTOCOL 15. Not LOCKED 6: a table locked
/// within one connection is our own doing.
fn sqlite_unavailable(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 7 | 8 | 10 | 13 | 14 | 15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_exhausted_pools_are_unavailable() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_sqlx_unavailable(&sqlx::Error::Io(reset)));
        assert!(is_sqlx_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_sqlx_unavailable(&sqlx::Error::PoolClosed));
        assert!(!is_sqlx_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_sqlx_unavailable(&sqlx::Error::Protocol("bad".into())));
    }

    #[test]
    fn postgres_codes_by_class() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "53300", "53100", "58030", "25006",
        ] {
            assert!(postgres_unavailable(code), "{code}");
        }
        for code in ["23505", "40001", "40P01", "55P03", "42P01", "22021"] {
            assert!(!postgres_unavailable(code), "{code}");
        }
    }

    #[test]
    fn sqlite_codes_by_primary_code() {
        // BUSY, BUSY_SNAPSHOT (517), READONLY, IOERR_WRITE (778), FULL, CANTOPEN.
        for code in ["5", "517", "8", "778", "13", "14"] {
            assert!(sqlite_unavailable(code), "{code}");
        }
        // CONSTRAINT_UNIQUE (2067), CORRUPT (11), ERROR (1), LOCKED (6), not a number.
        for code in ["2067", "11", "1", "6", "x"] {
            assert!(!sqlite_unavailable(code), "{code}");
        }
    }

    #[test]
    fn a_lost_connection_is_told_from_an_exhausted_pool() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let lost = anyhow::Error::new(StoreError::Database(sqlx::Error::Io(reset))).context("x");
        assert!(is_connection_lost(lost.as_ref()));
        let timed_out = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert!(!is_connection_lost(&timed_out));
        assert!(is_database_unavailable(&timed_out));
        for code in ["57P01", "57P02", "08006"] {
            assert!(postgres_connection_lost(code), "{code}");
        }
        for code in ["57P03", "53300", "23505"] {
            assert!(!postgres_connection_lost(code), "{code}");
        }
    }

    #[test]
    fn the_whole_chain_is_read() {
        let store = StoreError::Database(sqlx::Error::PoolTimedOut);
        let wrapped = anyhow::Error::new(store).context("loading the user");
        assert!(is_database_unavailable(wrapped.as_ref()));

        let shared = |unavailable| {
            AppendError::Store(StoreError::SharedWrite {
                message: "the group failed".into(),
                unavailable,
            })
        };
        assert!(is_database_unavailable(&shared(true)));
        // A group that failed for another reason (a bug) is that, for every member.
        assert!(!is_database_unavailable(&shared(false)));

        let corrupt = anyhow::Error::new(StoreError::Corrupt("bad row".into())).context("x");
        assert!(!is_database_unavailable(corrupt.as_ref()));
    }

    #[test]
    fn an_empty_pool_is_unavailable_but_not_a_failure_of_the_database() {
        let waited = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert!(is_database_unavailable(&waited));
        assert!(!is_database_failure(&waited));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let lost = StoreError::Database(sqlx::Error::Io(reset));
        assert!(is_database_failure(&lost));
    }
}
