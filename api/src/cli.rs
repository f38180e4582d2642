//! The `identityd` command line.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Parser, Subcommand};
use infra::api_keys::Scope;
use infra::store::Store;

use crate::config::Config;
use crate::startup::{shutdown_signal, Application};
use crate::{dev, keys, telemetry};

#[derive(Parser)]
#[command(
    name = "identityd",
    version,
    about = "Event-sourced user identity for WeChat mini-programs"
)]
struct Cli {
    /// TOML configuration file; IDENTITY_* environment variables override it.
    #[arg(long, global = true, env = "IDENTITY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve,
    /// Run locally with no setup: SQLite, the built-in WeChat simulator, demo apps, an admin
    /// token, and a printed curl walk-through.
    Dev(dev::DevArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Run the WeChat simulator alone.
    WechatSim(dev::SimArgs),
    /// Read models: progress, rebuild.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// API keys for admins and analytics.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Token signing keys and the master key.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a token signing key: every instance signs with it within a minute, without a
    /// restart; the previous key stays in the JWKS until its last token has expired.
    Rotate,
    /// Re-wrap the keyring under IDENTITY_MASTER_KEY (the new key), taking it from
    /// IDENTITY_MASTER_KEY_PREVIOUS (the key in use until now). When the keyring's sealing root
    /// is an old master key (a deployment that predates the keyring), or with --new-root, also
    /// replace the sealing root and re-seal every sealed row: stop every instance first;
    /// refresh tokens stop working (users log in again).
    RotateMaster {
        /// Replace the sealing root even if it is not an old master key (a leaked root).
        #[arg(long)]
        new_root: bool,
    },
    /// Retire a signing key now (a leaked one): within IDENTITY_SIGNING_KEY_RELOAD_SECS every
    /// instance stops verifying its tokens and drops it from the JWKS. The key that signs
    /// cannot be retired: run `keys rotate` first.
    Retire {
        /// The key id (`kid`), as `keys rotate` printed it and the JWKS shows it.
        // A kid is base64url: one in 32 starts with `-`, which must not read as a flag.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Each projection's position, the log's head and the lag between them.
    Status,
    /// Rebuild from position 0 into fresh tables and swap them in; the service keeps serving.
    Rebuild {
        /// One of users, login_history, audit_log, daily_stats, sessions; all when omitted.
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an API key and print it once (only its hash is stored).
    CreateKey {
        /// Comma-separated: admin:read, admin:write, events:read, tokens:introspect.
        #[arg(long)]
        scopes: String,
        /// A label for people reading the key list.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the API keys: id, scopes, when created and revoked, name (never secrets).
    ListKeys,
    /// Revoke an API key: requests presenting it are refused from now on.
    RevokeKey {
        /// The key's id: 16 hex digits, as `list-keys` shows it (in a token, what follows
        /// `idk_`, up to the next `_`).
        key_id: String,
    },
}

pub async fn run() -> ExitCode {
    telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve(cli.config).await,
        Command::Dev(args) => dev::run(cli.config, args).await,
        Command::Migrate => migrate(cli.config).await,
        Command::WechatSim(args) => dev::run_simulator(args).await,
        Command::Projections(command) => projections_command(cli.config, command).await,
        Command::Admin(command) => admin_command(cli.config, command).await,
        Command::Keys(command) => keys_command(cli.config, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("identityd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(file.as_deref())?;
    config.check_secret_strength().map_err(anyhow::Error::msg)?;
    let app = Application::build(&config).await?;
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

async fn migrate(file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(file.as_deref())?;
    // Connecting runs the embedded migrations.
    let store = infra::store::connect(&config.database_url).await?;
    println!("migrations applied ({})", store.backend());
    // The one-time personal-data migration needs the master key (it also runs at start).
    if config.master_key.is_none() {
        println!(
            "IDENTITY_MASTER_KEY is not set: the personal-data migration runs at the next start"
        );
        return Ok(());
    }
    // Subkeys derive from the keyring's root, which the master key only wraps.
    let keyring = infra::keyring::open(store.as_ref(), &crate::startup::master_keys(&config)?)
        .await
        .context("opening the keyring")?;
    let read_models =
        projections::ReadModels::connect(&config.database_url, config.stats_timezone.0).await?;
    crate::startup::seal_personal_data(
        &store,
        &read_models,
        &infra::personal_data::PersonalData::new(&keyring.sealing),
        &infra::personal_data::LookupIndex::new(&keyring.lookup),
    )
    .await?;
    println!(
        "personal data sealed ({})",
        infra::personal_data::migration::NAME
    );
    Ok(())
}

async fn projections_command(
    file: Option<PathBuf>,
    command: ProjectionsCommand,
) -> anyhow::Result<()> {
    let config = Config::load(file.as_deref())?;
    let store = infra::store::connect(&config.database_url).await?;
    let models =
        projections::ReadModels::connect(&config.database_url, config.stats_timezone.0).await?;
    let status = match command {
        ProjectionsCommand::Status => models.status().await?,
        ProjectionsCommand::Rebuild { name } => {
            projections::rebuild(&models, store, name.as_deref()).await?
        }
    };
    println!(
        "{:<16} {:>12} {:>12} {:>10}",
        "projection", "position", "head", "lag"
    );
    for p in status {
        println!(
            "{:<16} {:>12} {:>12} {:>10}",
            p.name, p.position, p.head, p.lag
        );
    }
    Ok(())
}

async fn admin_command(file: Option<PathBuf>, command: AdminCommand) -> anyhow::Result<()> {
    let config = Config::load(file.as_deref())?;
    let store = || infra::store::connect(&config.database_url);
    match command {
        AdminCommand::CreateKey { scopes, name } => {
            // Refuse bad scopes before touching the database.
            let scopes = infra::api_keys::parse_scopes(&scopes)?;
            anyhow::ensure!(!scopes.is_empty(), "name at least one scope");
            create_key(store().await?.as_ref(), scopes, &name).await
        }
        AdminCommand::ListKeys => list_keys(store().await?.as_ref()).await,
        AdminCommand::RevokeKey { key_id } => revoke_key(store().await?.as_ref(), &key_id).await,
    }
}

async fn create_key(store: &dyn Store, scopes: BTreeSet<Scope>, name: &str) -> anyhow::Result<()> {
    let key = infra::api_keys::generate(name, scopes, Utc::now());
    store.insert_api_key(&key.stored).await?;
    eprintln!(
        "API key {} ({}) created; it is shown once, store it now:",
        key.stored.key_id,
        key.stored.scopes_text()
    );
    println!("{}", key.token);
    Ok(())
}

async fn list_keys(store: &dyn Store) -> anyhow::Result<()> {
    println!(
        "{:<16}  {:<34}  {:<20}  {:<20}  name",
        "key", "scopes", "created", "revoked"
    );
    for key in store.api_keys().await? {
        let line = format!(
            "{:<16}  {:<34}  {:<20}  {:<20}  {}",
            key.key_id,
            key.scopes_text(),
            rfc3339(key.created_at),
            key.revoked_at.map_or_else(|| "-".to_owned(), rfc3339),
            key.name
        );
        println!("{}", line.trim_end());
    }
    Ok(())
}

async fn revoke_key(store: &dyn Store, key_id: &str) -> anyhow::Result<()> {
    let key = store
        .revoke_api_key(key_id, Utc::now())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no API key {key_id}"))?;
    let since = key
        .revoked_at
        .map_or_else(String::new, |at| format!(" since {}", rfc3339(at)));
    eprintln!("API key {key_id} is revoked{since}");
    Ok(())
}

async fn keys_command(file: Option<PathBuf>, command: KeysCommand) -> anyhow::Result<()> {
    let config = Config::load(file.as_deref())?;
    match command {
        KeysCommand::Rotate => {
            let key = keys::rotate_signing_key(&config).await?;
            let signs_from = key.activates_at.unwrap_or(key.created_at);
            eprintln!(
                "signing key {} added: published in the JWKS at each instance's next reload, \
                 every instance signing with it from {} (database clock); the previous key stays \
                 published for IDENTITY_ACCESS_TOKEN_TTL_SECS (as configured here: use the \
                 longest of any instance) + 60 s after that",
                key.kid,
                rfc3339(signs_from)
            );
            println!("{}", key.kid);
        }
        KeysCommand::Retire { kid } => {
            keys::retire_signing_key(&config, &kid).await?;
            eprintln!(
                "signing key {kid} retired: every instance stops verifying its tokens and drops \
                 it from the JWKS at its next reload (within {} s)",
                config.signing_key_reload_secs
            );
        }
        KeysCommand::RotateMaster { new_root } => {
            let rotation = keys::rotate_master(&config, new_root).await?;
            eprintln!(
                "keyring: {} entr{} re-wrapped under IDENTITY_MASTER_KEY, {} already under it",
                rotation.rewrapped,
                if rotation.rewrapped == 1 { "y" } else { "ies" },
                rotation.current
            );
            if rotation.new_root {
                let [session, signing, data] = rotation.resealed;
                eprintln!(
                    "{}new sealing root: re-sealed {session} session key(s), {signing} signing \
                     key(s) and {data} user data key(s) under it. Refresh tokens issued before \
                     no longer verify: users log in again (silently, with wx.login). Restart \
                     every instance now: one still running holds the old root.",
                    if rotation.legacy_root {
                        "the sealing root was the old master key itself (a deployment that \
                         predates the keyring): "
                    } else {
                        ""
                    }
                );
                if rotation.legacy_root {
                    eprintln!(
                        "what the old master key can still do, with a copy of the database \
                         taken from now on: derive the look-up hashes (phone and claim \
                         indexes, kept so look-ups keep working), i.e. confirm a guessed phone \
                         number or openid. It opens no sealed row and forges no token. A copy \
                         taken before this rotation still opens with it."
                    );
                }
            }
            eprintln!("restart the instances without IDENTITY_MASTER_KEY_PREVIOUS");
        }
    }
    Ok(())
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, KeysCommand};

    #[test]
    fn a_key_id_that_starts_with_a_dash_is_a_key_id() {
        let cli = Cli::try_parse_from(["identityd", "keys", "retire", "-F3xq_abc"])
            .expect("a kid may start with '-'");
        assert!(matches!(
            cli.command,
            Command::Keys(KeysCommand::Retire { kid }) if kid == "-F3xq_abc"
        ));
    }
}
