//! Logging. `RUST_LOG` filters; the default is `info` for our crates and `warn` elsewhere.
//! Logs go to stderr: stdout is the commands' answer (`identityd keys rotate` prints the new
//! key id there), and a driver's warning must not end up inside it.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,identityd=info,api=info,infra=info,projections=info,tower_http=info")
    });
    // A second init (tests start many services in one process) is harmless: keep the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}
