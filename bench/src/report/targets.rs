//! The targets of issues 6 and 14, measured, with pass/miss.

use serde::Serialize;

use super::{num, BackendResults};
use crate::baseline::BaselineLevel;
use crate::service::Backend;
use crate::stream::Stream;

/// One line of an issue's targets table, measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    /// The issue that set the target (6 or 14).
    pub issue: u32,
    pub measure: String,
    pub backend: String,
    pub value: String,
    pub must: String,
    pub aim: String,
    /// `aim met`, `pass` (must-reach met), `miss`, or `n/a`.
    pub verdict: String,
    pub note: String,
}

/// A target: higher is better unless `lower`. Without an aim of its own, `aim` is `must`.
struct Goal {
    issue: u32,
    measure: &'static str,
    unit: &'static str,
    must: f64,
    aim: f64,
    lower: bool,
}

const RATIO_TO_PGBENCH: Goal = Goal {
    issue: 6,
    measure: "login throughput / pgbench one-row-insert TPS",
    unit: "×",
    must: 0.5,
    aim: 1.0,
    lower: false,
};
const P99_AT_70: Goal = Goal {
    issue: 6,
    measure: "login p99 at 70 % of peak",
    unit: "ms",
    must: 25.0,
    aim: 10.0,
    lower: true,
};
const SQLITE_LOGINS: Goal = Goal {
    issue: 6,
    measure: "login throughput",
    unit: "/s",
    must: 5000.0,
    aim: 10000.0,
    lower: false,
};
const REBUILD: Goal = Goal {
    issue: 6,
    measure: "projection rebuild",
    unit: "events/s",
    must: 100_000.0,
    aim: 300_000.0,
    lower: false,
};
const USER_PAGE: Goal = Goal {
    issue: 6,
    measure: "one user's history page p99",
    unit: "ms",
    must: 5.0,
    aim: 1.0,
    lower: true,
};
const STREAM: Goal = Goal {
    issue: 6,
    measure: "/v1/events catch-up read",
    unit: "events/s",
    must: 100_000.0,
    aim: 300_000.0,
    lower: false,
};
const PEAK_RSS: Goal = Goal {
    issue: 6,
    measure: "service peak RSS under login load",
    unit: "MiB",
    must: 150.0,
    aim: 60.0,
    lower: true,
};

const SQLITE_PEAK: Goal = Goal {
    issue: 14,
    measure: "peak logins/s",
    unit: "/s",
    must: 3000.0,
    aim: 5000.0,
    lower: false,
};
const POSTGRES_PEAK: Goal = Goal {
    must: 1200.0,
    aim: 2000.0,
    ..SQLITE_PEAK
};
const SQLITE_SERVICE_CPU: Goal = Goal {
    issue: 14,
    measure: "identityd CPU per login at peak",
    unit: "ms",
    must: 0.45,
    aim: 0.3,
    lower: true,
};
const POSTGRES_SERVICE_CPU: Goal = Goal {
    must: 0.5,
    ..SQLITE_SERVICE_CPU
};
const POSTGRES_CPU: Goal = Goal {
    issue: 14,
    measure: "PostgreSQL CPU per login at peak",
    unit: "ms",
    must: 0.6,
    aim: 0.3,
    lower: true,
};
const PREFILLED: Goal = Goal {
    issue: 14,
    measure: "peak logins/s on a pre-filled database / on an empty one",
    unit: "×",
    must: 0.9,
    aim: 0.9,
    lower: false,
};

fn row(goal: &Goal, backend: Backend, value: Option<f64>, note: String) -> TargetRow {
    let meets = |v: f64, bound: f64| if goal.lower { v <= bound } else { v >= bound };
    let verdict = match value {
        None => "n/a",
        Some(v) if goal.aim != goal.must && meets(v, goal.aim) => "aim met",
        Some(v) if meets(v, goal.must) => "pass",
        Some(_) => "miss",
    };
    let (cmp, unit) = (if goal.lower { "≤" } else { "≥" }, goal.unit);
    TargetRow {
        issue: goal.issue,
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
        rows.extend(issue_14(b));
    }
    rows.sort_by_key(|r| r.issue);
    rows
}

/// Issue 14's targets for one backend (those issue 6 already has are not repeated).
fn issue_14(b: &BackendResults) -> Vec<TargetRow> {
    let peak = b.peak_login();
    let at_peak = || peak.map_or_else(String::new, |p| format!("{} virtual users", p.concurrency));
    let (logins, service_cpu) = match b.backend {
        Backend::Sqlite => (&SQLITE_PEAK, &SQLITE_SERVICE_CPU),
        Backend::Postgres => (&POSTGRES_PEAK, &POSTGRES_SERVICE_CPU),
    };
    let cpu = peak.and_then(|p| p.cpu.as_ref());
    let mut rows = vec![
        row(logins, b.backend, peak.map(|p| p.logins_per_sec), at_peak()),
        row(
            service_cpu,
            b.backend,
            cpu.and_then(|c| c.service_ms),
            at_peak(),
        ),
    ];
    if b.backend == Backend::Postgres {
        let note = match peak.and_then(|p| p.wal.as_ref()) {
            Some(w) => format!(
                "{}; {} WAL bytes per login",
                at_peak(),
                num(w.bytes_per_login)
            ),
            None => at_peak(),
        };
        rows.push(row(
            &POSTGRES_CPU,
            b.backend,
            cpu.and_then(|c| c.postgres_ms),
            note,
        ));
    }
    let prefilled = b.prefilled.as_ref();
    let note = prefilled.map_or_else(String::new, |p| {
        format!(
            "{} people, {} events; {} virtual users: {}/s vs {}/s",
            num(p.generated.people as f64),
            num(p.generated.events as f64),
            p.level.concurrency,
            num(p.level.logins_per_sec),
            num(p.empty_logins_per_sec.unwrap_or(0.0))
        )
    });
    rows.push(row(
        &PREFILLED,
        b.backend,
        prefilled.and_then(|p| p.ratio),
        note,
    ));
    rows
}
