//! What another layout left behind: read models in the event store's file (versions before
//! their own file), or read models ahead of the log (the store's file restored from a backup
//! beside them). Both are dropped; the read models then build again from the log.

use std::path::Path;

use sqlx::{Connection, Executor, SqliteConnection};

use super::filename;
use crate::error::ProjectionError;

/// Whether the read models' file has a checkpoint past the last position in the store's.
pub(super) async fn ahead_of_the_log(url: &str, store_url: &str) -> Result<bool, ProjectionError> {
    if !filename(url)?.exists() {
        return Ok(false);
    }
    let mut conn = SqliteConnection::connect(url).await?;
    let checkpoint = max_position(&mut conn, "projection_checkpoints").await?;
    conn.close().await?;
    let Some(checkpoint) = checkpoint else {
        return Ok(false);
    };
    // The checkpoint is read first: a log that grows meanwhile only makes it look less ahead.
    let mut store = SqliteConnection::connect(store_url).await?;
    let head = max_position(&mut store, "events").await?.unwrap_or(0);
    store.close().await?;
    Ok(checkpoint > head)
}

/// The highest `position` in `table`; none if the table is missing or empty.
async fn max_position(
    conn: &mut SqliteConnection,
    table: &str,
) -> Result<Option<i64>, ProjectionError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar(&format!("SELECT max(position) FROM {table}"))
            .fetch_one(conn)
            .await?,
    )
}

/// What [`drop_read_models`] finds and drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leftovers {
    /// The read models an older version kept in the store's file, beside the store's tables.
    InTheStoreFile,
    /// Read models ahead of the log: everything in their own file (SQLite's own `sqlite_…`
    /// tables excepted).
    AheadOfTheLog,
}

impl Leftovers {
    fn drops(self, name: &str) -> bool {
        match self {
            Self::InTheStoreFile => is_read_model_object(name),
            Self::AheadOfTheLog => !name.starts_with("sqlite_"),
        }
    }
}

/// Whether an instance announced itself in the store file's `stats_zone_instances` within the
/// time after which instances count as gone (every running version since the setting beats
/// every 10 s).
async fn older_version_alive(
    conn: &mut SqliteConnection,
    objects: &[(String, String)],
) -> Result<bool, ProjectionError> {
    if !objects
        .iter()
        .any(|(_, name)| name == "stats_zone_instances")
    {
        return Ok(false);
    }
    let gone_before = crate::stats_zone::gone_before();
    let alive: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM stats_zone_instances WHERE seen_at > ?)")
            .bind(gone_before)
            .fetch_one(conn)
            .await?;
    Ok(alive)
}

/// The tables and views of the read models, as versions before their own file kept them in
/// the store's file: the projections' generations (`users_g3`) and views (`users`), their
/// checkpoints and settings. A fixed list: that layout no longer changes (a new read model
/// needs no entry: the store's file never held it).
fn is_read_model_object(name: &str) -> bool {
    const SIDE_TABLES: [&str; 3] = [
        "projection_checkpoints",
        "read_model_settings",
        "stats_zone_instances",
    ];
    const TABLES: [&str; 8] = [
        "users",
        "user_accounts",
        "login_history",
        "audit_log",
        "audit_sessions",
        "daily_stats",
        "daily_active_users",
        "sessions",
    ];
    SIDE_TABLES.contains(&name)
        || TABLES.iter().any(|table| match name.strip_prefix(table) {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix("_g")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            None => false,
        })
}

/// Drops the read models found in the SQLite file at `url`: the store's file an older version
/// kept them in (their rows hold personal data, sealed or, from before sealing, clear, and
/// erasures would no longer reach them), or the read models' own file when it is ahead of the
/// log. `secure_delete` overwrites their pages. In the file's write turn, one statement at a
/// time, each its own transaction (no transaction journals them all; a crash part-way is
/// finished by the next start). The read models then build again from the log in their own
/// file, as for a new deployment.
pub(super) async fn drop_read_models(
    url: &str,
    path: &Path,
    which: Leftovers,
    busy_timeout: &str,
) -> Result<(), ProjectionError> {
    if !path.exists() {
        return Ok(());
    }
    let mut conn = SqliteConnection::connect(url).await?;
    let objects: Vec<(String, String)> =
        sqlx::query_as("SELECT type, name FROM sqlite_master WHERE type IN ('view', 'table')")
            .fetch_all(&mut conn)
            .await?;
    if which == Leftovers::InTheStoreFile {
        // Only a file an older identityd kept its read models in (a file another program
        // shares could have tables of these names), and only once that identityd has stopped.
        if !objects
            .iter()
            .any(|(_, name)| name == "projection_checkpoints")
        {
            return conn.close().await.map_err(Into::into);
        }
        if older_version_alive(&mut conn, &objects).await? {
            conn.close().await?;
            return Err(ProjectionError::OlderVersionRunning);
        }
    }
    let mut drops: Vec<String> = objects
        .into_iter()
        .filter(|(_, name)| which.drops(name))
        .map(|(kind, name)| {
            let kind = if kind == "view" { "VIEW" } else { "TABLE" };
            format!("DROP {kind} IF EXISTS \"{}\"", name.replace('"', "\"\""))
        })
        .collect();
    if drops.is_empty() {
        return conn.close().await.map_err(Into::into);
    }
    // Views first, so a crash part-way leaves no view naming a table that is gone; the
    // checkpoints last, so it leaves them beside the tables still to drop and the next start,
    // finding the read models still ahead of the log, drops the rest.
    drops.sort_by_key(|drop| {
        if drop.starts_with("DROP VIEW") {
            0
        } else if drop.ends_with("\"projection_checkpoints\"") {
            2
        } else {
            1
        }
    });
    tracing::info!(
        objects = drops.len(),
        file = %path.display(),
        "dropping read models (an older version's in the event store's file, or read models \
         ahead of the log); they build again from the log in their own file"
    );
    let _turn = infra::store::sqlite_write_turn(path).take().await?;
    conn.execute(busy_timeout).await?;
    conn.execute("PRAGMA secure_delete = ON").await?;
    for drop in &drops {
        conn.execute(drop.as_str()).await?;
    }
    conn.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use infra::sql::PoolSettings;

    use crate::db::Db;
    use crate::error::ProjectionError;

    /// The read models an older version kept in the store's file are dropped and overwritten
    /// (their rows hold personal data); every table of the store (its migrations as they are)
    /// stays; the read models start in their own file, and their readers still read the log.
    #[tokio::test]
    async fn read_models_left_in_the_store_file_are_dropped_and_overwritten() {
        use sqlx::{Connection as _, SqliteConnection};

        let store_url = format!("{}?mode=rwc", testkit::fresh_sqlite_url());
        let store_path = super::filename(&store_url).unwrap();
        let _store = infra::store::connect(&store_url).await.unwrap();
        let tables = "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name";
        let mut old = SqliteConnection::connect(&store_url).await.unwrap();
        let store_tables: Vec<String> = sqlx::query_scalar(tables)
            .fetch_all(&mut old)
            .await
            .unwrap();
        assert!(
            store_tables.iter().any(|t| t == "events"),
            "{store_tables:?}"
        );
        let marker = "personal-marker-4f1c";
        for sql in [
            "CREATE TABLE projection_checkpoints (name text PRIMARY KEY)".to_owned(),
            "CREATE TABLE login_history_g3 (position INTEGER PRIMARY KEY, openid text)".to_owned(),
            // Many rows, so the table spans pages of its own.
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
                 INSERT INTO login_history_g3 SELECT i, '{marker}' || i FROM n"
            ),
            "CREATE VIEW login_history AS SELECT * FROM login_history_g3".to_owned(),
            // A store table whose name merely starts like a read model's.
            "CREATE TABLE users_graveyard (id INTEGER)".to_owned(),
            "PRAGMA wal_checkpoint(TRUNCATE)".to_owned(),
        ] {
            sqlx::query(&sql).execute(&mut old).await.unwrap();
        }
        old.close().await.unwrap();

        let db = Db::connect(&store_url, &PoolSettings::PATIENT)
            .await
            .unwrap();

        let mut store = SqliteConnection::connect(&store_url).await.unwrap();
        let left: Vec<String> = sqlx::query_scalar(tables)
            .fetch_all(&mut store)
            .await
            .unwrap();
        let mut expected = store_tables.clone();
        expected.push("users_graveyard".to_owned());
        expected.sort();
        assert_eq!(left, expected);
        // What the store's checkpointer does within 100 ms of a commit.
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut store)
            .await
            .unwrap();
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let path = format!("{}{suffix}", store_path.display());
            bytes.extend(std::fs::read(path).unwrap_or_default());
        }
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "the old rows are overwritten"
        );

        let read_models =
            super::filename(&infra::database_url::sqlite_read_models_url(&store_url)).unwrap();
        assert!(read_models.exists() && read_models != store_path);
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&db.read)
            .await
            .unwrap();
        assert_eq!(
            head, 0,
            "the readers see the log through the attached store file"
        );
        let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints")
            .fetch_one(&db.read)
            .await
            .unwrap();
        assert_eq!(checkpoints, 0, "a new, empty set of read models");
    }

    /// Read models ahead of the log (the store's file restored from an older backup beside
    /// them) are dropped, to build again: their checkpoints would skip the positions reused.
    #[tokio::test]
    async fn read_models_ahead_of_a_restored_log_build_again() {
        use sqlx::{Connection as _, SqliteConnection};

        let store_url = format!("{}?mode=rwc", testkit::fresh_sqlite_url());
        let read_models_url = format!(
            "{}?mode=rwc",
            infra::database_url::sqlite_read_models_url(&store_url)
                .split('?')
                .next()
                .unwrap()
        );
        for (url, statements) in [
            (
                &store_url,
                &[
                    "CREATE TABLE events (position INTEGER PRIMARY KEY)",
                    "INSERT INTO events VALUES (7)",
                ][..],
            ),
            (
                &read_models_url,
                &[
                    "CREATE TABLE projection_checkpoints (name text PRIMARY KEY, position INTEGER)",
                    "INSERT INTO projection_checkpoints VALUES ('users', 9)",
                    "CREATE TABLE users_g1 (user_id text)",
                    // A read model of a later version than this one: dropped all the same.
                    "CREATE TABLE future_model_g1 (anything text)",
                ][..],
            ),
        ] {
            let mut conn = SqliteConnection::connect(url).await.unwrap();
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            conn.close().await.unwrap();
        }

        let db = Db::connect(&store_url, &PoolSettings::PATIENT)
            .await
            .unwrap();

        let left: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' ORDER BY name",
        )
        .fetch_all(&db.read)
        .await
        .unwrap();
        assert_eq!(
            left,
            ["projection_checkpoints"],
            "only the new, empty checkpoints"
        );
        let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints")
            .fetch_one(&db.read)
            .await
            .unwrap();
        assert_eq!(checkpoints, 0);
    }

    /// Nothing is dropped from a store file an older identityd still runs on (it announced
    /// itself within 30 s), nor from a file that never held an identityd's read models.
    #[tokio::test]
    async fn nothing_is_dropped_under_a_running_older_version_or_from_a_foreign_file() {
        use sqlx::{Connection as _, SqliteConnection};

        let tables = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name";
        let now = chrono::Utc::now().timestamp_micros();
        let alive = format!("INSERT INTO stats_zone_instances VALUES ('old', 'UTC', {now})");
        for (statements, refused) in [
            (
                vec![
                    "CREATE TABLE projection_checkpoints (name text PRIMARY KEY)".to_owned(),
                    "CREATE TABLE stats_zone_instances (instance_id text, timezone text, \
                     seen_at INTEGER)"
                        .to_owned(),
                    alive,
                    "CREATE TABLE users_g1 (user_id text)".to_owned(),
                ],
                true,
            ),
            (vec!["CREATE TABLE users (user_id text)".to_owned()], false),
        ] {
            let store_url = format!("{}?mode=rwc", testkit::fresh_sqlite_url());
            let mut conn = SqliteConnection::connect(&store_url).await.unwrap();
            for sql in &statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            let before: Vec<String> = sqlx::query_scalar(tables)
                .fetch_all(&mut conn)
                .await
                .unwrap();

            let connected = Db::connect(&store_url, &PoolSettings::PATIENT).await;
            assert_eq!(
                matches!(connected, Err(ProjectionError::OlderVersionRunning)),
                refused,
                "{statements:?}"
            );
            let after: Vec<String> = sqlx::query_scalar(tables)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            assert_eq!(after, before, "{statements:?}");
        }
    }
}
