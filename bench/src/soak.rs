//! `--soak MINUTES` (issue 16): the service, a child process on a fresh database, under an
//! open-loop login load at half of its peak rate for MINUTES, sampled at the end of each
//! minute: its resident set, its open files, and that minute's logins, errors and login p99.
//!
//! The resident set must not grow more than 10 % after the first minute: the last minutes and
//! the median against the first (see [`Growth`]). The first minute holds the warm-up (pools filled,
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

/// The later minutes' resident set against the first minute's.
///
/// It passes when the memory is back within the limit and stays there: the highest of the last
/// third of the samples (two at least; the very last is taken once the load has drained) and
/// the median of all later ones are within 10 % of the first. A leak (a cache without bound, a
/// task or connection per request that never ends) keeps the last samples up; a stall (a
/// checkpoint on a shared disk) raises the requests in flight, and the memory with them, for a
/// minute, which the highest sample shows without failing the soak.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Growth {
    pub first_minute_mib: f64,
    /// The highest of the last third of the later samples.
    pub end_mib: f64,
    pub median_after_mib: f64,
    /// The highest of the later samples.
    pub highest_after_mib: f64,
    /// The larger of `end_mib` and `median_after_mib` against the first minute.
    pub percent: f64,
    pub pass: bool,
}

impl Growth {
    /// `None` with fewer than two samples or one missing (the process was gone).
    pub fn of(rss_mib: &[Option<f64>]) -> Option<Self> {
        let samples: Vec<f64> = rss_mib.iter().copied().collect::<Option<_>>()?;
        let (&first, later) = samples.split_first()?;
        if first <= 0.0 || later.is_empty() {
            return None;
        }
        let highest = later.iter().copied().reduce(f64::max)?;
        let tail = (later.len() / 3).max(2).min(later.len());
        let end = later[later.len() - tail..]
            .iter()
            .copied()
            .reduce(f64::max)?;
        let mut sorted = later.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 0 {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        let growth = (end.max(median) - first) / first;
        Some(Self {
            first_minute_mib: first,
            end_mib: end,
            median_after_mib: median,
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
        http: login::http_client()?,
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
                "at the end (the last third's highest) {:.1} MiB, median {:.1} MiB, against {:.1} MiB \
                 at the first minute ({:+.1} %, limit +{limit:.0} %): **{}**; the highest sample {:.1} MiB",
                g.end_mib,
                g.median_after_mib,
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
    fn a_spike_that_comes_back_passes_and_is_reported() {
        let g = Growth::of(&[
            Some(100.0),
            Some(104.0),
            Some(125.0),
            Some(103.0),
            Some(102.0),
        ])
        .unwrap();
        assert_eq!(g.first_minute_mib, 100.0);
        assert_eq!(g.end_mib, 103.0);
        assert_eq!(g.median_after_mib, 103.5);
        assert_eq!(g.highest_after_mib, 125.0);
        assert!((g.percent - 3.5).abs() < 1e-9, "{g:?}");
        assert!(g.pass);
    }

    #[test]
    fn memory_still_held_in_the_last_minutes_fails() {
        // The last sample alone is back (the load had drained), the one before is not.
        let g = Growth::of(&[Some(80.0), Some(81.0), Some(82.0), Some(88.9), Some(80.0)]).unwrap();
        assert_eq!(g.end_mib, 88.9);
        assert!(!g.pass, "{g:?}");
    }

    #[test]
    fn memory_high_most_of_the_time_fails_on_the_median() {
        let g = Growth::of(&[
            Some(50.0),
            Some(60.0),
            Some(60.0),
            Some(60.0),
            Some(60.0),
            Some(54.0),
            Some(54.0),
        ])
        .unwrap();
        assert_eq!(g.end_mib, 54.0);
        assert_eq!(g.median_after_mib, 60.0);
        assert!(!g.pass, "{g:?}");
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
