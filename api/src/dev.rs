//! `identityd dev` (the one-command local run) and `identityd wechat-sim`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use domain::AppId;
use infra::crypto::MasterKey;
use infra::wechat::sim::{SimApp, SimConfig, Simulator};
use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::config::{Config, MIN_SECRET_CHARS};
use crate::startup::{self, shutdown_signal, Application};

/// Where dev mode keeps its database, master key and admin token between runs.
const DEV_DIR: &str = ".identityd";
/// Two demo mini-programs bound to one Open Platform account, so UnionID linking shows.
const DEMO_APPS: [(&str, &str); 2] = [
    ("wxd000000000000001", "demo-secret-1"),
    ("wxd000000000000002", "demo-secret-2"),
];
const DEMO_OPEN_PLATFORM: &str = "demo-open-platform";

#[derive(clap::Args)]
pub struct DevArgs {
    /// Listen on a non-loopback address (IDENTITY_LISTEN): dev mode has a demo admin token
    /// and a simulator anyone reaching it could use, so this must be asked for.
    #[arg(long)]
    public: bool,
    /// Where the WeChat simulator listens. A fixed port by default so a mini-program project
    /// (the demo's `config.js`) can name it once; `127.0.0.1:0` picks a free one.
    #[arg(long, default_value = "127.0.0.1:9080")]
    sim_listen: String,
}

pub async fn run(file: Option<PathBuf>, args: DevArgs) -> anyhow::Result<()> {
    let figment = Config::figment(file.as_deref());
    let mut config =
        Config::extract(figment.join(("database_url", format!("sqlite://{DEV_DIR}/dev.db"))))?;
    if !args.public {
        refuse_beyond_loopback("IDENTITY_LISTEN", &config.listen).await?;
        refuse_beyond_loopback("--sim-listen", &args.sim_listen).await?;
    }
    let dir = Path::new(DEV_DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {DEV_DIR}/"))?;
    if config.master_key.is_none() {
        config.master_key = Some(read_or_create(&dir.join("master.key"), || {
            MasterKey::generate().to_base64().expose_secret().to_owned()
        })?);
    }
    if config.admin_token.is_none() {
        config.admin_token = Some(read_or_create(&dir.join("admin.token"), || {
            format!(
                "dev_{}",
                Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
            )
        })?);
    }
    // Checked once the token is loaded: one from an earlier run's `admin.token` may be weak.
    if args.public {
        config.check_secret_strength().map_err(anyhow::Error::msg)?;
    }

    let mut sim_apps: Vec<SimApp> = Vec::new();
    for (appid, secret) in DEMO_APPS {
        let appid = AppId::parse(appid)?;
        config
            .apps
            .0
            .entry(appid.clone())
            .or_insert_with(|| secret.to_owned().into());
        config
            .push_tokens
            .0
            .entry(appid)
            // Only the simulator, which dev configures below, needs it: a new one each start.
            .or_insert_with(|| {
                Alphanumeric
                    .sample_string(&mut rand::thread_rng(), MIN_SECRET_CHARS)
                    .into()
            });
    }
    for (appid, secret) in &config.apps.0 {
        let demo = DEMO_APPS.iter().any(|(a, _)| *a == appid.as_str());
        sim_apps.push(SimApp {
            appid: appid.clone(),
            secret: secret.expose_secret().to_owned(),
            open_platform: demo.then(|| DEMO_OPEN_PLATFORM.to_owned()),
        });
    }

    let simulator = Simulator::new(SimConfig { apps: sim_apps });
    let sim_listener = TcpListener::bind(&args.sim_listen).await.with_context(|| {
        format!(
            "the WeChat simulator cannot listen on {}: pass --sim-listen 127.0.0.1:0 for any free port",
            args.sim_listen
        )
    })?;
    let sim_addr = sim_listener.local_addr()?;
    let sim_router = simulator.router();
    tokio::spawn(async move { axum::serve(sim_listener, sim_router).await });
    config.wechat_api_base = format!("http://{sim_addr}");

    let app = Application::build(&config).await?;
    let addr = app.local_addr();
    // The simulator pushes its image-check verdicts here, as WeChat would to the URL
    // configured in the mini-program console.
    for (appid, token) in &config.push_tokens.0 {
        let url = format!("http://{addr}/v1/wechat/push/{appid}");
        simulator
            .set_push(appid, &url, token.expose_secret())
            .map_err(|err| anyhow::anyhow!("the simulator's push for {appid}: {err}"))?;
    }
    print_walkthrough(&config, &addr.to_string(), &sim_addr.to_string());
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

/// Dev mode answers to anyone who reaches it (demo admin token, simulator): loopback only,
/// unless `--public`.
async fn refuse_beyond_loopback(setting: &str, listen: &str) -> anyhow::Result<()> {
    let addrs: Vec<_> = tokio::net::lookup_host(startup::listen_addr(listen))
        .await
        .with_context(|| format!("{setting}={listen}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().to_canonical().is_loopback()) {
        anyhow::bail!(
            "identityd dev listens on loopback only, and {setting}={listen} is not: \
             its demo admin token and WeChat simulator would be open to the network. \
             Pass --public if that is what you want"
        );
    }
    Ok(())
}

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<SecretString> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned().into());
    }
    let value = make();
    write_private(path, &value).with_context(|| format!("writing {}", path.display()))?;
    Ok(value.into())
}

#[cfg(unix)]
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

fn print_walkthrough(config: &Config, addr: &str, sim: &str) {
    let (appid, _) = DEMO_APPS[0];
    let admin = config
        .admin_token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
        .unwrap_or_default();
    println!(
        r#"
identityd dev is running on http://{addr} (SQLite: {db})
WeChat simulator: http://{sim}   demo apps: {a1}, {a2} (one Open Platform account)
Admin token (dev only): {admin}
Admin console: http://{addr}/console (sign in with the admin token)

Log a user in as a mini-program would:

  CODE=$(curl -s -X POST http://{sim}/sim/wx.login -H 'content-type: application/json' \
    -d '{{"appid":"{appid}","user":"alice"}}' | sed -E 's/.*"code":"([^"]+)".*/\1/')
  TOKEN=$(curl -s -X POST http://{addr}/v1/wechat/login -H 'content-type: application/json' \
    -d "{{\"appid\":\"{appid}\",\"code\":\"$CODE\"}}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s http://{addr}/v1/me -H "authorization: Bearer $TOKEN"

Then, as an admin: the login history and the audit log.

  curl -s 'http://{addr}/v1/admin/logins?limit=5' -H 'authorization: Bearer {admin}'
  curl -s 'http://{addr}/v1/admin/audit?limit=5' -H 'authorization: Bearer {admin}'

API docs: http://{addr}/docs
"#,
        db = infra::redact::url(&config.database_url),
        a1 = DEMO_APPS[0].0,
        a2 = DEMO_APPS[1].0,
    );
}

#[derive(clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: String,
    /// An app the simulator knows: `appid:secret`, or `appid:secret:open-platform-id` for an app
    /// bound to an Open Platform account (unionid returned). Repeatable.
    #[arg(long = "app", required = true)]
    apps: Vec<String>,
}

pub async fn run_simulator(args: SimArgs) -> anyhow::Result<()> {
    let apps = args
        .apps
        .iter()
        .map(|spec| {
            let mut parts = spec.splitn(3, ':');
            let appid = AppId::parse(parts.next().unwrap_or_default())?;
            let secret = parts
                .next()
                .filter(|s| !s.is_empty())
                .context("--app needs appid:secret")?;
            Ok(SimApp {
                appid,
                secret: secret.to_owned(),
                open_platform: parts.next().map(str::to_owned),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listener = TcpListener::bind(&args.listen).await?;
    println!(
        "WeChat simulator listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, Simulator::new(SimConfig { apps }).router())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
