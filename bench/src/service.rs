//! What the benchmarks run against: a fresh database, the WeChat simulator (in this process),
//! and the real service, as a child process (`identityd serve`, so its memory is its own) or
//! in this process (`--in-process`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use api::config::{Apps, Config};
use api::startup::Application;
use domain::AppId;
use infra::crypto::MasterKey;
use infra::wechat::sim::{SimApp, SimConfig, Simulator};
use secrecy::ExposeSecret;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pgserver::StandInAutoanalyze;

/// Two apps of one Open Platform account: a person logging into both becomes one user with
/// two WeChat accounts (`WeChatAccountLinked`).
pub const APP_A: &str = "wxbe00000000000001";
pub const APP_B: &str = "wxbe00000000000002";
const SECRET_A: &str = "bench-secret-a";
pub const SECRET_B: &str = "bench-secret-b";
pub const OPEN_PLATFORM: &str = "bench-open-platform";
/// The bootstrap API key: every scope, including `admin:read` and `events:read`.
/// `serve` refuses a bootstrap key under 32 characters.
pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";

/// What a mini-program's requests carry as their User-Agent (WeChat sets it): the device every
/// login records, the generated ones and the load's alike, so their rows are of one size.
pub const PHONE_USER_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) \
    NetType/WIFI";

pub use infra::database_url::Backend;

/// A database nobody else uses: a SQLite file in a temp directory, or a new PostgreSQL schema.
pub struct Database {
    pub url: String,
    /// Shared by every start of the service on this database (it seals the signing keys).
    pub master_key: String,
    cleanup: Cleanup,
    /// The bench made it, so a service on it gets [`StandInAutoanalyze`] where the server
    /// runs without autovacuum; not on the caller's databases (`pg-budget` measures the
    /// service's own cost on a server without autovacuum on purpose).
    stand_in_autoanalyze: bool,
}

enum Cleanup {
    /// Somebody else's database, or one kept for later runs: nothing to remove.
    Nothing,
    File(PathBuf),
    Schema {
        base: String,
        schema: String,
    },
}

impl Database {
    pub async fn fresh(backend: Backend, postgres_base: &str) -> anyhow::Result<Self> {
        let master_key = MasterKey::generate().to_base64().expose_secret().to_owned();
        let tag = format!("{}_{:08x}", unix_secs(), rand::random::<u32>());
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("identity-bench-{tag}"));
                std::fs::create_dir_all(&dir)?;
                let url = format!("sqlite://{}", dir.join("bench.db").display());
                (url, Cleanup::File(dir))
            }
            Backend::Postgres => {
                let schema = format!("bench_{tag}");
                let mut conn = PgConnection::connect(postgres_base)
                    .await
                    .context("connecting to PostgreSQL (--postgres-url)")?;
                sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
                    .execute(&mut conn)
                    .await?;
                let separator = if postgres_base.contains('?') {
                    '&'
                } else {
                    '?'
                };
                let url = format!("{postgres_base}{separator}options=-csearch_path%3D{schema}");
                let base = postgres_base.to_owned();
                (url, Cleanup::Schema { base, schema })
            }
        };
        Ok(Self {
            url,
            master_key,
            cleanup,
            stand_in_autoanalyze: backend == Backend::Postgres,
        })
    }

    /// A database made by the caller, which also removes it.
    pub fn existing(url: String) -> Self {
        Self {
            url,
            master_key: MasterKey::generate().to_base64().expose_secret().to_owned(),
            cleanup: Cleanup::Nothing,
            stand_in_autoanalyze: false,
        }
    }

    /// A database the bench made and kept in an earlier run (`--keep-database`), with the
    /// master key it was made with; left in place.
    pub fn kept(backend: Backend, url: String, master_key: String) -> Self {
        Self {
            url,
            master_key,
            cleanup: Cleanup::Nothing,
            stand_in_autoanalyze: backend == Backend::Postgres,
        }
    }

    /// The same PostgreSQL database, its sessions run with `setting = value` (a per-session
    /// server setting, `-c` in the startup options); removed with the original only. sqlx joins
    /// repeated `options` parameters with a space, so this adds to the schema's `search_path`.
    pub fn with_session_setting(&self, setting: &str, value: &str) -> Self {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{}{separator}options=-c%20{setting}%3D{value}", self.url),
            master_key: self.master_key.clone(),
            cleanup: Cleanup::Nothing,
            stand_in_autoanalyze: self.stand_in_autoanalyze,
        }
    }

    /// Deletes the file or drops the schema (best effort).
    pub async fn remove(self) {
        match self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema { base, schema } => {
                if let Ok(mut conn) = PgConnection::connect(&base).await {
                    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                    let _ = sqlx::query(&sql).execute(&mut conn).await;
                }
            }
        }
    }
}

/// The WeChat simulator, serving from this process.
pub struct Sim {
    pub base: String,
    task: JoinHandle<()>,
}

impl Sim {
    pub async fn start() -> anyhow::Result<Self> {
        let app = |appid: &str, secret: &str| -> anyhow::Result<SimApp> {
            Ok(SimApp {
                appid: AppId::parse(appid)?,
                secret: secret.to_owned(),
                open_platform: Some(OPEN_PLATFORM.to_owned()),
            })
        };
        let simulator = Simulator::new(SimConfig {
            apps: vec![app(APP_A, SECRET_A)?, app(APP_B, SECRET_B)?],
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let router = simulator.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { base, task })
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How to run the service.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `identityd serve` at this path: its own process, its own peak RSS.
    Child(PathBuf),
    /// `Application::build` in this process: the RSS then includes the load generator.
    InProcess,
}

/// A running service.
pub struct Service {
    pub base: String,
    pub database_url: String,
    running: Running,
    /// PostgreSQL without autovacuum: the bench analyzes for it while the service runs.
    _autoanalyze: Option<StandInAutoanalyze>,
}

enum Running {
    Child(tokio::process::Child),
    InProcess {
        stop: oneshot::Sender<()>,
        task: JoinHandle<std::io::Result<()>>,
    },
}

impl Service {
    pub async fn start(mode: &Mode, db: &Database, sim: &Sim) -> anyhow::Result<Self> {
        Self::start_with(mode, db, sim, &[]).await
    }

    /// As `start`, with more environment for the child (ignored in process).
    pub async fn start_with(
        mode: &Mode,
        db: &Database,
        sim: &Sim,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let (base, running) = match mode {
            Mode::Child(binary) => {
                let port = free_port()?;
                let child = serve_command(binary, port, db)
                    .envs(env.iter().copied())
                    .env("IDENTITY_WECHAT_API_BASE", &sim.base)
                    .env("IDENTITY_APPS", apps())
                    // As in process: one client address sends all the load.
                    .env("IDENTITY_LOGIN_RATE_PER_MINUTE", "0")
                    .env("IDENTITY_MAX_CONNECTIONS_PER_IP", "0")
                    .env("IDENTITY_AUTH_FAILURES_PER_MINUTE", "0")
                    .spawn()
                    .with_context(|| format!("starting {}", binary.display()))?;
                (format!("http://127.0.0.1:{port}"), Running::Child(child))
            }
            Mode::InProcess => {
                let config = Config {
                    database_url: db.url.clone(),
                    listen: "127.0.0.1:0".into(),
                    wechat_api_base: sim.base.clone(),
                    apps: serde_json::from_value::<Apps>(serde_json::json!(apps()))?,
                    admin_token: Some(ADMIN_TOKEN.to_owned().into()),
                    master_key: Some(db.master_key.clone().into()),
                    token_issuer: "identityd-bench".into(),
                    login_rate_per_minute: 0,
                    max_connections_per_ip: 0,
                    auth_failures_per_minute: 0,
                    ..Config::defaults()
                };
                let app = Application::build(&config).await?;
                let base = format!("http://{}", app.local_addr());
                let (stop, stopped) = oneshot::channel::<()>();
                let task = tokio::spawn(app.run_until(async move {
                    let _ = stopped.await;
                }));
                (base, Running::InProcess { stop, task })
            }
        };
        let database_url = db.url.clone();
        let autoanalyze = match db.stand_in_autoanalyze {
            true => StandInAutoanalyze::start_if_needed(&db.url).await,
            false => None,
        };
        Self {
            base,
            database_url,
            running,
            _autoanalyze: autoanalyze,
        }
        .until_healthy()
        .await
    }

    async fn until_healthy(mut self) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        // Generous: on a pre-filled database (1M people) the service's start-up reads grow
        // with it, and a debug build on a busy machine is slow.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Running::Child(child) = &mut self.running {
                if let Some(status) = child.try_wait()? {
                    bail!("identityd exited at start: {status}");
                }
            }
            let healthy = http
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return Ok(self);
            }
            if Instant::now() > deadline {
                bail!("identityd did not answer /healthz within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The service's process id when it runs as a child.
    pub fn pid(&self) -> Option<u32> {
        match &self.running {
            Running::Child(child) => child.id(),
            Running::InProcess { .. } => None,
        }
    }

    /// The service's memory: peak (`VmHWM`) and current (`VmRSS`) resident set, in KiB.
    pub fn memory(&self) -> Memory {
        let status = match &self.running {
            Running::Child(child) => child
                .id()
                .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok()),
            Running::InProcess { .. } => std::fs::read_to_string("/proc/self/status").ok(),
        }
        .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        };
        Memory {
            of: match self.running {
                Running::Child(_) => "identityd child process",
                Running::InProcess { .. } => "bench process (service + load generator)",
            },
            peak_rss_mib: field("VmHWM:").map(mib),
            rss_mib: field("VmRSS:").map(mib),
        }
    }

    /// The child's open file descriptors (`/proc/<pid>/fd`: sockets, database files, pipes);
    /// `None` in process (the load generator's would count too) or when unreadable.
    pub fn open_files(&self) -> Option<u64> {
        let pid = self.pid()?;
        let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        Some(entries.count() as u64)
    }

    /// Graceful stop (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(self) {
        match self.running {
            Running::Child(mut child) => {
                if let Some(pid) = child.id() {
                    let _ = tokio::process::Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .await;
                }
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
            Running::InProcess { stop, task } => {
                let _ = stop.send(());
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub of: &'static str,
    pub peak_rss_mib: Option<f64>,
    pub rss_mib: Option<f64>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn apps() -> String {
    format!("{APP_A}:{SECRET_A},{APP_B}:{SECRET_B}")
}

/// `identityd serve` on `port` and `db`, with nothing from the environment's configuration,
/// quiet, killed with its handle.
pub fn serve_command(binary: &Path, port: u16, db: &Database) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("serve")
        .env_remove("IDENTITY_CONFIG")
        .env_remove("IDENTITY_NATS_URL")
        .env("IDENTITY_DATABASE_URL", &db.url)
        .env("IDENTITY_LISTEN", format!("127.0.0.1:{port}"))
        .env("IDENTITY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("IDENTITY_MASTER_KEY", &db.master_key)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

/// A port free a moment ago (the child binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
