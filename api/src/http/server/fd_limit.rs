//! The connection cap must fit under the file-descriptor limit: past it, `accept` fails with
//! "too many open files", the database and WeChat clients cannot open sockets either, and the
//! cap never takes effect.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard one (what an unprivileged process
//! may do), and a cap that still does not fit, with descriptors kept for the rest of the process
//! (`FD_RESERVE`), is lowered with a warning.

/// Descriptors kept for everything but client connections (the listener, the database pool,
/// the WeChat and NATS clients, logs and files): this many, or half a smaller limit.
pub const FD_RESERVE: u64 = 256;

/// `max_connections`, lowered when the descriptor limit (raised as far as allowed) cannot hold
/// it plus `FD_RESERVE`.
pub fn fit_connections(max_connections: usize) -> usize {
    let limit = raise_soft_limit();
    match connections_within(limit, max_connections) {
        Some(fitted) => {
            tracing::warn!(
                configured = max_connections,
                max_connections = fitted,
                open_files_limit = limit,
                "IDENTITY_MAX_CONNECTIONS does not fit under the open-files limit (RLIMIT_NOFILE); \
                 lowering it. Raise the limit (e.g. LimitNOFILE= in systemd, ulimit -n) to allow more"
            );
            fitted
        }
        None => max_connections,
    }
}

/// The lowered cap when `max_connections` plus the reserve exceeds `limit` (at least 1).
pub fn connections_within(limit: Option<u64>, max_connections: usize) -> Option<usize> {
    let limit = limit?;
    let room = limit.saturating_sub(FD_RESERVE.min(limit / 2)).max(1);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    (max_connections > room).then_some(room)
}

/// Raises the soft open-files limit to the hard one; the soft limit after that (`None`:
/// unlimited).
#[cfg(unix)]
fn raise_soft_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(%error, "raising the open-files limit failed");
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(not(unix))]
fn raise_soft_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_over_the_descriptor_limit_is_lowered_under_it() {
        assert_eq!(connections_within(Some(256), 10_000), Some(128));
        assert_eq!(connections_within(Some(1), 10_000), Some(1));
        assert_eq!(connections_within(Some(1_280), 10_000), Some(1_024));
        assert_eq!(connections_within(Some(65_536), 10_000), None);
        assert_eq!(connections_within(None, 10_000), None);
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        use rustix::process::{getrlimit, Resource};
        let after = raise_soft_limit();
        assert_eq!(after, getrlimit(Resource::Nofile).maximum);
    }
}
