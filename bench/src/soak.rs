//! `--soak MINUTES` (issue 16): the service, a child process on a fresh database, under an
//! open-loop login load at half of its peak rate for MINUTES, sampled at the end of each
//! minute: its resident set, its open files, and that minute's logins, errors and login p99.
//!
//! The resident set must not grow more than 10 % after the first minute: the last sample
//! against the first (see [`Growth`]). The first minute holds the warm-up (pools filled,
//! caches and allocator arenas populated); a leak (a cache without bound, a task or connection
//! per request that never ends) shows afterwards as growth under a load that does not change.

use std::fmt::Write;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::login::{self, LevelResult, Target};
use crate::report::{num, Machine};
use crate::service::{Backend, Database, Mode, Service, Sim};

/// The most the resident set may grow after the first minute, as a share of it.
pub const RSS_GROWTH_LIMIT: f64 = 0.10;
const MINUTE: Duration = Duration::from_secs(60);

pub struct Options {
    pub minutes: u32,
    /// Logins per second; `None`: half of the peak found by the closed-loop `levels`.
    pub rate: Option<f64>,
    pub levels: Vec<usize>,
    pub level: Duration,
    pub postgres_url: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub started_at: String,
    pub machine: Machine,
    pub minutes: u32,
    pub backends: Vec<Soak>,
    /// Backends whose soak could not run, with why.
    pub failures: Vec<String>,
}

/// One backend's soak.
#[derive(Debug, Serialize)]
pub struct Soak {
    pub backend: Backend,
    /// The best closed-loop throughput found first (`None` when `--rate` was given).
    pub peak_logins_per_sec: Option<f64>,
    /// Logins started per second.
    pub rate: f64,
    pub minutes: Vec<Minute>,
    /// `None` with fewer than two minutes or a sample missing.
    pub rss_growth: Option<Growth>,
    pub error_samples: Vec<String>,
}

/// What one minute saw, sampled as it ended.
#[derive(Debug, Serialize)]
pub struct Minute {
    pub minute: usize,
    pub rss_mib: Option<f64>,
    pub open_files: Option<u64>,
    pub logins: u64,
    pub logins_per_sec: f64,
    pub errors: u64,
    pub login_p99_ms: f64,
    pub me_p99_ms: f64,
    /// The most logins in flight at once.
    pub most_in_flight: usize,
    /// Starts skipped because too many logins were in flight (the generator's limit).
    pub skipped: u64,
}

/// The resident set at the end against at the first minute, and the highest sample between.
///
/// The verdict reads the last sample: a leak (a cache without bound, a task or connection per
/// request that never ends) is still there at the end. The resident set also follows the
/// requests in flight, which a stall (a checkpoint on a shared disk) raises for a minute; the
/// highest sample shows that, and the minutes after it show whether the memory came back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Growth {
    pub first_minute_mib: f64,
    pub last_minute_mib: f64,
    /// The highest of the later samples.
    pub highest_after_mib: f64,
    /// The last sample against the first.
    pub percent: f64,
    pub pass: bool,
}

impl Growth {
    /// `None` with fewer than two samples or one missing (the process was gone).
    pub fn of(rss_mib: &[Option<f64>]) -> Option<Self> {
        let samples: Vec<f64> = rss_mib.iter().copied().collect::<Option<_>>()?;
        let (&first, later) = samples.split_first()?;
        let highest = later.iter().copied().reduce(f64::max)?;
        let last = *later.last()?;
        if first <= 0.0 {
            return None;
        }
        let growth = (last - first) / first;
        Some(Self {
            first_minute_mib: first,
            last_minute_mib: last,
            highest_after_mib: highest,
            percent: growth * 100.0,
            pass: growth <= RSS_GROWTH_LIMIT,
        })
    }
}

/// The soak on each backend in turn.
pub async fn run(backends: &[Backend], mode: &Mode, options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        matches!(mode, Mode::Child(_)),
        "--soak samples the service's own process: drop --in-process"
    );
    let started_at = chrono::Utc::now().to_rfc3339();
    let uses_postgres = backends.contains(&Backend::Postgres);
    let machine = Machine::probe(uses_postgres.then_some(options.postgres_url.as_str())).await;
    let mut report = Report {
        started_at,
        machine,
        minutes: options.minutes,
        backends: Vec::new(),
        failures: Vec::new(),
    };
    for &backend in backends {
        let db = Database::fresh(backend, &options.postgres_url).await?;
        let soak = soak_on(backend, &db, mode, options).await;
        db.remove().await;
        match soak {
            Ok(soak) => report.backends.push(soak),
            Err(e) => {
                eprintln!("{}: {e:#}", backend.name());
                report.failures.push(format!("{}: {e:#}", backend.name()));
            }
        }
    }
    Ok(report)
}

async fn soak_on(
    backend: Backend,
    db: &Database,
    mode: &Mode,
    options: &Options,
) -> anyhow::Result<Soak> {
    let name = backend.name();
    let sim = Sim::start().await?;
    let service = Service::start(mode, db, &sim).await?;
    let target = Target {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(60))
            .build()?,
        service: service.base.clone(),
        sim: sim.base.clone(),
        run: format!("s{:06x}", rand::random::<u32>() & 0xff_ffff),
        stored: None,
    };
    let (peak, rate) = match options.rate {
        Some(rate) => (None, rate),
        None => {
            let peak = find_peak(&target, options, name).await?;
            (Some(peak), peak / 2.0)
        }
    };
    eprintln!(
        "{name}: soak, open loop at {rate:.0} logins/s for {} min",
        options.minutes
    );
    let mut minutes = Vec::new();
    let mut error_samples = Vec::new();
    let duration = MINUTE * options.minutes;
    login::paced_windows(&target, rate, duration, MINUTE, |window| {
        let minute = sample(&service, minutes.len() + 1, &window);
        eprintln!(
            "  minute {}: RSS {} MiB, {} open files, {} logins, p99 {:.2} ms, {} errors",
            minute.minute,
            minute.rss_mib.map_or("?".into(), |m| format!("{m:.1}")),
            minute.open_files.map_or("?".into(), |n| n.to_string()),
            minute.logins,
            minute.login_p99_ms,
            minute.errors
        );
        for e in window.error_samples {
            if error_samples.len() < 5 && !error_samples.contains(&e) {
                error_samples.push(e);
            }
        }
        minutes.push(minute);
    })
    .await;
    service.stop().await;
    let rss: Vec<Option<f64>> = minutes.iter().map(|m| m.rss_mib).collect();
    Ok(Soak {
        backend,
        peak_logins_per_sec: peak,
        rate,
        rss_growth: Growth::of(&rss),
        minutes,
        error_samples,
    })
}

/// The best throughput of the closed-loop levels, as the login part measures it.
async fn find_peak(target: &Target, options: &Options, name: &str) -> anyhow::Result<f64> {
    let mut peak: Option<f64> = None;
    for &users in &options.levels {
        eprintln!("{name}: peak, {users} virtual users, {:?}", options.level);
        let level = login::closed_loop(target, users, options.level).await;
        eprintln!(
            "  {:.0} logins/s, p99 {:.2} ms, {} errors",
            level.logins_per_sec, level.login.p99_ms, level.errors
        );
        peak = Some(peak.map_or(level.logins_per_sec, |p| p.max(level.logins_per_sec)));
    }
    peak.filter(|p| *p >= 1.0)
        .context("no login succeeded while looking for the peak: pass --rate")
}

fn sample(service: &Service, minute: usize, window: &LevelResult) -> Minute {
    Minute {
        minute,
        rss_mib: service.memory().rss_mib,
        open_files: service.open_files(),
        logins: window.logins,
        logins_per_sec: window.logins_per_sec,
        errors: window.errors,
        login_p99_ms: window.login.p99_ms,
        me_p99_ms: window.me.p99_ms,
        most_in_flight: window.concurrency,
        skipped: window.skipped,
    }
}

/// The report as markdown: a table per backend and the verdict on the resident set.
pub fn markdown(r: &Report) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# identityd soak ({} min per backend, service child process)\n",
        r.minutes
    );
    let _ = writeln!(
        out,
        "- started {}; commit {}\n- CPU: {} × {} cores; RAM {:.1} GiB; Linux {}",
        r.started_at,
        m.git_commit.as_deref().unwrap_or("?"),
        m.cpu,
        m.cores,
        m.memory_gib,
        m.kernel
    );
    for s in &r.backends {
        let rate = match s.peak_logins_per_sec {
            Some(peak) => format!("{}/s (half of the peak, {}/s)", num(s.rate), num(peak)),
            None => format!("{}/s (--rate)", num(s.rate)),
        };
        let _ = writeln!(
            out,
            "\n## {}: open loop at {rate}\n\n\
             | minute | RSS | open files | logins | logins/s | errors | login p99 | /me p99 | most in flight |\n\
             |---|---|---|---|---|---|---|---|---|",
            s.backend.name()
        );
        for m in &s.minutes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.2} ms | {:.2} ms | {} |",
                m.minute,
                m.rss_mib.map_or("?".into(), |v| format!("{v:.1} MiB")),
                m.open_files.map_or("?".into(), |n| n.to_string()),
                m.logins,
                num(m.logins_per_sec),
                m.errors,
                m.login_p99_ms,
                m.me_p99_ms,
                m.most_in_flight
            );
        }
        let limit = RSS_GROWTH_LIMIT * 100.0;
        let verdict = match s.rss_growth {
            Some(g) => format!(
                "{:.1} MiB at the end against {:.1} MiB at the first minute ({:+.1} %, limit +{limit:.0} %): **{}**; \
                 the highest sample {:.1} MiB",
                g.last_minute_mib,
                g.first_minute_mib,
                g.percent,
                if g.pass { "PASS" } else { "FAIL" },
                g.highest_after_mib
            ),
            None => "no verdict (it needs two minutes or more, each sampled)".into(),
        };
        let _ = writeln!(out, "\nRSS after the first minute: {verdict}");
        if !s.error_samples.is_empty() {
            let _ = writeln!(out, "\nErrors, first kinds: {}", s.error_samples.join("; "));
        }
    }
    for failure in &r.failures {
        let _ = writeln!(out, "\n**Failed**: {failure}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_the_last_minute_against_the_first_with_the_highest_reported() {
        let g = Growth::of(&[Some(100.0), Some(104.0), Some(125.0), Some(103.0)]).unwrap();
        assert_eq!(g.first_minute_mib, 100.0);
        assert_eq!(g.last_minute_mib, 103.0);
        assert_eq!(g.highest_after_mib, 125.0);
        assert!((g.percent - 3.0).abs() < 1e-9, "{g:?}");
        assert!(g.pass);
    }

    #[test]
    fn memory_still_held_at_the_end_fails() {
        let g = Growth::of(&[Some(80.0), Some(81.0), Some(88.8)]).unwrap();
        assert!((g.percent - 11.0).abs() < 1e-9, "{g:?}");
        assert!(!g.pass);
    }

    #[test]
    fn exactly_ten_percent_passes_and_shrinking_passes() {
        assert!(Growth::of(&[Some(50.0), Some(55.0)]).unwrap().pass);
        let shrunk = Growth::of(&[Some(50.0), Some(40.0)]).unwrap();
        assert!(shrunk.pass);
        assert!((shrunk.percent + 20.0).abs() < 1e-9);
    }

    #[test]
    fn no_verdict_without_two_samples() {
        assert_eq!(Growth::of(&[]), None);
        assert_eq!(Growth::of(&[Some(100.0)]), None);
        assert_eq!(Growth::of(&[Some(100.0), None]), None);
        assert_eq!(Growth::of(&[Some(0.0), Some(10.0)]), None);
    }
}
