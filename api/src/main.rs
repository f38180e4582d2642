//! `identityd`: the identity service, its dev mode, migrations and the WeChat simulator.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    api::cli::run().await
}
