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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

use crate::login;
use crate::pgproxy::{Counts, Proxy};
use crate::service::{Database, Mode, Service, Sim};

pub struct Options {
    pub logins: u64,
    pub warmup: u64,
    pub concurrency: usize,
    pub nats_url: Option<String>,
}

/// One statement's counters (`pg_stat_statements`).
#[derive(Debug, Clone, Default)]
struct Statement {
    query: String,
    /// Sent by the client (false: run inside a function, such as `append_events`; its
    /// calls, rows and WAL are already in the calling statement's).
    toplevel: bool,
    calls: f64,
    rows: f64,
    ms: f64,
    wal_bytes: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Writes {
    inserted: f64,
    updated: f64,
    hot_updated: f64,
    deleted: f64,
}

/// Everything counted at one moment, or a difference of two such moments.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    statements: HashMap<(i64, bool), Statement>,
    commits: f64,
    rollbacks: f64,
    /// Transaction ids handed out: the transactions that wrote.
    xids: f64,
    wal_lsn: f64,
    wal_records: f64,
    wal_fpi: f64,
    /// WAL writes and syncs (fsync/fdatasync) to disk, by every process: the sync count is
    /// the number of durable commits the server paid for, after its own grouping.
    wal_writes: f64,
    wal_syncs: f64,
    tables: BTreeMap<String, Writes>,
    proxy: Counts,
    /// Transactions the observer itself ran on the service's database so far.
    observer_xacts: u64,
}

impl Snapshot {
    /// `self − earlier`, the observer's own transactions taken out of the commits.
    fn minus(&self, earlier: &Self) -> Self {
        let mut statements = HashMap::new();
        for (id, s) in &self.statements {
            let e = earlier.statements.get(id).cloned().unwrap_or_default();
            statements.insert(
                *id,
                Statement {
                    query: s.query.clone(),
                    toplevel: s.toplevel,
                    calls: s.calls - e.calls,
                    rows: s.rows - e.rows,
                    ms: s.ms - e.ms,
                    wal_bytes: s.wal_bytes - e.wal_bytes,
                },
            );
        }
        let mut tables = BTreeMap::new();
        for (name, w) in &self.tables {
            let e = earlier.tables.get(name).copied().unwrap_or_default();
            tables.insert(
                name.clone(),
                Writes {
                    inserted: w.inserted - e.inserted,
                    updated: w.updated - e.updated,
                    hot_updated: w.hot_updated - e.hot_updated,
                    deleted: w.deleted - e.deleted,
                },
            );
        }
        let observer = (self.observer_xacts - earlier.observer_xacts) as f64;
        Self {
            statements,
            commits: self.commits - earlier.commits - observer,
            rollbacks: self.rollbacks - earlier.rollbacks,
            xids: self.xids - earlier.xids,
            wal_lsn: self.wal_lsn - earlier.wal_lsn,
            wal_records: self.wal_records - earlier.wal_records,
            wal_fpi: self.wal_fpi - earlier.wal_fpi,
            wal_writes: self.wal_writes - earlier.wal_writes,
            wal_syncs: self.wal_syncs - earlier.wal_syncs,
            tables,
            proxy: self.proxy.minus(&earlier.proxy),
            observer_xacts: 0,
        }
    }

    /// `(self − fixed) / n`, field by field.
    fn per(&self, fixed: &Self, n: f64) -> Self {
        let mut statements = HashMap::new();
        for (id, s) in &self.statements {
            let f = fixed.statements.get(id).cloned().unwrap_or_default();
            statements.insert(
                *id,
                Statement {
                    query: s.query.clone(),
                    toplevel: s.toplevel,
                    calls: (s.calls - f.calls) / n,
                    rows: (s.rows - f.rows) / n,
                    ms: (s.ms - f.ms) / n,
                    wal_bytes: (s.wal_bytes - f.wal_bytes) / n,
                },
            );
        }
        let mut tables = BTreeMap::new();
        for (name, w) in &self.tables {
            let f = fixed.tables.get(name).copied().unwrap_or_default();
            tables.insert(
                name.clone(),
                Writes {
                    inserted: (w.inserted - f.inserted) / n,
                    updated: (w.updated - f.updated) / n,
                    hot_updated: (w.hot_updated - f.hot_updated) / n,
                    deleted: (w.deleted - f.deleted) / n,
                },
            );
        }
        Self {
            statements,
            commits: (self.commits - fixed.commits) / n,
            rollbacks: (self.rollbacks - fixed.rollbacks) / n,
            xids: (self.xids - fixed.xids) / n,
            wal_lsn: (self.wal_lsn - fixed.wal_lsn) / n,
            wal_records: (self.wal_records - fixed.wal_records) / n,
            wal_fpi: (self.wal_fpi - fixed.wal_fpi) / n,
            wal_writes: (self.wal_writes - fixed.wal_writes) / n,
            wal_syncs: (self.wal_syncs - fixed.wal_syncs) / n,
            tables,
            proxy: Counts::default(),
            observer_xacts: 0,
        }
    }
}

/// The observer: a superuser on the cluster, outside the service's role and database.
struct Observer {
    /// Connected to `--postgres-url`'s database (not the service's).
    conn: PgConnection,
    /// The service's database, as the superuser.
    service_db: PgConnectOptions,
    role: String,
    database: String,
    observer_xacts: u64,
    nats: bool,
}

impl Observer {
    async fn snapshot(&mut self, proxy: Counts) -> anyhow::Result<Snapshot> {
        self.wait_idle().await?;
        let rows = sqlx::query(
            "SELECT queryid, toplevel, query, calls, rows, total_exec_time + total_plan_time AS ms, \
                    wal_bytes::float8 AS wal_bytes \
             FROM pg_stat_statements \
             WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = $1) \
               AND dbid = (SELECT oid FROM pg_database WHERE datname = $2)",
        )
        .bind(&self.role)
        .bind(&self.database)
        .fetch_all(&mut self.conn)
        .await
        .context("reading pg_stat_statements")?;
        let mut statements = HashMap::new();
        for row in rows {
            let toplevel: bool = row.try_get("toplevel")?;
            statements.insert(
                (row.try_get::<i64, _>("queryid")?, toplevel),
                Statement {
                    query: row.try_get("query")?,
                    toplevel,
                    calls: row.try_get::<i64, _>("calls")? as f64,
                    rows: row.try_get::<i64, _>("rows")? as f64,
                    ms: row.try_get("ms")?,
                    wal_bytes: row.try_get("wal_bytes")?,
                },
            );
        }
        let row = sqlx::query(
            "SELECT d.xact_commit, d.xact_rollback, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS lsn, \
                    pg_snapshot_xmax(pg_current_snapshot())::text::float8 AS xids, \
                    w.wal_records, w.wal_fpi, w.wal_write, w.wal_sync \
             FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = $1",
        )
        .bind(&self.database)
        .fetch_one(&mut self.conn)
        .await?;
        let mut snapshot = Snapshot {
            statements,
            commits: row.try_get::<i64, _>("xact_commit")? as f64,
            rollbacks: row.try_get::<i64, _>("xact_rollback")? as f64,
            wal_lsn: row.try_get("lsn")?,
            xids: row.try_get("xids")?,
            wal_records: row.try_get::<i64, _>("wal_records")? as f64,
            wal_fpi: row.try_get::<i64, _>("wal_fpi")? as f64,
            wal_writes: row.try_get::<i64, _>("wal_write")? as f64,
            wal_syncs: row.try_get::<i64, _>("wal_sync")? as f64,
            proxy,
            ..Snapshot::default()
        };
        // Rows written per table: only readable from inside the service's database. This
        // transaction is flushed into the next window's commits, which take it out again.
        let mut conn = self.service_db.connect().await?;
        self.observer_xacts += 1;
        let rows = sqlx::query(
            "SELECT relname::text AS relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del \
             FROM pg_stat_user_tables",
        )
        .fetch_all(&mut conn)
        .await?;
        conn.close().await?;
        for row in rows {
            snapshot.tables.insert(
                row.try_get("relname")?,
                Writes {
                    inserted: row.try_get::<i64, _>("n_tup_ins")? as f64,
                    updated: row.try_get::<i64, _>("n_tup_upd")? as f64,
                    hot_updated: row.try_get::<i64, _>("n_tup_hot_upd")? as f64,
                    deleted: row.try_get::<i64, _>("n_tup_del")? as f64,
                },
            );
        }
        snapshot.observer_xacts = self.observer_xacts;
        Ok(snapshot)
    }

    /// Waits until no backend is left on the service's database (the service stopped, the
    /// observer's own connections closed): a backend flushes its statistics as it exits.
    async fn wait_idle(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&self.database)
                    .fetch_one(&mut self.conn)
                    .await?;
            if n == 0 {
                break;
            }
            if Instant::now() > deadline {
                let left: Vec<String> = sqlx::query_scalar(
                    "SELECT concat_ws(' ', pid, usename, backend_type, state, wait_event_type, \
                            wait_event, left(query, 120)) \
                     FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&self.database)
                .fetch_all(&mut self.conn)
                .await?;
                bail!(
                    "{n} backends still on {} after 60 s: {left:?}",
                    self.database
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The shared statistics are flushed in the exit path; leave it a moment to finish, and
        // the WAL writer (which reports its writes and syncs about once a second) time to report.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok(())
    }

    /// Waits until every projection (and the relay, if on) has applied the whole log.
    async fn wait_caught_up(&mut self) -> anyhow::Result<()> {
        let mut conn = self.service_db.connect().await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let sql = if self.nats {
            "SELECT (SELECT COALESCE(MAX(position), 0) FROM events) <= \
                    LEAST((SELECT MIN(position) FROM projection_checkpoints), \
                          (SELECT MIN(position) FROM relay_checkpoints))"
        } else {
            "SELECT (SELECT COALESCE(MAX(position), 0) FROM events) <= \
                    (SELECT MIN(position) FROM projection_checkpoints)"
        };
        let result = loop {
            self.observer_xacts += 1;
            let done: Option<bool> = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
            if done == Some(true) {
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!("the read models did not catch up in 300 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        conn.close().await?;
        result
    }
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
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
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
    Ok(report(options, &level, &fixed, &measured, &per, n))
}

/// The statement's kind (first keyword) and the table it works on, for grouping.
fn kind_and_table(query: &str) -> (String, String) {
    let words: Vec<String> = query
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('"').to_owned())
        .collect();
    let kind = words.first().map(|w| w.to_uppercase()).unwrap_or_default();
    let after = |keyword: &str| {
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case(keyword))
            .and_then(|i| words.get(i + 1))
            .cloned()
    };
    let table = match kind.as_str() {
        "INSERT" => after("INTO"),
        "UPDATE" => words.get(1).cloned(),
        "DELETE" | "SELECT" | "WITH" => after("FROM"),
        _ => None,
    };
    let table = match table {
        Some(table) => table,
        None if query.contains("advisory") => "(advisory lock)".into(),
        None if query.contains("pg_notify") => "(pg_notify)".into(),
        None => String::new(),
    };
    (kind, table)
}

/// Who sends a statement, from its text: the login and `/v1/me` themselves, or the runners
/// that follow the log (projections, the relay).
fn area(query: &str) -> &'static str {
    let (kind, table) = kind_and_table(query);
    if table.starts_with("relay_") {
        "relay"
    } else if table.starts_with("projection_")
        || table.contains("_g")
        || table == "(advisory lock)"
        || query.contains("WHERE position >")
        || matches!(kind.as_str(), "BEGIN" | "COMMIT" | "ROLLBACK")
    {
        "runners"
    } else if table.is_empty() && kind != "SELECT" {
        "other"
    } else {
        "login + /v1/me"
    }
}

/// The text with every list of placeholders `($1, $2), ($3, $4)…` shown as one `(…)`, so
/// multi-row inserts of any size read as one statement.
fn collapse(query: &str) -> String {
    let text = query.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("($") {
        let (head, tail) = rest.split_at(start);
        out.push_str(head);
        let end = tail.find(')').map_or(tail.len(), |e| e + 1);
        let inside = &tail[1..end.saturating_sub(1).max(1)];
        if inside
            .chars()
            .all(|c| c == '$' || c == ',' || c == ' ' || c.is_ascii_digit())
        {
            if !out.ends_with("(…), ") && !out.ends_with("(…),") {
                out.push_str("(…)");
            } else {
                // `(…), ` already written: drop the separator just added.
                let trimmed = out.trim_end_matches(' ').trim_end_matches(',').len();
                out.truncate(trimmed);
            }
            rest = &tail[end..];
        } else {
            out.push('(');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn report(
    options: &Options,
    level: &login::LevelResult,
    fixed: &Snapshot,
    measured: &Snapshot,
    per: &Snapshot,
    n: f64,
) -> String {
    let mut out = String::new();
    let top: Vec<&Statement> = per.statements.values().filter(|s| s.toplevel).collect();
    let sum = |f: &dyn Fn(&Statement) -> f64, of: &dyn Fn(&Statement) -> bool| -> f64 {
        top.iter().filter(|s| of(s)).map(|s| f(s)).sum()
    };
    let all = |_: &Statement| true;
    let control = |s: &Statement| {
        matches!(
            kind_and_table(&s.query).0.as_str(),
            "BEGIN" | "COMMIT" | "ROLLBACK"
        )
    };
    let trips = |c: &Counts| c.round_trips() as f64;
    let per_login = |m: u64, f: u64| (m as f64 - f as f64) / n;
    let (mp, fp) = (&measured.proxy, &fixed.proxy);
    let _ = writeln!(
        out,
        "## PostgreSQL cost per login\n\n{} logins ({} by new users, {} errors) by {} virtual \
         users after {} warm-up logins, NATS relay {}; per login = (measured run − empty \
         run) / logins.\n",
        level.logins,
        level.new_users,
        level.errors,
        options.concurrency,
        options.warmup,
        if options.nats_url.is_some() {
            "on"
        } else {
            "off"
        }
    );
    let _ = writeln!(out, "| per login | count |\n|---|---:|");
    let mut line = |what: &str, v: f64| {
        let _ = writeln!(out, "| {what} | {v:.2} |");
    };
    line(
        "statements sent (pg_stat_statements, top level)",
        sum(&|s| s.calls, &all),
    );
    for a in ["login + /v1/me", "runners", "relay", "other"] {
        let v = sum(&|s| s.calls, &|s| area(&s.query) == a);
        if v.abs() >= 0.005 {
            line(&format!("  {a}"), v);
        }
    }
    line(
        "  of which BEGIN / COMMIT / ROLLBACK",
        sum(&|s| s.calls, &control),
    );
    line("round trips (proxy)", (trips(mp) - trips(fp)) / n);
    line(
        "  statements run (extended protocol)",
        per_login(mp.executes, fp.executes),
    );
    line(
        "  simple queries",
        per_login(mp.simple_queries, fp.simple_queries),
    );
    line(
        "  statements prepared (Parse/Describe)",
        per_login(mp.prepares, fp.prepares),
    );
    line(
        "  statements closed (dropped from sqlx's cache)",
        per_login(mp.closes, fp.closes),
    );
    line(
        "  pings (sqlx: pool checkout and return)",
        per_login(mp.pings, fp.pings),
    );
    line("transactions committed", per.commits);
    line("  of which wrote (transaction ids)", per.xids);
    line("transactions rolled back", per.rollbacks);
    line("rows returned or affected", sum(&|s| s.rows, &all));
    line("WAL bytes (pg_current_wal_lsn)", per.wal_lsn);
    line(
        "WAL bytes (pg_stat_statements)",
        sum(&|s| s.wal_bytes, &all),
    );
    for a in ["login + /v1/me", "runners", "relay"] {
        let v = sum(&|s| s.wal_bytes, &|s| area(&s.query) == a);
        if v.abs() >= 0.5 {
            line(&format!("  {a}"), v);
        }
    }
    line("WAL records", per.wal_records);
    line("WAL full-page images", per.wal_fpi);
    line("WAL writes (pg_stat_wal)", per.wal_writes);
    line("WAL syncs to disk (pg_stat_wal)", per.wal_syncs);
    line("statement time, ms (plan + execute)", sum(&|s| s.ms, &all));
    let calls = |s: &Snapshot| -> f64 {
        s.statements
            .values()
            .filter(|s| s.toplevel)
            .map(|s| s.calls)
            .sum()
    };
    let _ = writeln!(
        out,
        "\nEmpty run (start, catch up, stop; subtracted above): {:.0} statements, {} round \
         trips, {:.0} transactions, {:.0} WAL bytes. Measured run: {:.0} statements, {} round \
         trips, {:.0} transactions, {:.0} WAL bytes, {} connections.\n",
        calls(fixed),
        fixed.proxy.round_trips(),
        fixed.commits,
        fixed.wal_lsn,
        calls(measured),
        measured.proxy.round_trips(),
        measured.commits,
        measured.wal_lsn,
        measured.proxy.connections,
    );

    // By who sends them, kind and table.
    let mut groups: BTreeMap<(&str, String, String), Statement> = BTreeMap::new();
    for s in &top {
        let (kind, table) = kind_and_table(&s.query);
        let g = groups.entry((area(&s.query), kind, table)).or_default();
        g.calls += s.calls;
        g.rows += s.rows;
        g.ms += s.ms;
        g.wal_bytes += s.wal_bytes;
    }
    let _ = writeln!(
        out,
        "| sent by | kind | table | calls | rows | ms | WAL bytes |\n|---|---|---|---:|---:|---:|---:|"
    );
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|x, y| {
        (x.0 .0, -x.1.calls)
            .partial_cmp(&(y.0 .0, -y.1.calls))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for ((area, kind, table), s) in groups.iter().filter(|(_, s)| s.calls.abs() >= 0.005) {
        let _ = writeln!(
            out,
            "| {area} | {kind} | {table} | {:.3} | {:.2} | {:.3} | {:.0} |",
            s.calls, s.rows, s.ms, s.wal_bytes
        );
    }

    let _ = writeln!(
        out,
        "\n| table | inserted | updated (HOT) | deleted |\n|---|---:|---:|---:|"
    );
    for (name, w) in &per.tables {
        if w.inserted.abs() + w.updated.abs() + w.deleted.abs() < 0.005 {
            continue;
        }
        let _ = writeln!(
            out,
            "| {name} | {:.2} | {:.2} ({:.2}) | {:.2} |",
            w.inserted, w.updated, w.hot_updated, w.deleted
        );
    }

    // Every statement, multi-row inserts of any size as one; then what functions ran.
    for (toplevel, title) in [
        (true, "statements sent"),
        (
            false,
            "inside functions (`append_events`), already counted in the call",
        ),
    ] {
        let mut by_text: BTreeMap<String, Statement> = BTreeMap::new();
        for s in per.statements.values().filter(|s| s.toplevel == toplevel) {
            let g = by_text.entry(collapse(&s.query)).or_default();
            g.calls += s.calls;
            g.rows += s.rows;
            g.ms += s.ms;
            g.wal_bytes += s.wal_bytes;
        }
        let mut list: Vec<_> = by_text
            .into_iter()
            .filter(|(_, s)| s.calls.abs() >= 0.005)
            .collect();
        if list.is_empty() {
            continue;
        }
        list.sort_by(|x, y| y.1.calls.total_cmp(&x.1.calls));
        let _ = writeln!(
            out,
            "\n{title}:\n\n| calls | rows | ms | WAL bytes | statement (normalized) |\n|---:|---:|---:|---:|---|"
        );
        for (text, s) in list {
            let text = if text.chars().count() > 200 {
                format!("{}…", text.chars().take(200).collect::<String>())
            } else {
                text
            };
            let _ = writeln!(
                out,
                "| {:.3} | {:.2} | {:.3} | {:.0} | `{}` |",
                s.calls,
                s.rows,
                s.ms,
                s.wal_bytes,
                text.replace('|', "\\|").replace('`', "'")
            );
        }
    }
    out
}
