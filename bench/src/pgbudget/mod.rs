//! `--only pg-budget`: what one login (`POST /v1/wechat/login` + `GET /v1/me`, as the login
//! part drives them) costs PostgreSQL, counted rather than timed: statements by text with
//! calls, rows, time and WAL (`pg_stat_statements`), round trips (a counting proxy, see
//! `pgproxy`), transactions (`pg_stat_database`), WAL bytes (`pg_current_wal_lsn`, `pg_stat_wal`)
//! and rows written per table (`pg_stat_user_tables`). Everything the service does in the
//! window counts: the login path, the projection runners and, with `--nats-url`, the relay.
//!
//! Meant for a private cluster (`bench/pg-budget.sh` makes one): it needs
//! `shared_preload_libraries = pg_stat_statements` and a superuser at `--postgres-url`, and
//! creates (then drops) a role and a database of its own. It resets nothing: every figure is
//! a difference of two snapshots.
//!
//! Windows, each ending with the service stopped so its backends have flushed their
//! statistics: a warm-up (its own service run, not counted); an empty run (start, catch up,
//! stop: the fixed cost of a service run); the measured run (start, the logins, catch up,
//! stop). Per login = (measured − empty) / logins.

mod observer;
mod report;
mod snapshot;
mod statements;

use std::str::FromStr;

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use self::observer::Observer;
use crate::login;
use crate::pgproxy::Proxy;
use crate::service::{Database, Mode, Service, Sim};

pub struct Options {
    pub logins: u64,
    pub warmup: u64,
    pub concurrency: usize,
    pub nats_url: Option<String>,
}

/// Runs the measurement and returns the markdown report.
pub async fn run(observer_url: &str, mode: &Mode, options: &Options) -> anyhow::Result<String> {
    let Mode::Child(_) = mode else {
        bail!("--only pg-budget runs the service as a child: drop --in-process");
    };
    let mut conn = PgConnection::connect(observer_url)
        .await
        .context("connecting to PostgreSQL (--postgres-url)")?;
    let preload: String = sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
        .fetch_one(&mut conn)
        .await?;
    if !preload.contains("pg_stat_statements") {
        bail!(
            "--only pg-budget needs a cluster with shared_preload_libraries = pg_stat_statements \
             (bench/pg-budget.sh makes a private one)"
        );
    }
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut conn)
        .await?;
    let name = format!("budget_{:08x}", rand::random::<u32>());
    sqlx::query(&format!("CREATE ROLE {name} LOGIN"))
        .execute(&mut conn)
        .await?;
    let created = sqlx::query(&format!("CREATE DATABASE {name} OWNER {name}"))
        .execute(&mut conn)
        .await;
    // A new connection: the old one's statistics (CREATE DATABASE writes much WAL) are
    // flushed as it closes, before the first snapshot.
    conn.close().await?;
    let conn = PgConnection::connect(observer_url).await?;
    let base = PgConnectOptions::from_str(observer_url)?;
    let mut observer = Observer {
        conn,
        service_db: base.clone().database(&name),
        role: name.clone(),
        database: name.clone(),
        observer_xacts: 0,
        nats: options.nats_url.is_some(),
    };
    let result = match created {
        Ok(_) => measure(&mut observer, &base, mode, options).await,
        Err(e) => Err(e.into()),
    };
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut observer.conn)
        .await;
    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
        .execute(&mut observer.conn)
        .await;
    result
}

async fn measure(
    observer: &mut Observer,
    base: &PgConnectOptions,
    mode: &Mode,
    options: &Options,
) -> anyhow::Result<String> {
    let host = base.get_host();
    if host.starts_with('/') {
        bail!("--postgres-url must name a TCP host (the proxy forwards TCP), not {host}");
    }
    let proxy = Proxy::start(format!("{host}:{}", base.get_port())).await?;
    let db = Database::existing(format!(
        "postgres://{role}@127.0.0.1:{port}/{database}?sslmode=disable",
        role = observer.role,
        port = proxy.port,
        database = observer.database,
    ));
    let sim = Sim::start().await?;
    let http = login::http_client()?;
    let env: Vec<(&str, &str)> = options
        .nats_url
        .as_deref()
        .map(|url| vec![("IDENTITY_NATS_URL", url)])
        .unwrap_or_default();
    let run = format!("g{:06x}", rand::random::<u32>() & 0xff_ffff);

    // One service run: start, `logins` logins, wait for the read models, stop.
    let window = |logins: u64, tag: &'static str| {
        let (http, sim, db, env, run) = (&http, &sim, &db, &env, &run);
        async move {
            let service = Service::start_with(mode, db, sim, env).await?;
            let target = login::Target {
                http: http.clone(),
                service: service.base.clone(),
                sim: sim.base.clone(),
                run: run.clone(),
                stored: None,
            };
            let level = if logins > 0 {
                eprintln!(
                    "pg-budget: {tag}: {logins} logins, {} virtual users",
                    options.concurrency
                );
                let level = login::counted(&target, options.concurrency, logins, tag).await;
                eprintln!(
                    "  {} logins ({} new users) in {:.1} s, {} errors",
                    level.logins, level.new_users, level.seconds, level.errors
                );
                Some(level)
            } else {
                eprintln!("pg-budget: {tag}: start, catch up, stop");
                None
            };
            anyhow::Ok((service, level))
        }
    };

    let (service, _) = window(options.warmup, "warm-up").await?;
    observer.wait_caught_up().await?;
    service.stop().await;
    let a = observer.snapshot(proxy.counters.snapshot()).await?;
    let (service, _) = window(0, "empty run").await?;
    observer.wait_caught_up().await?;
    service.stop().await;
    let b = observer.snapshot(proxy.counters.snapshot()).await?;
    let (service, level) = window(options.logins, "measured").await?;
    observer.wait_caught_up().await?;
    service.stop().await;
    let c = observer.snapshot(proxy.counters.snapshot()).await?;
    let level = level.context("no measured level")?;
    if level.errors > 0 {
        eprintln!("  errors: {:?}", level.error_samples);
    }

    let fixed = b.minus(&a);
    let measured = c.minus(&b);
    let n = level.logins as f64;
    let per = measured.per(&fixed, n);
    Ok(report::report(options, &level, &fixed, &measured, &per, n))
}
