//! The login level on a database that already holds many people and a long log (issue 14:
//! 1M users and 10M events at full scale, proportionally fewer at smaller scales), against the
//! same level on an empty database: what growth costs a login.
//!
//! The database holds what a real one would: the events (registrations, logins with their
//! session streams, refreshes, logouts, linked accounts, a few blocked users, by the data
//! generator), each person's data key, the uniqueness claims, each WeChat account's stored
//! session key, and the read models rebuilt over the whole log. Its people are the WeChat
//! simulator's, so the level's returning logins (70 %, as on the empty database) find stored
//! people, drawn uniformly from all of them; 30 % are new people, 30 % go to the second app.
//! Before the level the database is settled as a running deployment's would be (see [`settle`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::generate::{self, Generated, Mix, Naming, Population, StoredPeople};
use crate::login::{self, LevelResult};
use crate::meter;
use crate::pgserver::PgServer;
use crate::replay::{self, Replay};
use crate::report::Timing;
use crate::service::{Backend, Database, Mode, Service, Sim};

/// How large the pre-filled database is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub people: u64,
    pub events: u64,
}

/// The level on the pre-filled database and what the database held.
#[derive(Debug, Clone, Serialize)]
pub struct Prefilled {
    /// What the generator wrote (people, streams, claims, session keys; one data key per
    /// person); on a reused database, what it wrote when it made it.
    pub generated: Generated,
    /// The read models rebuilt over the log (one run), before the service started; on a
    /// reused database, when it was made.
    pub rebuild: Replay,
    /// The description of the kept database the levels ran on (`--prefilled-database`), which
    /// earlier runs' levels may have added people to; `None`: filled for this run.
    pub reused: Option<PathBuf>,
    pub level: LevelResult,
    /// PostgreSQL: the level again, after a checkpoint, with the service's sessions writing
    /// compressed full-page images (`wal_compression = lz4`, a server setting a deployment
    /// would set in `postgresql.conf`).
    pub level_wal_lz4: Option<LevelResult>,
    /// The same number of virtual users on the empty database (the login part's level).
    pub empty_logins_per_sec: Option<f64>,
    /// `level.logins_per_sec / empty_logins_per_sec`: issue 14 wants ≥ 0.9.
    pub ratio: Option<f64>,
}

/// Where and how to run it.
pub struct Setup<'a> {
    pub backend: Backend,
    pub postgres_url: &'a str,
    pub mode: &'a Mode,
    pub sim: &'a Sim,
    pub http: &'a reqwest::Client,
    pub appenders: usize,
    /// `--keep-database`: keep the database filled here and describe it in this file, so a
    /// later run can take it (`reuse`) instead of filling another.
    pub keep_as: Option<PathBuf>,
    /// `--prefilled-database`: run the levels on the database a `keep_as` file describes.
    pub reuse: Option<&'a Path>,
}

/// What a later run needs to log in on a kept pre-filled database: where it is (its URL as
/// given, credentials included), the master key its signing keys are sealed with (a key the
/// bench generated for generated people), who is stored in it, and how it was made (reported
/// again: the levels of each run add their own people to it). The file is its owner's only.
#[derive(Serialize, Deserialize)]
struct Kept {
    backend: String,
    url: String,
    master_key: String,
    stored: StoredPeople,
    generated: Generated,
    rebuild: Replay,
}

/// The filled database's part of the result.
struct Filled {
    generated: Generated,
    rebuild: Replay,
    stored: Option<Arc<StoredPeople>>,
}

/// Fills a fresh database to `size` (or takes the one `setup.reuse` names), then runs
/// `concurrency` virtual users for `duration`.
pub async fn run(
    setup: &Setup<'_>,
    size: Size,
    concurrency: usize,
    duration: Duration,
    empty: Option<&LevelResult>,
    timings: &mut Vec<Timing>,
) -> anyhow::Result<Prefilled> {
    if let Some(path) = setup.reuse {
        let kept = Kept::read(path, setup.backend)?;
        let db = Database::kept(setup.backend, kept.url, kept.master_key);
        eprintln!(
            "{}: the pre-filled database {} describes: settling",
            setup.backend.name(),
            path.display()
        );
        settle(setup.backend, &db.url).await?;
        let filled = Filled {
            generated: kept.generated,
            rebuild: kept.rebuild,
            stored: Some(Arc::new(kept.stored)),
        };
        let level = levels(&db, setup, filled, concurrency, duration, empty, timings).await?;
        return Ok(Prefilled {
            reused: Some(path.to_owned()),
            ..level
        });
    }
    let db = Database::fresh(setup.backend, setup.postgres_url).await?;
    let mut described = false;
    let result = async {
        let filled = fill(&db, setup, size, timings).await?;
        if let Some(path) = &setup.keep_as {
            Kept::write(path, setup.backend, &db, &filled)?;
            described = true;
        }
        levels(&db, setup, filled, concurrency, duration, empty, timings).await
    }
    .await;
    match &setup.keep_as {
        Some(path) => {
            let name = setup.backend.name();
            let url = infra::redact::url(&db.url);
            if described {
                eprintln!(
                    "{name}: pre-filled database kept: {url} (again with --prefilled-database {})",
                    path.display()
                );
            } else {
                eprintln!("{name}: pre-filled database kept, not described (see the error): {url}");
            }
        }
        None => db.remove().await,
    }
    result
}

/// Fails unless `path` describes a kept pre-filled database of `backend` (checked before a run
/// begins, not after its empty levels; whether the database is still there shows when the
/// levels start).
pub fn check_kept(path: &Path, backend: Backend) -> anyhow::Result<()> {
    Kept::read(path, backend).map(drop)
}

/// Fails if `path` exists: the file a `--keep-database` run would describe its pre-filled
/// database in (checked before a run begins, not after its filling). Replacing it would lose
/// the only record of the database it describes and its master key.
pub fn check_keep_as(path: &Path) -> anyhow::Result<()> {
    // `symlink_metadata`: a dangling link is there too (`create_new` would refuse it).
    anyhow::ensure!(
        std::fs::symlink_metadata(path).is_err(),
        "{} exists (an earlier kept database's description): move it, or choose another --out",
        path.display()
    );
    Ok(())
}

impl Kept {
    fn write(path: &Path, backend: Backend, db: &Database, filled: &Filled) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let kept = Kept {
            backend: backend.name().to_owned(),
            url: db.url.clone(),
            master_key: db.master_key.clone(),
            stored: filled
                .stored
                .as_deref()
                .context("the pre-filled people have no names")?
                .clone(),
            generated: filled.generated.clone(),
            rebuild: filled.rebuild.clone(),
        };
        // A new file (never one already there, nor a link): its mode is set as it is made.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        file.write_all(&serde_json::to_vec(&kept)?)?;
        Ok(())
    }

    fn read(path: &Path, backend: Backend) -> anyhow::Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let kept: Kept = serde_json::from_slice(&text)
            .with_context(|| format!("{} is no kept pre-filled database", path.display()))?;
        let url = infra::database_url::DatabaseUrl::parse(&kept.url)
            .with_context(|| format!("{}: its database URL", path.display()))?;
        anyhow::ensure!(
            kept.backend == backend.name() && url.backend() == backend,
            "{} describes a {} database, not {}",
            path.display(),
            kept.backend,
            backend.name()
        );
        infra::crypto::MasterKey::from_base64(&kept.master_key)
            .with_context(|| format!("{}: its master key", path.display()))?;
        Ok(kept)
    }
}

/// Generates the log into `db` and rebuilds its read models, then settles it.
async fn fill(
    db: &Database,
    setup: &Setup<'_>,
    size: Size,
    timings: &mut Vec<Timing>,
) -> anyhow::Result<Filled> {
    let name = setup.backend.name();
    let store = infra::store::connect(&db.url).await?;
    let keys = Arc::new(generate::Keys::open(store.as_ref(), &db.master_key).await?);
    let naming = Naming::Simulator {
        prefix: format!("p{:06x}-db", rand::random::<u32>() & 0xff_ffff),
    };
    let ratio = size.people as f64 / size.events.max(1) as f64;
    let mut population = Population::new(naming, Mix::PeoplePerEvent(ratio));
    let start = Utc::now()
        - chrono::Duration::milliseconds(generate::EVENT_SPACING_MS * size.events as i64);
    eprintln!(
        "{name}: pre-filling a database: {} events, {} people",
        size.events, size.people
    );
    let began = Instant::now();
    let generated = generate::run(
        store.clone(),
        &mut population,
        size.events,
        setup.appenders,
        start,
        keys,
    )
    .await?;
    eprintln!(
        "  {:.0} events/s; {} people, {} claims, {} session keys",
        generated.events_per_sec, generated.people, generated.claims, generated.session_keys
    );
    replay::readable(&db.url).await?;
    eprintln!("{name}: pre-filled database: rebuilding the read models");
    let rebuild = replay::run(&db.url, store.clone(), 1).await?;
    drop(store);
    eprintln!("{name}: pre-filled database: settling (statistics, vacuum, checkpoint)");
    settle(setup.backend, &db.url).await?;
    timings.push(Timing {
        part: format!("{name}: pre-fill {} events", size.events),
        seconds: began.elapsed().as_secs_f64(),
    });
    Ok(Filled {
        generated,
        rebuild,
        stored: population.stored().map(Arc::new),
    })
}

/// The level on the filled database (and on PostgreSQL the lz4 level after it).
async fn levels(
    db: &Database,
    setup: &Setup<'_>,
    filled: Filled,
    concurrency: usize,
    duration: Duration,
    empty: Option<&LevelResult>,
    timings: &mut Vec<Timing>,
) -> anyhow::Result<Prefilled> {
    let name = setup.backend.name();
    // The level's new people: names of this run's own, apart from the stored ones'.
    let run = format!("p{:06x}", rand::random::<u32>() & 0xff_ffff);
    let mut server = match setup.backend {
        Backend::Postgres => Some(PgServer::connect(&db.url).await?.attributing_wal().await),
        Backend::Sqlite => None,
    };
    let stored = filled.stored;
    eprintln!(
        "{name}: login on the pre-filled database, {concurrency} virtual users, {duration:?}"
    );
    let began = Instant::now();
    let level = level_on(
        setup,
        db,
        server.as_mut(),
        &run,
        stored.clone(),
        concurrency,
        duration,
    )
    .await?;
    timings.push(Timing {
        part: format!("{name}: login on the pre-filled database"),
        seconds: began.elapsed().as_secs_f64(),
    });
    let level_wal_lz4 = match server.as_mut() {
        Some(server) => {
            let began = Instant::now();
            let level = wal_lz4_level(db, setup, server, &run, stored, concurrency, duration).await;
            timings.push(Timing {
                part: format!("{name}: login on the pre-filled database, wal_compression = lz4"),
                seconds: began.elapsed().as_secs_f64(),
            });
            level
                .map_err(|e| eprintln!("{name}: no level with wal_compression = lz4: {e:#}"))
                .ok()
        }
        None => None,
    };
    let empty_logins_per_sec = empty.map(|e| e.logins_per_sec);
    Ok(Prefilled {
        ratio: empty_logins_per_sec
            .filter(|e| *e > 0.0)
            .map(|e| level.logins_per_sec / e),
        generated: filled.generated,
        rebuild: filled.rebuild,
        reused: None,
        level,
        level_wal_lz4,
        empty_logins_per_sec,
    })
}

/// The pre-filled level again after a checkpoint (every page's next change logs a full-page
/// image again), the service's sessions writing those images compressed. Not quite the first
/// level's state: that level's rows are stored now, unvacuumed, and the caches are warm; its
/// new people get names of their own (`run` with a suffix). Refused where the service's role
/// may not set `wal_compression` or the server was built without lz4.
async fn wal_lz4_level(
    db: &Database,
    setup: &Setup<'_>,
    server: &mut PgServer,
    run: &str,
    stored: Option<Arc<generate::StoredPeople>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LevelResult> {
    server.checkpoint().await?;
    let compressed = db.with_session_setting("wal_compression", "lz4");
    eprintln!(
        "{}: the same level with wal_compression = lz4",
        setup.backend.name()
    );
    let run = format!("{run}z");
    level_on(
        setup,
        &compressed,
        Some(server),
        &run,
        stored,
        concurrency,
        duration,
    )
    .await
}

/// One closed-loop login level on a service started for it on `db` and stopped after it; the
/// read models' catch-up after the start is not the level's work.
async fn level_on(
    setup: &Setup<'_>,
    db: &Database,
    server: Option<&mut PgServer>,
    run: &str,
    stored: Option<Arc<generate::StoredPeople>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LevelResult> {
    let service = Service::start(setup.mode, db, setup.sim).await?;
    replay::caught_up(&service.database_url).await?;
    let target = login::Target {
        http: setup.http.clone(),
        service: service.base.clone(),
        sim: setup.sim.base.clone(),
        run: run.to_owned(),
        stored,
    };
    let level = meter::level(
        &service,
        server,
        login::closed_loop(&target, concurrency, duration),
    )
    .await;
    service.stop().await;
    Ok(level)
}

/// Brings the freshly written database to the state a running deployment's is in: planner
/// statistics gathered, dead rows and hint bits dealt with, the load's dirty pages written.
/// Without it the level measures the database digesting the bulk load: a 10M-event PostgreSQL
/// run spent 221 ms of server CPU and 71 KB of WAL per login on autovacuum's first passes and
/// the load's checkpoint, and ran at 0.01× of the empty database.
async fn settle(backend: Backend, url: &str) -> anyhow::Result<()> {
    use sqlx::{Connection, Row};
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            // The schema's own tables only: a bare VACUUM would walk every schema of the server.
            let tables: Vec<String> = sqlx::query(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
                 WHERE schemaname = current_schema()",
            )
            .fetch_all(&mut conn)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
            for table in tables {
                sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
                    .execute(&mut conn)
                    .await?;
            }
            sqlx::query("CHECKPOINT").execute(&mut conn).await?;
        }
        Backend::Sqlite => {
            // The event store's file and the read models' beside it (missing on a database
            // kept by a version before their own file).
            for url in [
                url.to_owned(),
                infra::database_url::sqlite_read_models_url(url),
            ] {
                if !infra::database_url::sqlite_file(&url).is_some_and(|path| path.exists()) {
                    continue;
                }
                let mut conn = sqlx::SqliteConnection::connect(&url).await?;
                sqlx::query("ANALYZE").execute(&mut conn).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut conn)
                    .await?;
            }
        }
    }
    Ok(())
}
