//! `identityd`: the identity service, its dev mode, migrations and the WeChat simulator.

/// jemalloc, not the system's malloc: glibc keeps what a burst of requests freed in its
/// per-thread arenas, so the resident set settled at the highest concurrency ever seen (a one
/// second stall under 700 logins/s took it from 38 to 70 MiB for good); jemalloc's background
/// thread returns freed pages after its decay time (10 s). `bench --soak` watches this.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    api::cli::run().await
}
