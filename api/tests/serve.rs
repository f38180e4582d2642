//! `identityd serve` and `identityd dev` refuse what would weaken them, with a clear message,
//! and keep credentials out of their logs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const STRONG: &str = "0123456789abcdef0123456789abcdef";

fn identityd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_identityd"));
    command.args(args).env_remove("IDENTITY_CONFIG");
    for (name, _) in std::env::vars() {
        if name.starts_with("IDENTITY_") {
            command.env_remove(name);
        }
    }
    command
        .env("IDENTITY_DATABASE_URL", testkit::fresh_sqlite_url())
        .env("IDENTITY_MASTER_KEY", MASTER_KEY)
        .env("IDENTITY_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied());
    command
}

fn refused(output: Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_short_guessable_secrets() {
    let short = "short-admin-token";
    let error = refused(
        identityd(&["serve"], &[("IDENTITY_ADMIN_TOKEN", short)])
            .output()
            .expect("runs"),
    );
    assert!(
        error.contains("IDENTITY_ADMIN_TOKEN") && error.contains("32"),
        "{error}"
    );
    assert!(!error.contains(short), "the secret is not printed: {error}");

    let error = refused(
        identityd(
            &["serve"],
            &[
                ("IDENTITY_ADMIN_TOKEN", STRONG),
                ("IDENTITY_APPS", "wx0000000000000002:s"),
                (
                    "IDENTITY_CLOUD_LOGIN_SECRETS",
                    "wx0000000000000002:guessable",
                ),
            ],
        )
        .output()
        .expect("runs"),
    );
    assert!(error.contains("IDENTITY_CLOUD_LOGIN_SECRETS"), "{error}");
    assert!(!error.contains("guessable"), "{error}");
}

#[test]
fn serve_refuses_the_retired_forwarded_for_switch() {
    let error = refused(
        identityd(&["serve"], &[("IDENTITY_TRUST_FORWARDED_FOR", "true")])
            .output()
            .expect("runs"),
    );
    assert!(error.contains("IDENTITY_TRUSTED_PROXIES"), "{error}");
}

#[test]
fn dev_refuses_a_public_address_unless_asked() {
    let dir = std::env::temp_dir().join(format!("identityd-dev-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("a directory");
    for listen in ["0.0.0.0:0", ":0", "[::]:0"] {
        let error = refused(
            identityd(&["dev"], &[("IDENTITY_LISTEN", listen)])
                .current_dir(&dir)
                .output()
                .expect("runs"),
        );
        assert!(error.contains("--public"), "{listen}: {error}");
    }
    // The simulator's address too.
    let error = refused(
        identityd(
            &["dev", "--sim-listen", "0.0.0.0:0"],
            &[("IDENTITY_LISTEN", "127.0.0.1:0")],
        )
        .current_dir(&dir)
        .output()
        .expect("runs"),
    );
    assert!(error.contains("--sim-listen=0.0.0.0:0"), "{error}");
    // `--public` passes that check, and then holds dev to serve's rule on secrets.
    let error = refused(
        identityd(
            &["dev", "--public"],
            &[
                ("IDENTITY_LISTEN", "0.0.0.0:0"),
                ("IDENTITY_ADMIN_TOKEN", "weak"),
            ],
        )
        .current_dir(&dir)
        .output()
        .expect("runs"),
    );
    assert!(error.contains("IDENTITY_ADMIN_TOKEN"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dev_public_refuses_a_weak_admin_token_kept_from_an_earlier_run() {
    let dir = std::env::temp_dir().join(format!("identityd-dev-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(dir.join(".identityd")).expect("a directory");
    std::fs::write(dir.join(".identityd/admin.token"), "weak-kept-token").expect("a token");
    let mut child = identityd(&["dev", "--public"], &[("IDENTITY_LISTEN", "127.0.0.1:0")])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("output");
    let error = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        status.is_some_and(|s| !s.success()),
        "served with the weak token: {error}"
    );
    assert!(error.contains("IDENTITY_ADMIN_TOKEN"), "{error}");
    assert!(!error.contains("weak-kept-token"), "{error}");
}

/// The relay logs the NATS URL it connected to: without the password in it.
#[test]
fn logged_urls_carry_no_credentials() {
    let Ok(nats) = std::env::var(testkit::NATS_URL_VAR) else {
        testkit::skip::<()>("NATS", &format!("{} is not set", testkit::NATS_URL_VAR));
        return;
    };
    let with_password = nats.replacen("nats://", "nats://identity:hunter2-secret@", 1);
    let stream = format!("EDGE_{}", uuid::Uuid::now_v7().simple());
    let command = identityd(
        &["serve"],
        &[
            ("IDENTITY_ADMIN_TOKEN", STRONG),
            ("IDENTITY_NATS_URL", &with_password),
            ("IDENTITY_NATS_STREAM", &stream),
            ("IDENTITY_NATS_SUBJECT_PREFIX", &format!("edge.{stream}")),
            ("RUST_LOG", "info"),
        ],
    );
    let log = lines_until(command, "relay connected to NATS").join("\n");
    assert!(log.contains("relay connected to NATS"), "{log}");
    assert!(log.contains("***@"), "{log}");
    assert!(!log.contains("hunter2-secret"), "{log}");
}

/// Under a small open-files limit, the connection cap is lowered to fit, and says so.
#[test]
fn the_connection_cap_is_fitted_under_the_open_files_limit() {
    let Ok(status) = Command::new("prlimit").arg("--version").output() else {
        return; // no prlimit(1) here
    };
    assert!(status.status.success());
    let identityd_bin = env!("CARGO_BIN_EXE_identityd");
    let configured = identityd(&["serve"], &[("IDENTITY_ADMIN_TOKEN", STRONG)]);
    let mut command = Command::new("prlimit");
    command.args(["--nofile=256:256", identityd_bin, "serve"]);
    for (name, value) in configured.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.env("RUST_LOG", "warn");
    let lines = lines_until(command, "IDENTITY_MAX_CONNECTIONS");
    let warned = lines.last().cloned().unwrap_or_default();
    assert!(warned.contains("IDENTITY_MAX_CONNECTIONS"), "{warned}");
    assert!(warned.contains("128"), "{warned}");
}

/// Starts `command` and reads its log (standard error) until a line contains `needle` (30 s
/// at most between lines), then stops it: the lines read.
fn lines_until(command: Command, needle: &str) -> Vec<String> {
    let (mut child, read) = started_until(command, needle);
    let _ = child.kill();
    let _ = child.wait();
    read
}

/// Starts `command` and reads its log (standard error) until a line contains `needle` (30 s at
/// most between lines): the process, still running, and the lines read.
fn started_until(mut command: Command, needle: &str) -> (std::process::Child, Vec<String>) {
    let mut child = command.stderr(Stdio::piped()).spawn().expect("starts");
    let log = child.stderr.take().expect("stderr");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut read = Vec::new();
    while let Ok(line) = received.recv_timeout(Duration::from_secs(30)) {
        let found = line.contains(needle);
        read.push(line);
        if found {
            break;
        }
    }
    (child, read)
}

/// The service runs on jemalloc with its background thread, which gives memory freed after a
/// burst back to the system on a timer (see `main.rs`); the system allocator kept it for good.
#[cfg(target_os = "linux")]
#[test]
fn serve_runs_jemalloc_with_its_background_thread() {
    let command = identityd(
        &["serve"],
        &[("IDENTITY_ADMIN_TOKEN", STRONG), ("RUST_LOG", "info")],
    );
    let (mut child, lines) = started_until(command, "identityd listening");
    let threads = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .map(|tasks| {
            tasks
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("identityd listening")),
        "identityd did not start: {lines:?}"
    );
    assert!(
        threads.iter().any(|name| name.starts_with("jemalloc_bg")),
        "no allocator background thread among {threads:?}"
    );
}
