//! `bench`: the benchmark program of issue 6. Starts the real service on a fresh database per
//! backend and measures login load, memory, projection replay, admin queries and the event
//! stream, with a pgbench baseline; writes a JSON file and prints a markdown report.
//!
//! ```sh
//! cargo build --release -p api -p bench && target/release/bench --backend both --scale full
//! ```

mod admin;
mod baseline;
mod cpu;
mod generate;
mod limiter;
mod login;
mod meter;
mod pgbudget;
mod pgproxy;
mod pgserver;
mod prefilled;
mod replay;
mod report;
mod service;
mod soak;
mod stream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, ValueEnum};

use crate::generate::Population;
use crate::pgserver::PgServer;
use crate::prefilled::Size;
use crate::report::{BackendResults, Machine, Results, Timing};
use crate::service::{Backend, Database, Mode, Service, Sim};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "identityd benchmarks: login, memory, replay, admin, stream, pgbench baseline"
)]
struct Args {
    #[arg(long, value_enum, default_value = "both")]
    backend: Backends,
    /// tiny: seconds (smoke test); quick: a few minutes; full: the measurement for BENCHMARKS.md.
    #[arg(long, value_enum, default_value = "quick")]
    scale: Scale,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// PostgreSQL to test on (a fresh schema is created and dropped) and for pgbench.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// The `identityd` binary to run as a child; default: next to this program.
    #[arg(long)]
    identityd: Option<PathBuf>,
    /// Run the service inside this process instead (peak RSS then includes the load generator).
    #[arg(long)]
    in_process: bool,
    /// Also build and query the large log (10M events) on SQLite, not only on PostgreSQL.
    #[arg(long)]
    large_sqlite: bool,
    /// Events in the generated log (overrides the scale's).
    #[arg(long)]
    events: Option<u64>,
    /// Events in the large log (overrides the scale's; 0: none).
    #[arg(long)]
    large_events: Option<u64>,
    /// Events in the pre-filled database of the login level (overrides the scale's; 0: no
    /// such level).
    #[arg(long)]
    prefilled_events: Option<u64>,
    /// People in the pre-filled database (overrides the scale's).
    #[arg(long)]
    prefilled_people: Option<u64>,
    /// Concurrent appenders of the data generator.
    #[arg(long, default_value_t = 4)]
    appenders: usize,
    /// Measure only this part (and the baseline, on PostgreSQL), for short runs.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Keep each backend's databases at the end and print their URLs, credentials hidden (to
    /// profile `identityd projections rebuild` or the queries on the generated log); the
    /// pre-filled one is described in `OUT.prefilled-BACKEND.json` for `--prefilled-database`.
    #[arg(long)]
    keep_database: bool,
    /// Run the pre-filled levels on the database a kept run's `OUT.prefilled-BACKEND.json`
    /// describes instead of filling a new one (one backend, the one it names).
    #[arg(long, value_name = "FILE")]
    prefilled_database: Option<PathBuf>,
    /// `--only pg-budget`: logins counted (after the warm-up).
    #[arg(long, default_value_t = 2000)]
    logins: u64,
    /// `--only pg-budget`: logins before counting (their own service run).
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// `--only pg-budget`: virtual users.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// `--only pg-budget`: run the service with this NATS server, so the relay's part counts.
    #[arg(long)]
    nats_url: Option<String>,
    /// Only a soak: an open-loop login load at half of the peak (found with the scale's
    /// levels) for this many minutes per backend, with the service's RSS, open files and
    /// login p99 sampled each minute; RSS must not grow more than 10 % after the first.
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(1..))]
    soak: Option<u32>,
    /// `--soak`: logins per second, instead of half of the peak found first.
    #[arg(long, requires = "soak")]
    rate: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    /// Login load and memory, with the pgbench baseline on PostgreSQL.
    Login,
    /// Login load on an empty database, then the peak level again on a pre-filled one (no
    /// baseline).
    Prefilled,
    /// Generating the log and rebuilding the read models over it (no baseline).
    Replay,
    /// Everything on the generated log: replay, admin queries, the stream (no login, no
    /// baseline).
    Log,
    /// The login limiter's memory after 100,000 distinct client addresses (a child process,
    /// SQLite; nothing else).
    Limiter,
    /// What a login costs PostgreSQL, counted: statements, round trips, transactions, rows
    /// and WAL per login (`--logins`, `--warmup`, `--concurrency`, `--nats-url`). Needs a
    /// private cluster with pg_stat_statements: see `bench/pg-budget.sh`.
    PgBudget,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backends {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scale {
    Tiny,
    Quick,
    Full,
}

/// How much of everything a scale does.
struct Plan {
    levels: Vec<usize>,
    level: Duration,
    events: u64,
    /// The large log for the second admin measurement (PostgreSQL, or both with --large-sqlite).
    large_events: Option<u64>,
    replay_runs: usize,
    admin_requests: usize,
    /// The database the pre-filled login level runs on.
    prefilled: Size,
}

impl Plan {
    fn of(scale: Scale) -> Self {
        match scale {
            Scale::Tiny => Self {
                levels: vec![1, 8],
                level: Duration::from_secs(1),
                events: 10_000,
                large_events: None,
                replay_runs: 1,
                admin_requests: 50,
                prefilled: Size {
                    people: 1_000,
                    events: 10_000,
                },
            },
            Scale::Quick => Self {
                levels: vec![1, 8, 32, 64],
                level: Duration::from_secs(3),
                events: 200_000,
                large_events: None,
                replay_runs: 3,
                admin_requests: 300,
                prefilled: Size {
                    people: 20_000,
                    events: 200_000,
                },
            },
            Scale::Full => Self {
                levels: vec![1, 8, 32, 64],
                level: Duration::from_secs(10),
                events: 1_000_000,
                large_events: Some(10_000_000),
                replay_runs: 3,
                admin_requests: 1000,
                prefilled: Size {
                    people: 1_000_000,
                    events: 10_000_000,
                },
            },
        }
    }
}

/// identityd's allocator (see `api/src/main.rs`): the rebuild runs in this process, and under
/// glibc's malloc the Rust allocations of its SQLite worker threads and tokio's contended for
/// the arenas' locks (SQLite's own allocations stay on glibc's malloc in both processes).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut plan = Plan::of(args.scale);
    plan.events = args.events.unwrap_or(plan.events);
    if let Some(large) = args.large_events {
        plan.large_events = (large > 0).then_some(large);
    }
    plan.prefilled.events = args.prefilled_events.unwrap_or(plan.prefilled.events);
    plan.prefilled.people = args.prefilled_people.unwrap_or(plan.prefilled.people);
    let backends: Vec<Backend> = match args.backend {
        Backends::Sqlite => vec![Backend::Sqlite],
        Backends::Postgres => vec![Backend::Postgres],
        Backends::Both => vec![Backend::Sqlite, Backend::Postgres],
    };
    anyhow::ensure!(
        args.prefilled_database.is_none() || backends.len() == 1,
        "--prefilled-database takes one backend's database: add --backend sqlite or postgres"
    );
    let prefilled_part = args.soak.is_none()
        && matches!(args.only, None | Some(Only::Prefilled))
        && plan.prefilled.events > 0;
    if let (Some(path), [backend]) = (&args.prefilled_database, backends.as_slice()) {
        anyhow::ensure!(
            prefilled_part,
            "--prefilled-database is for the pre-filled part: --only prefilled or no --only, \
             no --soak, no --prefilled-events 0"
        );
        anyhow::ensure!(
            *path != args.out,
            "--out would overwrite the kept database's description"
        );
        prefilled::check_kept(path, *backend)?;
    }
    if args.keep_database && prefilled_part && args.prefilled_database.is_none() {
        for backend in &backends {
            prefilled::check_keep_as(&prefilled_description(&args.out, *backend))?;
        }
    }
    let mode = if args.in_process {
        Mode::InProcess
    } else {
        let binary = match &args.identityd {
            Some(path) => path.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("no directory around this program")?
                .join("identityd"),
        };
        anyhow::ensure!(
            binary.exists(),
            "{} not found: build it first (`cargo build --release -p api -p bench`), pass --identityd PATH, or use --in-process",
            binary.display()
        );
        Mode::Child(binary)
    };
    if args.only == Some(Only::Limiter) {
        let Mode::Child(binary) = &mode else {
            anyhow::bail!("--only limiter measures a child process: drop --in-process");
        };
        let measured = limiter::run(binary, 100_000, 32).await?;
        std::fs::write(&args.out, serde_json::to_string_pretty(&measured)?)?;
        println!("{}", limiter::markdown(&measured));
        return Ok(());
    }
    if args.only == Some(Only::PgBudget) {
        let options = pgbudget::Options {
            logins: args.logins,
            warmup: args.warmup,
            concurrency: args.concurrency,
            nats_url: args.nats_url.clone(),
        };
        println!(
            "{}",
            pgbudget::run(&args.postgres_url, &mode, &options).await?
        );
        return Ok(());
    }
    if let Some(minutes) = args.soak {
        let options = soak::Options {
            minutes,
            rate: args.rate,
            levels: plan.levels.clone(),
            level: plan.level,
            postgres_url: args.postgres_url.clone(),
        };
        let report = soak::run(&backends, &mode, &options).await?;
        std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", args.out.display()))?;
        println!("{}", soak::markdown(&report));
        eprintln!("results written to {}", args.out.display());
        return Ok(());
    }
    let uses_postgres = backends.contains(&Backend::Postgres);
    let began = Instant::now();
    let started_at = Utc::now().to_rfc3339();
    let mut timings = Vec::new();
    let machine = Machine::probe(uses_postgres.then_some(args.postgres_url.as_str())).await;

    let mut baseline = None;
    if uses_postgres && matches!(args.only, None | Some(Only::Login)) {
        eprintln!(
            "baseline: pgbench one-row INSERT at {:?} clients",
            plan.levels
        );
        let result = timed(
            &mut timings,
            "baseline (pgbench)",
            baseline::run(&args.postgres_url, &plan.levels, plan.level),
        )
        .await;
        match result {
            Ok(levels) => baseline = Some(levels),
            Err(e) => eprintln!("baseline failed: {e:#}"),
        }
    }

    let mut results = Vec::new();
    for backend in backends {
        let mut out = BackendResults::new(backend);
        if let Err(e) = run_backend(&args, &plan, &mode, &mut out, &mut timings).await {
            eprintln!("{}: {e:#}", backend.name());
            out.failures.push(format!("{e:#}"));
        }
        results.push(out);
    }

    let targets = report::targets(&results, baseline.as_deref());
    let results = Results {
        started_at,
        scale: args
            .scale
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default(),
        service: match mode {
            Mode::Child(_) => "child process".into(),
            Mode::InProcess => "in process".into(),
        },
        machine,
        baseline,
        backends: results,
        targets,
        timings,
        total_seconds: began.elapsed().as_secs_f64(),
    };
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", report::markdown(&results));
    eprintln!("results written to {}", args.out.display());
    Ok(())
}

/// Everything measured on one backend, in order: login load (and memory) on a fresh
/// database, then the generated log (replay, admin, stream), then the large log; then the
/// login level on a pre-filled database (a database of its own).
async fn run_backend(
    args: &Args,
    plan: &Plan,
    mode: &Mode,
    out: &mut BackendResults,
    timings: &mut Vec<Timing>,
) -> anyhow::Result<()> {
    let db = Database::fresh(out.backend, &args.postgres_url).await?;
    let result = measure(args, plan, mode, &db, out, timings).await;
    if args.keep_database {
        eprintln!(
            "{}: database kept: {}",
            out.backend.name(),
            infra::redact::url(&db.url)
        );
    } else {
        db.remove().await;
    }
    result?;
    if matches!(args.only, None | Some(Only::Prefilled)) && plan.prefilled.events > 0 {
        let sim = Sim::start().await?;
        let http = login::http_client()?;
        let setup = prefilled::Setup {
            backend: out.backend,
            postgres_url: &args.postgres_url,
            mode,
            sim: &sim,
            http: &http,
            appenders: args.appenders,
            keep_as: args
                .keep_database
                .then(|| prefilled_description(&args.out, out.backend)),
            reuse: args.prefilled_database.as_deref(),
        };
        // The empty database's busiest level, at the same number of virtual users.
        let empty = out.peak_login();
        let concurrency = empty
            .map(|p| p.concurrency)
            .or(plan.levels.last().copied())
            .unwrap_or(1);
        let level = prefilled::run(
            &setup,
            plan.prefilled,
            concurrency,
            plan.level,
            empty,
            timings,
        )
        .await?;
        out.prefilled = Some(level);
    }
    Ok(())
}

/// Where `--keep-database` describes a backend's pre-filled database: beside the results.
fn prefilled_description(out: &std::path::Path, backend: Backend) -> PathBuf {
    out.with_extension(format!("prefilled-{}.json", backend.name()))
}

async fn measure(
    args: &Args,
    plan: &Plan,
    mode: &Mode,
    db: &Database,
    out: &mut BackendResults,
    timings: &mut Vec<Timing>,
) -> anyhow::Result<()> {
    let name = out.backend.name();
    let sim = Sim::start().await?;
    let http = login::http_client()?;

    if matches!(args.only, None | Some(Only::Login) | Some(Only::Prefilled)) {
        // Login load, on a fresh database, with the memory it takes.
        let service = Service::start(mode, db, &sim).await?;
        let mut server = match out.backend {
            Backend::Postgres => Some(PgServer::connect(&db.url).await?.attributing_wal().await),
            Backend::Sqlite => None,
        };
        let target = login::Target {
            http: http.clone(),
            service: service.base.clone(),
            sim: sim.base.clone(),
            run: format!("b{:06x}", rand::random::<u32>() & 0xff_ffff),
            stored: None,
        };
        let login_began = Instant::now();
        for &c in &plan.levels {
            eprintln!("{name}: login, {c} virtual users, {:?}", plan.level);
            let level = login::closed_loop(&target, c, plan.level);
            out.login
                .push(meter::level(&service, server.as_mut(), level).await);
        }
        if let Some(peak) = out.peak_login().map(|p| p.logins_per_sec) {
            let rate = 0.7 * peak;
            eprintln!("{name}: login, open loop at {rate:.0}/s (70 % of peak)");
            let level = login::paced(&target, rate, plan.level);
            out.paced = Some(meter::level(&service, server.as_mut(), level).await);
        }
        drop(server);
        out.memory = Some(service.memory());
        timings.push(Timing {
            part: format!("{name}: login + memory"),
            seconds: login_began.elapsed().as_secs_f64(),
        });
        service.stop().await;
    }
    if matches!(args.only, Some(Only::Login) | Some(Only::Prefilled)) {
        return Ok(());
    }

    // The generated log: replay, then admin queries and the stream through the service.
    let store = infra::store::connect(&db.url).await?;
    let keys = Arc::new(generate::Keys::open(store.as_ref(), &db.master_key).await?);
    let mut population = Population::default();
    let total = plan.large_events.unwrap_or(plan.events).max(plan.events);
    let start =
        Utc::now() - chrono::Duration::milliseconds(generate::EVENT_SPACING_MS * total as i64);
    eprintln!("{name}: generating {} events", plan.events);
    let generated = timed(
        timings,
        &format!("{name}: generate {}", plan.events),
        generate::run(
            store.clone(),
            &mut population,
            plan.events,
            args.appenders,
            start,
            keys.clone(),
        ),
    )
    .await?;
    eprintln!("  {:.0} events/s", generated.events_per_sec);
    out.generated.push(generated);
    replay::readable(&db.url).await?;
    eprintln!("{name}: replay ×{}", plan.replay_runs);
    let replay = timed(
        timings,
        &format!("{name}: replay"),
        replay::run(&db.url, store.clone(), plan.replay_runs),
    )
    .await?;
    eprintln!("  {:.0} events/s", replay.events_per_sec);
    out.replay = Some(replay);
    if args.only == Some(Only::Replay) {
        return Ok(());
    }
    let sample = population.sample(start, 1000);
    let service = Service::start(mode, db, &sim).await?;
    admin_at(&http, &service, &sample, plan.admin_requests, out, timings).await;
    eprintln!("{name}: /v1/events catch-up");
    let stream = timed(
        timings,
        &format!("{name}: stream"),
        stream::run(&http, &service.base),
    )
    .await;
    service.stop().await;
    match stream {
        Ok(stream) => out.stream = Some(stream),
        Err(e) => out.failures.push(format!("stream: {e:#}")),
    }

    // The large log: more of the same, read models rebuilt, admin queries again.
    let large = plan
        .large_events
        .filter(|_| out.backend == Backend::Postgres || args.large_sqlite);
    if let Some(large) = large {
        let more = large.saturating_sub(plan.events);
        eprintln!("{name}: generating {more} more events");
        let generated = timed(
            timings,
            &format!("{name}: generate {more}"),
            generate::run(
                store.clone(),
                &mut population,
                more,
                args.appenders,
                start,
                keys.clone(),
            ),
        )
        .await?;
        eprintln!("  {:.0} events/s", generated.events_per_sec);
        out.generated.push(generated);
        replay::readable(&db.url).await?;
        eprintln!("{name}: rebuilding the read models over the large log");
        let replay = timed(
            timings,
            &format!("{name}: replay (large)"),
            replay::run(&db.url, store.clone(), 1),
        )
        .await?;
        eprintln!("  {:.0} events/s", replay.events_per_sec);
        out.replay_large = Some(replay);
        let sample = population.sample(start, 1000);
        let service = Service::start(mode, db, &sim).await?;
        admin_at(&http, &service, &sample, plan.admin_requests, out, timings).await;
        service.stop().await;
    }
    Ok(())
}

/// Admin queries once the read models have caught up with the log.
async fn admin_at(
    http: &reqwest::Client,
    service: &Service,
    sample: &generate::Sample,
    requests: usize,
    out: &mut BackendResults,
    timings: &mut Vec<Timing>,
) {
    let name = out.backend.name();
    let head = match replay::caught_up(&service.database_url).await {
        Ok(head) => head,
        Err(e) => {
            out.failures
                .push(format!("admin: read models did not catch up: {e:#}"));
            return;
        }
    };
    eprintln!("{name}: admin queries at {head} events");
    let admin = timed(
        timings,
        &format!("{name}: admin at {head}"),
        admin::run(http, &service.base, sample, head, requests),
    )
    .await;
    match admin {
        Ok(admin) => {
            eprintln!(
                "  user page p99 {:.2} ms, app/day page p99 {:.2} ms",
                admin.user_page.p99_ms, admin.global_page.p99_ms
            );
            out.admin.push(admin);
        }
        Err(e) => out.failures.push(format!("admin at {head}: {e:#}")),
    }
}

async fn timed<T>(timings: &mut Vec<Timing>, part: &str, work: impl Future<Output = T>) -> T {
    let began = Instant::now();
    let result = work.await;
    timings.push(Timing {
        part: part.to_owned(),
        seconds: began.elapsed().as_secs_f64(),
    });
    result
}
