//! `identityd serve` as a child process on a given database, for tests that kill it: started
//! on a port of its own choosing (read back from its log), ready when `/readyz` says so,
//! SIGKILLed on demand and always on drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The bootstrap API key, with every scope (`serve` wants at least 32 characters).
pub const ADMIN_TOKEN: &str = "crash-test-admin-token-0123456789abcdef";
/// Every start on one database must use the same master key: it seals the signing keys.
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Log lines kept to explain a failure.
const LOG_TAIL: usize = 40;

/// What every run of `identityd` on one database is given.
#[derive(Clone)]
pub struct Setup {
    pub database_url: String,
    /// The WeChat simulator's base URL.
    pub wechat_api_base: String,
    /// `IDENTITY_APPS`.
    pub apps: String,
}

impl Setup {
    /// `identityd args…` configured by this setup alone (nothing from the test's environment),
    /// with no per-client limits: all the load comes from one address.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_identityd"));
        command.args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("IDENTITY_") {
                command.env_remove(name);
            }
        }
        command
            .env("IDENTITY_DATABASE_URL", &self.database_url)
            .env("IDENTITY_WECHAT_API_BASE", &self.wechat_api_base)
            .env("IDENTITY_APPS", &self.apps)
            .env("IDENTITY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("IDENTITY_MASTER_KEY", MASTER_KEY)
            .env("IDENTITY_LOGIN_RATE_PER_MINUTE", "0")
            .env("IDENTITY_MAX_CONNECTIONS_PER_IP", "0")
            .env("IDENTITY_AUTH_FAILURES_PER_MINUTE", "0")
            .stdin(Stdio::null());
        command
    }
}

/// A running `identityd serve`.
pub struct Identityd {
    child: Child,
    pub base: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Identityd {
    /// Starts the service and waits until `/readyz` answers 200 (`within` at most).
    pub async fn start(setup: &Setup, within: Duration) -> Self {
        let deadline = Instant::now() + within;
        let mut child = setup
            .command(&["serve"])
            .env("IDENTITY_LISTEN", "127.0.0.1:0")
            // The bound address is logged at start; nothing per request.
            .env("RUST_LOG", "warn,api::startup=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start identityd");
        let (address, log) = read_log(child.stderr.take().expect("its stderr"));
        let mut service = Self {
            child,
            base: String::new(),
            log,
        };
        let address = loop {
            match address.recv_timeout(Duration::from_millis(100)) {
                Ok(address) => break address,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    service.assert_running();
                }
                Err(_) => service.fail("did not log its address"),
            }
        };
        service.base = format!("http://{address}");
        let http = reqwest::Client::new();
        loop {
            let ready = http
                .get(format!("{}/readyz", service.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return service;
            }
            if Instant::now() >= deadline {
                service.fail("was not ready in time");
            }
            service.assert_running();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown of any kind, as a power cut or the OOM killer would.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!("exited: {status}"));
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        self.sigkill();
        // Let the reader take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let tail: Vec<&str> = log.iter().map(String::as_str).collect();
        panic!("identityd {what}; its log ends:\n{}", tail.join("\n"));
    }
}

impl Drop for Identityd {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// Drains the child's log (so it never blocks on a full pipe), keeping the last lines, and
/// sends the bound address once it is logged.
fn read_log(
    stderr: std::process::ChildStderr,
) -> (mpsc::Receiver<String>, Arc<Mutex<VecDeque<String>>>) {
    let (address, found) = mpsc::channel();
    let log = Arc::new(Mutex::new(VecDeque::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("identityd listening") {
                if let Some(bound) = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("address="))
                {
                    let _ = address.send(bound.to_owned());
                }
            }
            let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() == LOG_TAIL {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
    (found, log)
}
