//! The per-login budget as markdown: the totals, statements by sender, kind and table, rows
//! written per table, and every statement by text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::snapshot::{Snapshot, Statement};
use super::statements::{area, collapse, kind_and_table};
use super::Options;
use crate::login;
use crate::pgproxy::Counts;

pub(super) fn report(
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
            "inside functions (`append_event_batches`), already counted in the call",
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
