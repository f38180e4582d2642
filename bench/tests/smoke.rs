//! The benchmark program end to end at its smallest scale: every part runs and measures
//! something, with no errors. Figures are not checked (they belong to BENCHMARKS.md, not to a
//! test); that each part produced one is.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

/// Runs `bench --scale tiny --in-process` with `args`; returns the JSON results and the report.
fn bench(args: &[&str]) -> (Value, String) {
    let out = std::env::temp_dir().join(format!("bench-smoke-{}.json", uuid::Uuid::now_v7()));
    bench_to(&out, args, None)
}

/// `bench` writing its results to `out` (removed after), its databases in `temp_dir` if given.
fn bench_to(
    out: &std::path::Path,
    args: &[&str],
    temp_dir: Option<&std::path::Path>,
) -> (Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bench"));
    if let Some(dir) = temp_dir {
        command.env("TMPDIR", dir);
    }
    let output = command
        .args(["--scale", "tiny", "--in-process", "--out"])
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    let results: Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    let _ = std::fs::remove_file(out);
    (results, String::from_utf8(output.stdout).unwrap())
}

/// What every backend's log parts must show: a rebuild over the generated log, admin pages
/// without errors, and a stream pass that read every event.
fn check_log_parts(backend: &Value) {
    assert_eq!(backend["failures"], serde_json::json!([]), "{backend:#}");
    let replayed = backend["replay"]["events"].as_i64().unwrap();
    assert!(replayed >= 10_000, "replayed {replayed}");
    assert!(backend["replay"]["events_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(backend["stream"]["status"], "measured");
    assert_eq!(backend["stream"]["events"].as_i64().unwrap(), replayed);
    let admin = backend["admin"].as_array().unwrap();
    assert!(!admin.is_empty());
    for a in admin {
        assert_eq!(a["errors"], 0, "{a:#}");
        assert!(a["user_page"]["p99_ms"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn a_tiny_run_on_sqlite_measures_every_part() {
    let (results, report) = bench(&["--backend", "sqlite"]);
    let sqlite = &results["backends"][0];
    assert_eq!(sqlite["backend"], "sqlite");
    let levels = sqlite["login"].as_array().unwrap();
    assert_eq!(levels.len(), 2, "tiny runs 1 and 8 virtual users");
    for level in levels.iter().chain([&sqlite["paced"]]) {
        assert!(level["logins"].as_u64().unwrap() > 0, "{level:#}");
        assert_eq!(level["errors"], 0, "{level:#}");
    }
    for level in levels {
        assert_eq!(level["returning_registered"], 0, "{level:#}");
    }
    assert!(sqlite["memory"]["peak_rss_mib"].as_f64().unwrap() > 0.0);
    check_log_parts(sqlite);
    check_prefilled(sqlite);
    assert!(report.contains("## Targets (issue 6)"), "{report}");
    assert!(report.contains("## Targets (issue 14)"), "{report}");
    assert!(report.contains("## Summary"), "{report}");
}

/// The login level on a pre-filled database: it ran on the scale's database (tiny: 1,000
/// people, 10,000 events, with their claims and session keys), its returning logins found
/// stored people, and it is compared with the empty database's peak.
fn check_prefilled(backend: &Value) {
    let p = &backend["prefilled"];
    let generated = &p["generated"];
    assert!(generated["events"].as_u64().unwrap() >= 10_000, "{p:#}");
    let people = generated["people"].as_u64().unwrap();
    assert!((900..=1100).contains(&people), "{people} people");
    // Every person: an account claim and a unionid claim, and a stored session key per
    // account.
    assert!(generated["claims"].as_u64().unwrap() >= 2 * people, "{p:#}");
    assert!(
        generated["session_keys"].as_u64().unwrap() >= people,
        "{p:#}"
    );
    assert!(p["rebuild"]["events"].as_i64().unwrap() >= 10_000, "{p:#}");
    let level = &p["level"];
    assert!(level["logins"].as_u64().unwrap() > 0, "{level:#}");
    assert_eq!(level["errors"], 0, "{level:#}");
    // Returning logins found their people: the service registered none of them.
    assert_eq!(level["returning_registered"], 0, "{level:#}");
    assert!(p["ratio"].as_f64().unwrap() > 0.0, "{p:#}");
}

/// A pre-filled database kept by one run (`--keep-database`) is taken by the next
/// (`--prefilled-database`): its people log in as returning users again, and it is reported as
/// the database the first run made.
#[test]
fn a_kept_prefilled_database_is_run_on_again() {
    let dir =
        RemovedAtEnd(std::env::temp_dir().join(format!("bench-smoke-{}", uuid::Uuid::now_v7())));
    let dir = &dir.0;
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("results.json");
    let only = ["--backend", "sqlite", "--only", "prefilled"];
    // Every database either run makes (the empty levels' too, kept as well) goes in `dir`.
    let (first, _) = bench_to(&out, &[&only[..], &["--keep-database"]].concat(), Some(dir));
    let kept = dir.join("results.prefilled-sqlite.json");
    let described: Value = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
    let url = described["url"].as_str().unwrap().to_owned();
    let database = std::path::PathBuf::from(url.strip_prefix("sqlite://").unwrap());
    assert!(database.exists() && database.starts_with(dir), "{url}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the file holds a master key: {mode:o}");
    }

    let kept_arg = kept.to_str().unwrap();
    let (again, _) = bench_to(
        &out,
        &[&only[..], &["--prefilled-database", kept_arg]].concat(),
        Some(dir),
    );
    let (first, again) = (&first["backends"][0], &again["backends"][0]);
    check_prefilled(again);
    // The same database, reported as made: its counts, and its generation's time (a new one's
    // would differ), which went through JSON twice more (to within a last digit).
    let (made, reported) = (
        &first["prefilled"]["generated"],
        &again["prefilled"]["generated"],
    );
    for count in [
        "events",
        "people",
        "streams",
        "claims",
        "session_keys",
        "appends",
    ] {
        assert_eq!(reported[count], made[count], "{count}");
    }
    assert_eq!(first["prefilled"]["reused"], Value::Null);
    assert_eq!(again["prefilled"]["reused"].as_str(), Some(kept_arg));
    let seconds = |g: &Value| g["seconds"].as_f64().unwrap();
    assert!(
        (seconds(reported) - seconds(made)).abs() <= 1e-9 * seconds(made),
        "{reported} against {made}"
    );
    let wrong = refused(&[
        "--only",
        "prefilled",
        "--backend",
        "postgres",
        "--prefilled-database",
        kept_arg,
    ]);
    assert!(wrong.contains("not postgres"), "{wrong}");

    // A second keep would replace the description: refused before anything runs.
    let out_arg = out.to_str().unwrap();
    let again = refused(&[&only[..], &["--out", out_arg, "--keep-database"]].concat());
    assert!(again.contains("exists"), "{again}");
}

/// Runs `bench --scale tiny --in-process` with `args`, which it must refuse; its error output.
fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--scale", "tiny", "--in-process"])
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success(), "bench ran {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A directory removed when the test ends, failed or not (it holds databases and a key).
struct RemovedAtEnd(std::path::PathBuf);

impl Drop for RemovedAtEnd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether a PostgreSQL server runs on this machine (its CPU is then measured).
fn postgres_here() -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("comm"))
            .is_ok_and(|comm| matches!(comm.trim(), "postgres" | "postmaster"))
    })
}

/// The log parts on PostgreSQL (the login part also needs `pgbench` for its baseline).
#[test]
fn a_tiny_run_on_postgres_measures_the_log_parts() {
    let Ok(url) = std::env::var(testkit::POSTGRES_URL_VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is not set",
            testkit::POSTGRES_URL_VAR
        );
        return;
    };
    let (results, _) = bench(&[
        "--backend",
        "postgres",
        "--only",
        "log",
        "--postgres-url",
        &url,
    ]);
    let postgres = &results["backends"][0];
    assert_eq!(postgres["backend"], "postgres");
    check_log_parts(postgres);
}

/// The login levels on PostgreSQL report its WAL (and its CPU when it runs here) per login,
/// on the empty database and on the pre-filled one.
#[test]
fn a_tiny_prefilled_run_on_postgres_reports_postgres_cost_per_login() {
    let Ok(url) = std::env::var(testkit::POSTGRES_URL_VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is not set",
            testkit::POSTGRES_URL_VAR
        );
        return;
    };
    let (results, report) = bench(&[
        "--backend",
        "postgres",
        "--only",
        "prefilled",
        "--postgres-url",
        &url,
    ]);
    let postgres = &results["backends"][0];
    assert_eq!(postgres["failures"], serde_json::json!([]), "{postgres:#}");
    check_prefilled(postgres);
    let levels = postgres["login"].as_array().unwrap();
    for level in levels.iter().chain([&postgres["prefilled"]["level"]]) {
        assert!(
            level["wal"]["bytes_per_login"].as_f64().unwrap() > 0.0,
            "{level:#}"
        );
        if postgres_here() {
            assert!(
                level["cpu"]["postgres_ms"].as_f64().unwrap() > 0.0,
                "{level:#}"
            );
        }
    }
    // The same level again with compressed full-page images, on a service of its own (this
    // project's CI server lets the bench's role set `wal_compression` and has lz4).
    let lz4 = &postgres["prefilled"]["level_wal_lz4"];
    assert!(
        lz4["logins"].as_u64().is_some_and(|n| n > 0),
        "no lz4 level, or no login in it (may the role set wal_compression?): {lz4:#}"
    );
    assert_eq!(lz4["errors"], 0, "{lz4:#}");
    assert!(
        lz4["wal"]["bytes_per_login"].as_f64().unwrap() > 0.0,
        "{lz4:#}"
    );
    assert!(report.contains("WAL bytes per login at peak"), "{report}");
}
