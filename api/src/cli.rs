//! The `identityd` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::startup::{shutdown_signal, Application};
use crate::{dev, telemetry};

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
    Dev,
    /// Apply database migrations and exit.
    Migrate,
    /// Run the WeChat simulator alone.
    WechatSim(dev::SimArgs),
}

pub async fn run() -> ExitCode {
    telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve(cli.config).await,
        Command::Dev => dev::run(cli.config).await,
        Command::Migrate => migrate(cli.config).await,
        Command::WechatSim(args) => dev::run_simulator(args).await,
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
    let app = Application::build(&config).await?;
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

async fn migrate(file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(file.as_deref())?;
    // Connecting runs the embedded migrations.
    let store = infra::store::connect(&config.database_url).await?;
    println!("migrations applied ({})", store.backend());
    Ok(())
}
