//! The one place a database URL becomes a backend. The event store, the read models and the
//! tests all take a [`DatabaseUrl`], so "which database is this?" is answered once.

use std::fmt;

/// The two databases the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The name `/healthz` and the logs show.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A URL that names a database we can run on: `postgres://…`/`postgresql://…`, or a SQLite
/// file as `sqlite://path` or `sqlite:path`. In-memory SQLite is refused: the store's pools
/// (and the read models') would each get a database of their own, without the events.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    url: String,
}

/// The URL names no database we run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported database URL (expected sqlite://path or postgres://)")]
pub struct UnsupportedUrl;

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, UnsupportedUrl> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            if url.contains(":memory:") || url.contains("mode=memory") {
                return Err(UnsupportedUrl);
            }
            Backend::Sqlite
        } else {
            return Err(UnsupportedUrl);
        };
        Ok(Self {
            backend,
            url: url.to_owned(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL as given, credentials included: for connecting, never for showing.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = UnsupportedUrl;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::parse(url)
    }
}

/// Shows the URL without its password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact::url(&self.url))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact::url(&self.url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_backend_once() {
        for (url, backend) in [
            ("postgres://u:p@h/db", Backend::Postgres),
            ("postgresql://h/db", Backend::Postgres),
            ("sqlite:///tmp/x.db", Backend::Sqlite),
            ("sqlite:x.db?mode=rwc", Backend::Sqlite),
        ] {
            assert_eq!(DatabaseUrl::parse(url).unwrap().backend(), backend, "{url}");
        }
        for refused in [
            "mysql://h/db",
            "sqlite::memory:",
            "sqlite://x?mode=memory",
            "",
        ] {
            assert_eq!(
                DatabaseUrl::parse(refused),
                Err(UnsupportedUrl),
                "{refused}"
            );
        }
    }

    #[test]
    fn never_shows_the_password() {
        let url = DatabaseUrl::parse("postgres://user:hunter2@db/identity").unwrap();
        assert!(!format!("{url:?} {url}").contains("hunter2"));
    }
}
