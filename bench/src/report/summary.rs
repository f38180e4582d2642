//! The summary: one row per headline figure, one column per backend. README's benchmark
//! table is copied from this block, so the two read the same.

use std::fmt::Write;

use super::{num, BackendResults, Results};
use crate::stream::Stream;

/// The summary block as markdown.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Summary\n\n{} scale, commit {}, {}; README's benchmark table is copied from this one.\n",
        r.scale,
        r.machine.git_commit.as_deref().unwrap_or("?"),
        r.started_at.get(..10).unwrap_or(&r.started_at),
    );
    let names: Vec<&str> = r.backends.iter().map(|b| b.backend.name()).collect();
    let _ = writeln!(
        out,
        "| figure | {} |\n|---|{}",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for (figure, cell) in rows() {
        let cells: Vec<String> = r.backends.iter().map(cell).collect();
        let _ = writeln!(out, "| {figure} | {} |", cells.join(" | "));
    }
    out
}

type Cell = fn(&BackendResults) -> String;

/// The rows: a figure and how to tell it for one backend ("–" when not measured).
fn rows() -> Vec<(&'static str, Cell)> {
    vec![
        ("peak logins/s (login + `/v1/me`)", peak),
        ("CPU per login at peak: identityd / PostgreSQL", cpu),
        ("WAL bytes per login at peak", wal),
        ("login p99 at 70 % of peak (open loop)", p99),
        (
            "peak logins/s on a pre-filled database / on an empty one",
            prefilled,
        ),
        ("projection rebuild", rebuild),
        ("one user's history page p99 (largest log)", user_page),
        ("`/v1/events` catch-up", stream),
        ("service peak RSS under login load", rss),
    ]
}

const NONE: &str = "–";

fn peak(b: &BackendResults) -> String {
    b.peak_login().map_or(NONE.into(), |p| {
        format!("{} ({} users)", num(p.logins_per_sec), p.concurrency)
    })
}

fn cpu(b: &BackendResults) -> String {
    let Some(cpu) = b.peak_login().and_then(|p| p.cpu.as_ref()) else {
        return NONE.into();
    };
    let ms = |v: Option<f64>| v.map_or(NONE.into(), |ms| format!("{ms:.2} ms"));
    format!("{} / {}", ms(cpu.service_ms), ms(cpu.postgres_ms))
}

fn wal(b: &BackendResults) -> String {
    b.peak_login()
        .and_then(|p| p.wal.as_ref())
        .map_or(NONE.into(), |w| num(w.bytes_per_login))
}

fn p99(b: &BackendResults) -> String {
    b.paced
        .as_ref()
        .map_or(NONE.into(), |p| format!("{:.1} ms", p.login.p99_ms))
}

fn prefilled(b: &BackendResults) -> String {
    b.prefilled.as_ref().map_or(NONE.into(), |p| {
        format!(
            "{} ({}/s with {} people, {} events)",
            p.ratio.map_or(NONE.into(), |r| format!("{r:.2}×")),
            num(p.level.logins_per_sec),
            num(p.generated.people as f64),
            num(p.generated.events as f64)
        )
    })
}

fn rebuild(b: &BackendResults) -> String {
    b.replay.as_ref().map_or(NONE.into(), |r| {
        format!(
            "{} events/s ({} events)",
            num(r.events_per_sec),
            num(r.events as f64)
        )
    })
}

fn user_page(b: &BackendResults) -> String {
    b.admin
        .iter()
        .max_by_key(|a| a.events)
        .map_or(NONE.into(), |a| {
            format!(
                "{:.2} ms at {} events",
                a.user_page.p99_ms,
                num(a.events as f64)
            )
        })
}

fn stream(b: &BackendResults) -> String {
    match &b.stream {
        Some(Stream::Measured { events_per_sec, .. }) => {
            format!("{} events/s", num(*events_per_sec))
        }
        Some(Stream::Unavailable) => "unavailable".into(),
        None => NONE.into(),
    }
}

fn rss(b: &BackendResults) -> String {
    b.memory
        .as_ref()
        .and_then(|m| m.peak_rss_mib)
        .map_or(NONE.into(), |mib| format!("{mib:.1} MiB"))
}
