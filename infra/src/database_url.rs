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

    /// Where the read models are: on PostgreSQL this database, on SQLite a file of their own
    /// beside this one ([`sqlite_read_models_url`]).
    pub fn read_models(&self) -> Self {
        match self.backend {
            Backend::Postgres => self.clone(),
            Backend::Sqlite => Self {
                backend: Backend::Sqlite,
                url: sqlite_read_models_url(&self.url),
            },
        }
    }

    /// The URL as given, credentials included: for connecting, never for showing.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

/// The SQLite URL of the read models' own file, beside the event store's `store_url` and with
/// its parameters: `sqlite://data/identity.db` → `sqlite://data/identity.read-models.db` (the
/// name's extension kept last, or `.read-models` appended to a name without one).
///
/// The read models live in a file of their own so that their writer neither waits for the
/// store's appends nor makes them wait, and neither writer's page cache is emptied by the
/// other's commits (SQLite drops a connection's cache whenever another one committed).
pub fn sqlite_read_models_url(store_url: &str) -> String {
    let (path, params) = match store_url.split_once('?') {
        Some((path, params)) => (path, Some(params)),
        None => (store_url, None),
    };
    let name_starts = path
        .rfind('/')
        .or_else(|| path.rfind(':'))
        .map_or(0, |i| i + 1);
    let mut url = match path[name_starts..].rfind('.').filter(|&dot| dot > 0) {
        Some(dot) => {
            let dot = name_starts + dot;
            format!("{}.read-models{}", &path[..dot], &path[dot..])
        }
        None => format!("{path}.read-models"),
    };
    if let Some(params) = params {
        url.push('?');
        url.push_str(params);
    }
    url
}

/// The file a `sqlite:` URL names, decoded as SQLite opens it (`%3F` in a name is a `?`);
/// none for a URL SQLite would not open.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr as _;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
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
    fn the_read_models_file_sits_beside_the_store_file() {
        for (store, read_models) in [
            ("sqlite://identity.db", "sqlite://identity.read-models.db"),
            (
                "sqlite:///var/lib/id.v2/identity.db?mode=rwc",
                "sqlite:///var/lib/id.v2/identity.read-models.db?mode=rwc",
            ),
            ("sqlite:data/identity", "sqlite:data/identity.read-models"),
            ("sqlite:identity", "sqlite:identity.read-models"),
            (
                "sqlite:///tmp/.identity",
                "sqlite:///tmp/.identity.read-models",
            ),
        ] {
            assert_eq!(sqlite_read_models_url(store), read_models, "{store}");
            let url = DatabaseUrl::parse(store).unwrap();
            assert_eq!(url.read_models().as_str(), read_models);
        }
        let postgres = DatabaseUrl::parse("postgres://h/db").unwrap();
        assert_eq!(postgres.read_models(), postgres, "the same database");
    }

    #[test]
    fn never_shows_the_password() {
        let url = DatabaseUrl::parse("postgres://user:hunter2@db/identity").unwrap();
        assert!(!format!("{url:?} {url}").contains("hunter2"));
    }
}
