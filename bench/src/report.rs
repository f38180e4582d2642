//! The results: what the JSON file holds, machine facts, the targets of issue 6 with
//! pass/miss, and the markdown tables printed at the end.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::admin::Admin;
use crate::baseline::BaselineLevel;
use crate::generate::Generated;
use crate::login::LevelResult;
use crate::replay::Replay;
use crate::service::{Backend, Memory};
use crate::stream::Stream;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub postgres: Option<String>,
    /// Settings that bound commit throughput.
    pub postgres_settings: Vec<(String, String)>,
    pub git_commit: Option<String>,
}

impl Machine {
    pub async fn probe(postgres_url: Option<&str>) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let (postgres, postgres_settings) = match postgres_url {
            Some(url) => postgres_facts(url).await.unwrap_or_default(),
            None => (None, Vec::new()),
        };
        let git_commit = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        Self {
            cpu,
            cores,
            memory_gib,
            kernel,
            postgres,
            postgres_settings,
            git_commit,
        }
    }
}

async fn postgres_facts(url: &str) -> anyhow::Result<(Option<String>, Vec<(String, String)>)> {
    let mut conn = PgConnection::connect(url).await?;
    let version: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut conn)
        .await?;
    let mut settings = Vec::new();
    for name in [
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "commit_delay",
        "shared_buffers",
        "max_connections",
    ] {
        let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(&mut conn)
            .await?;
        settings.push((name.to_owned(), value));
    }
    Ok((Some(version), settings))
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub part: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendResults {
    pub backend: Backend,
    pub login: Vec<LevelResult>,
    /// Open loop at 70 % of the best closed-loop throughput.
    pub paced: Option<LevelResult>,
    pub memory: Option<Memory>,
    pub generated: Vec<Generated>,
    pub replay: Option<Replay>,
    /// The rebuild that brought the read models to the large log (one run).
    pub replay_large: Option<Replay>,
    pub admin: Vec<Admin>,
    pub stream: Option<Stream>,
    /// Parts that failed, with why.
    pub failures: Vec<String>,
}

impl BackendResults {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            login: Vec::new(),
            paced: None,
            memory: None,
            generated: Vec::new(),
            replay: None,
            replay_large: None,
            admin: Vec::new(),
            stream: None,
            failures: Vec::new(),
        }
    }

    pub fn peak_login(&self) -> Option<&LevelResult> {
        self.login
            .iter()
            .max_by(|a, b| a.logins_per_sec.total_cmp(&b.logins_per_sec))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub started_at: String,
    pub scale: String,
    pub service: String,
    pub machine: Machine,
    pub baseline: Option<Vec<BaselineLevel>>,
    pub backends: Vec<BackendResults>,
    pub targets: Vec<TargetRow>,
    pub timings: Vec<Timing>,
    pub total_seconds: f64,
}

/// One line of issue 6's targets table, measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    pub measure: String,
    pub backend: String,
    pub value: String,
    pub must: String,
    pub aim: String,
    /// `aim met`, `pass` (must-reach met), `miss`, or `n/a`.
    pub verdict: String,
    pub note: String,
}

/// A target of issue 6: higher is better unless `lower`.
struct Goal {
    measure: &'static str,
    unit: &'static str,
    must: f64,
    aim: f64,
    lower: bool,
}

const RATIO_TO_PGBENCH: Goal = Goal {
    measure: "login throughput / pgbench one-row-insert TPS",
    unit: "×",
    must: 0.5,
    aim: 1.0,
    lower: false,
};
const P99_AT_70: Goal = Goal {
    measure: "login p99 at 70 % of peak",
    unit: "ms",
    must: 25.0,
    aim: 10.0,
    lower: true,
};
const SQLITE_LOGINS: Goal = Goal {
    measure: "login throughput",
    unit: "/s",
    must: 5000.0,
    aim: 10000.0,
    lower: false,
};
const REBUILD: Goal = Goal {
    measure: "projection rebuild",
    unit: "events/s",
    must: 100_000.0,
    aim: 300_000.0,
    lower: false,
};
const USER_PAGE: Goal = Goal {
    measure: "one user's history page p99",
    unit: "ms",
    must: 5.0,
    aim: 1.0,
    lower: true,
};
const STREAM: Goal = Goal {
    measure: "/v1/events catch-up read",
    unit: "events/s",
    must: 100_000.0,
    aim: 300_000.0,
    lower: false,
};
const PEAK_RSS: Goal = Goal {
    measure: "service peak RSS under login load",
    unit: "MiB",
    must: 150.0,
    aim: 60.0,
    lower: true,
};

fn row(goal: &Goal, backend: Backend, value: Option<f64>, note: String) -> TargetRow {
    let meets = |v: f64, bound: f64| if goal.lower { v <= bound } else { v >= bound };
    let verdict = match value {
        None => "n/a",
        Some(v) if meets(v, goal.aim) => "aim met",
        Some(v) if meets(v, goal.must) => "pass",
        Some(_) => "miss",
    };
    let (cmp, unit) = (if goal.lower { "≤" } else { "≥" }, goal.unit);
    TargetRow {
        measure: goal.measure.to_owned(),
        backend: backend.name().to_owned(),
        value: value.map_or("–".to_owned(), |v| format!("{} {unit}", num(v))),
        must: format!("{cmp} {} {unit}", num(goal.must)),
        aim: format!("{cmp} {} {unit}", num(goal.aim)),
        verdict: verdict.to_owned(),
        note,
    }
}

pub fn targets(backends: &[BackendResults], baseline: Option<&[BaselineLevel]>) -> Vec<TargetRow> {
    let mut rows = Vec::new();
    for b in backends {
        let peak = b.peak_login();
        if b.backend == Backend::Postgres {
            let ratio = peak.and_then(|p| {
                let tps = baseline?.iter().find(|l| l.clients == p.concurrency)?.tps;
                Some((p.logins_per_sec / tps, p.concurrency, tps))
            });
            let note = ratio.map_or_else(String::new, |(_, c, tps)| {
                format!("at the peak level, {c} clients; pgbench {} TPS", num(tps))
            });
            rows.push(row(&RATIO_TO_PGBENCH, b.backend, ratio.map(|r| r.0), note));
        }
        let paced = b.paced.as_ref();
        let note = paced.map_or_else(String::new, |p| {
            format!(
                "open loop at {}/s ({} errors)",
                num(p.paced_rate.unwrap_or(0.0)),
                p.errors
            )
        });
        rows.push(row(
            &P99_AT_70,
            b.backend,
            paced.map(|p| p.login.p99_ms),
            note,
        ));
        if b.backend == Backend::Sqlite {
            let note =
                peak.map_or_else(String::new, |p| format!("{} virtual users", p.concurrency));
            rows.push(row(
                &SQLITE_LOGINS,
                b.backend,
                peak.map(|p| p.logins_per_sec),
                note,
            ));
        }
        let replay = b.replay.as_ref();
        let note = replay.map_or_else(String::new, |r| {
            format!("{} events, median of {}", r.events, r.runs.len())
        });
        rows.push(row(
            &REBUILD,
            b.backend,
            replay.map(|r| r.events_per_sec),
            note,
        ));
        let largest = b.admin.iter().max_by_key(|a| a.events);
        let note = largest.map_or_else(String::new, |a| format!("at {} events", a.events));
        rows.push(row(
            &USER_PAGE,
            b.backend,
            largest.map(|a| a.user_page.p99_ms),
            note,
        ));
        let (rate, note) = match &b.stream {
            Some(Stream::Measured {
                events_per_sec,
                events,
                ..
            }) => (Some(*events_per_sec), format!("{events} events")),
            Some(Stream::Unavailable) => (None, "endpoint unavailable (404)".to_owned()),
            None => (None, String::new()),
        };
        rows.push(row(&STREAM, b.backend, rate, note));
        let memory = b.memory.as_ref();
        let note = memory.map_or_else(String::new, |m| m.of.to_owned());
        rows.push(row(
            &PEAK_RSS,
            b.backend,
            memory.and_then(|m| m.peak_rss_mib),
            note,
        ));
    }
    rows
}

/// The report as markdown.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "# identityd benchmark ({} scale, service {})\n",
        r.scale, r.service
    );
    let _ = writeln!(
        out,
        "- started {}, took {:.0} s; commit {}",
        r.started_at,
        r.total_seconds,
        m.git_commit.as_deref().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "- CPU: {} × {} cores; RAM {:.1} GiB; Linux {}",
        m.cpu, m.cores, m.memory_gib, m.kernel
    );
    if let Some(pg) = &m.postgres {
        let settings: Vec<String> = m
            .postgres_settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "- {pg}\n- PostgreSQL settings: {}",
            settings.join(", ")
        );
    }

    let _ = writeln!(out, "\n## Targets (issue 6)\n\n| measure | backend | value | must reach | aim | verdict | note |\n|---|---|---|---|---|---|---|");
    for t in &r.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | **{}** | {} |",
            t.measure, t.backend, t.value, t.must, t.aim, t.verdict, t.note
        );
    }

    for b in &r.backends {
        let name = b.backend.name();
        let _ = writeln!(
            out,
            "\n## {name}\n\n### Login (wx.login untimed, login, /me)\n"
        );
        let _ = writeln!(out, "| VUs | logins/s | pgbench TPS | ratio | login p50 | p95 | p99 | /me p50 | /me p99 | new users | errors |\n|---|---|---|---|---|---|---|---|---|---|---|");
        for l in b.login.iter().chain(b.paced.iter()) {
            let tps = r
                .baseline
                .as_deref()
                .and_then(|bl| bl.iter().find(|x| x.clients == l.concurrency))
                .map(|x| x.tps);
            let (tps_text, ratio) = match (tps, b.backend, l.paced_rate) {
                (Some(t), Backend::Postgres, None) => {
                    (num(t), format!("{:.2}×", l.logins_per_sec / t))
                }
                _ => ("".into(), "".into()),
            };
            let vus = match l.paced_rate {
                Some(rate) => format!("paced {}/s (≤{} in flight)", num(rate), l.concurrency),
                None => l.concurrency.to_string(),
            };
            let _ = writeln!(out, "| {vus} | {} | {tps_text} | {ratio} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |",
                num(l.logins_per_sec), l.login.p50_ms, l.login.p95_ms, l.login.p99_ms, l.me.p50_ms, l.me.p99_ms, l.new_users, l.errors);
        }
        let _ = writeln!(out, "\nCPU per login (ms of one core), by process, and the machine's idle share:\n\n| VUs | logins/s | identityd | bench (load + simulator) | other (PostgreSQL, kernel) | idle |\n|---|---|---|---|---|---|");
        for l in b.login.iter().chain(b.paced.iter()) {
            if let Some(cpu) = &l.cpu {
                let service = cpu
                    .service_ms
                    .map_or("in bench".into(), |ms| format!("{ms:.3}"));
                let _ = writeln!(
                    out,
                    "| {} | {} | {service} | {:.3} | {:.3} | {:.0} % |",
                    l.paced_rate
                        .map_or(l.concurrency.to_string(), |r| format!("paced {}/s", num(r))),
                    num(l.logins_per_sec),
                    cpu.harness_ms,
                    cpu.other_ms,
                    cpu.idle_share * 100.0
                );
            }
        }
        for l in b
            .login
            .iter()
            .chain(b.paced.iter())
            .filter(|l| !l.error_samples.is_empty())
        {
            let _ = writeln!(
                out,
                "\nerrors at {}: {}",
                l.concurrency,
                l.error_samples.join("; ")
            );
        }
        if let Some(mem) = &b.memory {
            let _ = writeln!(
                out,
                "\nPeak RSS ({}): {:.1} MiB",
                mem.of,
                mem.peak_rss_mib.unwrap_or(0.0)
            );
        }
        let _ = writeln!(out, "\n### Log, replay, admin, stream\n");
        for g in &b.generated {
            let _ = writeln!(
                out,
                "- generated {} events in {:.1} s ({}/s, {} appends, {} appenders)",
                g.events,
                g.seconds,
                num(g.events_per_sec),
                g.appends,
                g.appenders
            );
        }
        for (label, replay) in [
            ("rebuild", &b.replay),
            ("rebuild (large log, 1 run)", &b.replay_large),
        ] {
            if let Some(x) = replay {
                let runs: Vec<String> = x.runs.iter().map(|s| format!("{s:.2}")).collect();
                let _ = writeln!(
                    out,
                    "- {label}: {} events, median {:.2} s → **{} events/s** (runs: {} s)",
                    x.events,
                    x.median_seconds,
                    num(x.events_per_sec),
                    runs.join(", ")
                );
                if let Some(cpu) = &x.cpu {
                    let _ = writeln!(
                        out,
                        "  CPU per event: rebuild (this process) {:.1} µs, other (PostgreSQL, kernel) {:.1} µs; machine idle {:.0} %",
                        cpu.harness_ms * 1000.0,
                        cpu.other_ms * 1000.0,
                        cpu.idle_share * 100.0
                    );
                }
            }
        }
        for a in &b.admin {
            let _ = writeln!(out, "- admin at {} events, {} requests each: user page p50 {:.2} ms / p99 **{:.2} ms** ({:.1} items); app/day page p50 {:.2} ms / p99 {:.2} ms ({:.1} items); errors {}",
                a.events, a.requests, a.user_page.p50_ms, a.user_page.p99_ms, a.user_page_items, a.global_page.p50_ms, a.global_page.p99_ms, a.global_page_items, a.errors);
        }
        match &b.stream {
            Some(Stream::Measured {
                events,
                pages,
                seconds,
                events_per_sec,
                passes,
            }) => {
                let runs: Vec<String> = passes.iter().map(|s| format!("{s:.2}")).collect();
                let _ = writeln!(out, "- /v1/events catch-up: {events} events in {pages} pages, median {seconds:.2} s → **{} events/s** (passes: {} s)", num(*events_per_sec), runs.join(", "));
            }
            Some(Stream::Unavailable) => {
                let _ = writeln!(
                    out,
                    "- /v1/events catch-up: unavailable (404 in this build)"
                );
            }
            None => {}
        }
        for f in &b.failures {
            let _ = writeln!(out, "- FAILED: {f}");
        }
    }

    let _ = writeln!(out, "\n## Time per part\n\n| part | seconds |\n|---|---|");
    for t in &r.timings {
        let _ = writeln!(out, "| {} | {:.1} |", t.part, t.seconds);
    }
    out
}

/// A readable number: thousands separated, few decimals.
pub fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        let whole = v.round() as i64;
        let digits = whole.abs().to_string();
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        if whole < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
