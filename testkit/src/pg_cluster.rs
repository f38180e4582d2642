//! A private PostgreSQL server for the tests that stop, restart or break it: a cluster of its
//! own (`initdb` into a temporary directory, `pg_ctl` on a free port), never the shared server
//! of `IDENTITY_TEST_POSTGRES_URL`. The binaries are the machine's (`pg_config --bindir`).
//!
//! `initdb` refuses to run as root (CI runs as root): then the cluster runs as the `postgres`
//! OS user (`runuser`), in a directory that user owns. Fsync is off: a test's data need not
//! survive a power cut. Dropping the cluster stops it (`-m immediate`) and deletes the
//! directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running (or stopped, between `stop` and `start_again`) private cluster.
pub struct PgCluster {
    server: Server,
}

/// Where a cluster lives and how its binaries run: what the blocking helpers take along.
#[derive(Clone)]
struct Server {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// The OS user the server runs as, when not the current one (running as root).
    run_as: Option<String>,
}

/// The OS user a cluster runs as when the tests run as root.
const SERVER_USER: &str = "postgres";

impl PgCluster {
    /// Creates and starts a cluster; `None` (a line on stderr) when the machine has no
    /// PostgreSQL binaries to do it with, which fails the test under `CI=true`.
    pub async fn start() -> Option<Self> {
        let bindir = match bindir() {
            Ok(dir) => dir,
            Err(why) => return crate::skip("private PostgreSQL cluster", &why),
        };
        let run_as = is_root().then(|| SERVER_USER.to_owned());
        let dir = std::env::temp_dir().join(format!("identity-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        if let Some(user) = &run_as {
            chown(&dir, user);
        }
        let cluster = Self {
            server: Server {
                port: free_port(),
                dir,
                bindir,
                run_as,
            },
        };
        let server = cluster.server.clone();
        blocking(move || {
            let data = server.data();
            server.run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            );
            server.start();
        })
        .await;
        Some(cluster)
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.server.port
        )
    }

    /// `pg_ctl stop -m fast`: sessions are ended (57P01), new connections refused; returns
    /// once the server is down.
    pub async fn stop(&self) {
        let server = self.server.clone();
        blocking(move || server.pg_ctl(&["stop", "-m", "fast", "-w"])).await;
    }

    /// `pg_ctl start`; returns once the server accepts connections.
    pub async fn start_again(&self) {
        let server = self.server.clone();
        blocking(move || server.start()).await;
    }

    /// `pg_ctl restart -m fast`; returns once the server accepts connections again.
    pub async fn restart(&self) {
        let server = self.server.clone();
        blocking(move || {
            let (options, log) = (server.options(), server.log_path());
            server.pg_ctl(&["restart", "-m", "fast", "-w", "-l", &log, "-o", &options]);
        })
        .await;
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        self.server.log()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .server
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D", &self.server.data()])
            .output();
        let _ = std::fs::remove_dir_all(&self.server.dir);
    }
}

/// Runs blocking work (a `pg_ctl` that waits) off the runtime's workers, which serve the
/// service under test meanwhile.
async fn blocking(work: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
}

impl Server {
    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=100",
            self.port,
            self.dir.display()
        )
    }

    /// Where the server writes its log. Always given (`-l`): a server started without one
    /// would hold `pg_ctl`'s output open, and waiting for that output would never end.
    fn log_path(&self) -> String {
        self.dir.join("server.log").to_string_lossy().into_owned()
    }

    fn start(&self) {
        let (options, log) = (self.options(), self.log_path());
        self.pg_ctl(&["start", "-w", "-t", "30", "-l", &log, "-o", &options]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let mut all = args.to_vec();
        all.extend(["-D", &data]);
        self.run("pg_ctl", &all);
    }

    /// One of the cluster's binaries, run as the server's user when we are root.
    fn command(&self, program: &str) -> Command {
        let binary = self.bindir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        // The server's user may not be allowed into the current directory.
        command.current_dir(&self.dir);
        command
    }

    /// Runs `program`; panics, showing its output and the server's log, when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

/// `pg_config --bindir`, if it has `initdb` and `pg_ctl`.
fn bindir() -> Result<PathBuf, String> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| format!("pg_config: {e}"))?;
    if !output.status.success() {
        return Err("pg_config --bindir failed".into());
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    for program in ["initdb", "pg_ctl"] {
        if !dir.join(program).exists() {
            return Err(format!("no {program} in {}", dir.display()));
        }
    }
    Ok(dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Gives `dir` to `user`, so a server running as them may write in it.
fn chown(dir: &Path, user: &str) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, user])
            .output()
            .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"));
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no OS user {user} to run PostgreSQL as"))
    };
    std::os::unix::fs::chown(dir, Some(id("-u")), Some(id("-g")))
        .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
}

/// A port nobody listens on now (the kernel's pick for a listener, released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}
