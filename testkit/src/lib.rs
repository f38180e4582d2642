//! Test support for every suite (store, projections, relay, API, black-box): throwaway
//! databases on both backends, the one `both_backends!` macro, and the few direct looks into a
//! test database that tests need. A dev-dependency only: none of this is in the product.
//!
//! Each fresh database is one nobody else uses: a new SQLite file under the temp directory, or
//! a new schema in the PostgreSQL database named by `IDENTITY_TEST_POSTGRES_URL`. So tests
//! never share tables and never depend on their order.
//!
//! Without `IDENTITY_TEST_POSTGRES_URL`, or when the server cannot be reached, the PostgreSQL
//! half of a test is skipped (with a line on stderr), except under `CI=true`, where that fails.
//! NATS (`IDENTITY_TEST_NATS_URL`) follows the same rule.

pub mod pg_cluster;
pub mod sim;

use std::future::Future;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::str::FromStr;

use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

pub use infra::database_url::Backend;
use infra::database_url::DatabaseUrl;
use infra::store::{self, Store};
pub use pg_cluster::PgCluster;

/// What a test body of [`both_backends!`] is given: something built on a fresh database of one
/// backend, or `None` when that backend is skipped.
pub trait Fixture: Sized {
    fn start(backend: Backend) -> impl Future<Output = Option<Self>>;
}

/// Generates, for each test body `async fn name(fixture: F)`, one test per backend:
/// `sqlite::name` and `postgres::name` (the latter skipped without PostgreSQL, failed under
/// `CI=true`). `F` implements [`Fixture`]; it is named first: `both_backends!(Db: a, b, c)`.
#[macro_export]
macro_rules! both_backends {
    ($fixture:ty : $($name:ident),+ $(,)?) => {
        $crate::both_backends!(@backend sqlite, Sqlite, $fixture, $($name),+);
        $crate::both_backends!(@backend postgres, Postgres, $fixture, $($name),+);
    };
    (@backend $module:ident, $backend:ident, $fixture:ty, $($name:ident),+) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture =
                        <$fixture as $crate::Fixture>::start($crate::Backend::$backend).await;
                    if let Some(fixture) = fixture {
                        super::$name(fixture).await;
                    }
                }
            )+
        }
    };
}

/// Asserts that `value` matches `pattern`, showing the value when it does not.
#[macro_export]
macro_rules! assert_matches {
    ($value:expr, $pattern:pat) => {
        assert!(matches!($value, $pattern), "{:?}", $value)
    };
}

/// A store on a fresh database, its URL and its backend: the fixture of the store-level suites.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub url: String,
    pub backend: Backend,
}

impl TestDb {
    /// Another fresh database of the same backend.
    pub async fn another(&self) -> Self {
        Self::start(self.backend)
            .await
            .expect("a second database of a backend that has one")
    }
}

impl Fixture for TestDb {
    async fn start(backend: Backend) -> Option<Self> {
        let (store, url) = fresh_store(backend).await?;
        Some(Self {
            store,
            url,
            backend,
        })
    }
}

/// The URL of a fresh database of `backend`, or `None` when PostgreSQL tests are skipped.
pub async fn fresh_url(backend: Backend) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(fresh_sqlite_url()),
        Backend::Postgres => fresh_postgres_url().await,
    }
}

/// A store on a fresh database of `backend`, and its URL, or `None` when PostgreSQL tests are
/// skipped.
pub async fn fresh_store(backend: Backend) -> Option<(Arc<dyn Store>, String)> {
    let url = fresh_url(backend).await?;
    let store = store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open a fresh {backend} store: {e}"));
    Some((store, url))
}

/// The backend of a test database's URL.
pub fn backend_of(url: &str) -> Backend {
    DatabaseUrl::parse(url)
        .expect("a test database URL")
        .backend()
}

/// Names the NATS server the relay tests publish to.
pub const NATS_URL_VAR: &str = "IDENTITY_TEST_NATS_URL";

/// The test NATS server's URL once it answers, or `None` when NATS tests are skipped.
pub async fn nats_url() -> Option<String> {
    let url = match std::env::var(NATS_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => return skip("NATS", &format!("{NATS_URL_VAR} is not set")),
    };
    match tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url.as_str())).await {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => skip("NATS", &format!("cannot reach NATS at {url}: {e}")),
        Err(_) => skip("NATS", &format!("cannot reach NATS at {url}: timed out")),
    }
}

/// Whether the run is CI's (`CI=true`), where a test that cannot run fails instead of skipping.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips the `what` part of a test (a line on stderr), or fails it under `CI=true`.
pub fn skip<T>(what: &str, why: &str) -> Option<T> {
    assert!(!under_ci(), "{what} tests cannot run under CI=true: {why}");
    eprintln!("skipping the {what} part: {why}");
    None
}

/// Names the PostgreSQL database the tests may create schemas in.
pub const POSTGRES_URL_VAR: &str = "IDENTITY_TEST_POSTGRES_URL";

/// Test schemas are named `identity_test_{unix seconds}_{random}`; ones older than this are
/// dropped (by the first test of a run) so the database does not fill up over time.
const SCHEMA_PREFIX: &str = "identity_test_";
const STALE_SCHEMA_AGE: Duration = Duration::from_secs(6 * 3600);

/// The URL of a SQLite file that does not exist yet (the store creates it).
pub fn fresh_sqlite_url() -> String {
    let dir = std::env::temp_dir().join("identity-tests");
    std::fs::create_dir_all(&dir).expect("create the test database directory");
    format!(
        "sqlite://{}",
        dir.join(format!("{}.db", Uuid::now_v7())).display()
    )
}

/// The URL of a fresh, empty schema in the test PostgreSQL database (the store migrates it on
/// connect), or `None` when PostgreSQL tests are skipped.
pub async fn fresh_postgres_url() -> Option<String> {
    let base = match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => return skip("PostgreSQL", &format!("{POSTGRES_URL_VAR} is not set")),
    };
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let schema = format!("{SCHEMA_PREFIX}{secs}_{:016x}", rand::random::<u64>());
    match create_schema(&base, &schema).await {
        Ok(()) => Some(with_search_path(&base, &schema)),
        // The error names no password: sqlx does not put the URL in its messages.
        Err(e) => skip(
            "PostgreSQL",
            &format!("cannot create a schema through {POSTGRES_URL_VAR}: {e}"),
        ),
    }
}

/// Stores a session key the way the service did before the personal-data migration: addressed
/// by the clear openid. The store itself no longer can (it takes an
/// [`infra::personal_data::AccountKey`]), so the migration's test writes the row here.
pub async fn put_clear_session_key(url: &str, appid: &str, openid: &str, sealed: &[u8]) {
    let insert = |n: [&str; 4]| {
        format!(
            "INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at) \
             VALUES ({}, {}, {}, {})",
            n[0], n[1], n[2], n[3]
        )
    };
    if is_sqlite(url) {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .expect("a SQLite URL")
            .busy_timeout(Duration::from_secs(10));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("connect to the test database");
        sqlx::query(&insert(["?1", "?2", "?3", "?4"]))
            .bind(appid)
            .bind(openid)
            .bind(sealed)
            .bind(chrono::Utc::now().to_rfc3339())
            .execute(&mut conn)
            .await
            .expect("store a clear-addressed session key");
    } else {
        let mut conn = connect_postgres(url).await;
        sqlx::query(&insert(["$1", "$2", "$3", "now()"]))
            .bind(appid)
            .bind(openid)
            .bind(sealed)
            .execute(&mut conn)
            .await
            .expect("store a clear-addressed session key");
    }
}

/// Waits until `read_all` shows every event committed so far in the URL's database.
///
/// On PostgreSQL, `read_all` shows a commit only once every older writing transaction on the
/// server (another test's, say) has ended: that is how it never skips an event. A test that
/// reads the log right after writing to it calls this first. SQLite needs no wait.
pub async fn wait_until_log_readable(url: &str) {
    if is_sqlite(url) {
        return;
    }
    let mut conn = connect_postgres(url).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let readable: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM events \
             WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()))",
        )
        .fetch_one(&mut conn)
        .await
        .expect("look for unreadable events");
        if readable {
            return;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "committed events stay unreadable; transactions and locks on the server: {:?}",
                activity(&mut conn).await
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The whole log of the URL's database, as `read_all` pages through it, once every event
/// committed so far is readable.
pub async fn whole_log(store: &dyn Store, url: &str) -> Vec<infra::store::RecordedEvent> {
    wait_until_log_readable(url).await;
    let mut log = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 5000).await.expect("read the log");
        let Some(last) = page.last() else {
            return log;
        };
        after = last.position;
        log.extend(page);
    }
}

/// A connection to the test PostgreSQL server (see [`try_connect_postgres`]).
async fn connect_postgres(url: &str) -> PgConnection {
    try_connect_postgres(url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test database: {e}"))
}

/// A connection to the test PostgreSQL server. The server is shared (by parallel tests, and by
/// other runs): when all its connection slots are taken, this waits for one (30 s at most).
async fn try_connect_postgres(url: &str) -> Result<PgConnection, sqlx::Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match PgConnection::connect(url).await {
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("53300") && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            connected => return connected,
        }
    }
}

/// What every other session on the URL's PostgreSQL server is doing that can hold up a reader
/// or a lock: transactions with an id, sessions idle inside a transaction, advisory locks held.
/// Transactions with an id hold back the horizon below which events are readable. This
/// database's sessions first, then the oldest, for a test's failure message.
pub async fn postgres_activity(url: &str) -> Vec<String> {
    match try_connect_postgres(url).await {
        Ok(mut conn) => activity(&mut conn).await,
        Err(e) => vec![format!("cannot connect to list them: {e}")],
    }
}

async fn activity(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT format('pid %s, %s, %s, xid %s, for %s, advisory locks %s, last query: %s', \
         a.pid, a.datname, a.state, a.backend_xid, now() - a.xact_start, \
         (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' \
          AND l.granted), left(a.query, 200)) \
         FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND (a.backend_xid IS NOT NULL \
          OR a.state LIKE 'idle in transaction%' OR EXISTS (SELECT 1 FROM pg_locks l \
          WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)) \
         ORDER BY a.datname = current_database() DESC, a.xact_start LIMIT 20",
    )
    .fetch_all(conn)
    .await
    .unwrap_or_else(|e| vec![format!("cannot list them: {e}")])
}

/// Every row of every table in the URL's schema, as text, for tests that look for what must
/// never be stored (secrets in clear).
pub async fn dump_postgres_tables(url: &str) -> String {
    let mut conn = connect_postgres(url).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list the tables");
    let mut dump = String::new();
    for table in tables {
        let sql = format!("SELECT t::text FROM \"{}\" t", table.replace('"', "\"\""));
        let rows = sqlx::query(&sql)
            .fetch_all(&mut conn)
            .await
            .expect("dump a table");
        dump.push_str(&format!("-- {table}\n"));
        for row in rows {
            dump.push_str(row.get::<&str, _>(0));
            dump.push('\n');
        }
    }
    dump
}

async fn create_schema(base: &str, schema: &str) -> Result<(), sqlx::Error> {
    let mut conn = try_connect_postgres(base).await?;
    static CLEANED: AtomicBool = AtomicBool::new(false);
    if !CLEANED.swap(true, Ordering::Relaxed) {
        drop_stale_schemas(&mut conn).await;
    }
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// Best effort: another test run may be dropping the same schemas.
async fn drop_stale_schemas(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
    )
    .bind(format!("{SCHEMA_PREFIX}%"))
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for name in names {
        let created = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|t| now.saturating_sub(t) > STALE_SCHEMA_AGE.as_secs()) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// The base URL with the schema as the connection's search path (libpq's `options` parameter,
/// which sqlx honours): tables, the migrations table and the functions all resolve there.
fn with_search_path(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-csearch_path%3D{schema}")
}

/// `pg_dump` of the URL's schema (definitions and data), as an operator would take a backup:
/// for tests that look for what must never be stored.
pub async fn pg_dump_schema(url: &str) -> String {
    let mut conn = connect_postgres(url).await;
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut conn)
        .await
        .expect("the test schema");
    let mut pg_dump = Command::new("pg_dump");
    pg_dump.arg(format!("--schema={schema}")).arg(url);
    let output = run_ok(&mut pg_dump, "pg_dump (is it on PATH?)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `command` (`what` names it), panicking with its output when it cannot start or fails.
pub fn run_ok(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{what} did not start: {err}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn is_sqlite(url: &str) -> bool {
    backend_of(url) == Backend::Sqlite
}

/// An event of `event_type` with an empty payload and system metadata, for store tests that
/// care where events go, not what they say.
pub fn bare_event(event_type: &str) -> infra::store::NewEvent {
    infra::store::NewEvent {
        event_id: domain::EventId::from_uuid(uuid::Uuid::now_v7()),
        event_type: event_type.to_owned(),
        schema_version: 1,
        occurred_at: chrono::Utc::now(),
        payload: serde_json::json!({}),
        metadata: domain::Metadata::system(uuid::Uuid::now_v7()),
    }
}
