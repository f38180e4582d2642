//! The report as markdown.

use std::fmt::Write;

use super::{num, summary, Results};
use crate::login::LevelResult;
use crate::service::Backend;
use crate::stream::Stream;

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

    let _ = writeln!(out, "\n{}", summary::markdown(r));
    for issue in [6, 14] {
        let _ = writeln!(out, "\n## Targets (issue {issue})\n\n| measure | backend | value | must reach | aim | verdict | note |\n|---|---|---|---|---|---|---|");
        for t in r.targets.iter().filter(|t| t.issue == issue) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | **{}** | {} |",
                t.measure, t.backend, t.value, t.must, t.aim, t.verdict, t.note
            );
        }
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
        cpu_table(&mut out, b.login.iter().chain(b.paced.iter()));
        let busiest = b
            .login
            .iter()
            .max_by(|x, y| x.logins_per_sec.total_cmp(&y.logins_per_sec));
        if let Some(l) = busiest {
            wal_by_relation(&mut out, l);
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
                    let postgres = cpu.postgres_ms.map_or(String::new(), |ms| {
                        format!(", PostgreSQL {:.1} µs", ms * 1000.0)
                    });
                    let _ = writeln!(
                        out,
                        "  CPU per event: rebuild (this process) {:.1} µs{postgres}, other (kernel, other programs{}) {:.1} µs; machine idle {:.0} %",
                        cpu.harness_ms * 1000.0,
                        if cpu.postgres_ms.is_some() { "" } else { ", PostgreSQL" },
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
        if let Some(p) = &b.prefilled {
            prefilled(&mut out, p);
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

/// CPU per login by process (ms of one core) and, on PostgreSQL, WAL per login.
fn cpu_table<'a>(out: &mut String, levels: impl Iterator<Item = &'a LevelResult>) {
    let _ = writeln!(out, "\nCPU per login (ms of one core), by process, the machine's idle share, and the WAL PostgreSQL wrote per login (server-wide: other clients of the server count too):\n\n| VUs | logins/s | identityd | PostgreSQL | bench (load + simulator) | other (kernel, other programs) | idle | WAL bytes | WAL syncs |\n|---|---|---|---|---|---|---|---|---|");
    for l in levels {
        let Some(cpu) = &l.cpu else { continue };
        let ms = |v: Option<f64>, none: &str| v.map_or(none.to_owned(), |ms| format!("{ms:.3}"));
        let (bytes, syncs) = match &l.wal {
            Some(w) => (
                num(w.bytes_per_login),
                w.syncs_per_login.map_or("–".into(), |s| format!("{s:.2}")),
            ),
            None => ("–".into(), "–".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.0} % | {bytes} | {syncs} |",
            l.paced_rate
                .map_or(l.concurrency.to_string(), |r| format!("paced {}/s", num(r))),
            num(l.logins_per_sec),
            ms(cpu.service_ms, "in bench"),
            ms(cpu.postgres_ms, "–"),
            cpu.harness_ms,
            cpu.other_ms,
            cpu.idle_share * 100.0
        );
    }
}

/// A level's WAL by relation (`pg_walinspect`), where the level measured it.
fn wal_by_relation(out: &mut String, l: &LevelResult) {
    let Some(rows) = l.wal.as_ref().and_then(|w| w.by_relation.as_ref()) else {
        return;
    };
    let _ = writeln!(
        out,
        "\nWAL per login by relation at {} virtual users (a record counts for its first block's \
         relation; full-page images are part of the bytes):\n\n\
         | relation | records | bytes | of which full-page images |\n|---|---|---|---|",
        l.concurrency
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {} | {} |",
            r.relation,
            r.records_per_login,
            num(r.bytes_per_login),
            num(r.full_page_bytes_per_login)
        );
    }
}

/// The login level on the pre-filled database, and what the database held.
fn prefilled(out: &mut String, p: &crate::prefilled::Prefilled) {
    let g = &p.generated;
    let l = &p.level;
    let _ = writeln!(
        out,
        "\n### Login on a pre-filled database\n\nThe database held {} events of {} people \
         (one data key each), {} streams, {} uniqueness claims and {} stored session keys, \
         written by the generator at {}/s; the read models were rebuilt over them ({} events \
         in {:.1} s) before the service started. {} virtual users, 30 % new people, returning \
         ones drawn from everyone stored: **{}/s** (p50 {:.2} ms, p99 {:.2} ms, {} errors) \
         against {}/s on the empty database: **{}**.",
        num(g.events as f64),
        num(g.people as f64),
        num(g.streams as f64),
        num(g.claims as f64),
        num(g.session_keys as f64),
        num(g.events_per_sec),
        num(p.rebuild.events as f64),
        p.rebuild.median_seconds,
        l.concurrency,
        num(l.logins_per_sec),
        l.login.p50_ms,
        l.login.p99_ms,
        l.errors,
        p.empty_logins_per_sec.map_or("–".into(), num),
        p.ratio.map_or("–".into(), |r| format!("{r:.2}×")),
    );
    if let Some(path) = &p.reused {
        let _ = writeln!(
            out,
            "\nThe database was a kept one ({}), taken again: the figures above of what it held \
             are from when it was made; earlier runs' levels have added their own people since.",
            path.display()
        );
    }
    cpu_table(out, std::iter::once(l));
    wal_by_relation(out, l);
    if let Some(c) = &p.level_wal_lz4 {
        let _ = writeln!(
            out,
            "\nThe same level again after a checkpoint, the service's sessions with \
             `wal_compression = lz4`: **{}/s** (p99 {:.2} ms, {} errors).",
            num(c.logins_per_sec),
            c.login.p99_ms,
            c.errors
        );
        cpu_table(out, std::iter::once(c));
        wal_by_relation(out, c);
        if !c.error_samples.is_empty() {
            let _ = writeln!(out, "\nerrors (lz4): {}", c.error_samples.join("; "));
        }
    }
    if !l.error_samples.is_empty() {
        let _ = writeln!(out, "\nerrors: {}", l.error_samples.join("; "));
    }
}
