//! Chromium and `chromedriver`: installed when missing, started on a port of their own, ended
//! with the test.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use super::PART;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to listen (seconds on a busy machine).
const STARTUP: std::time::Duration = std::time::Duration::from_secs(60);

/// Where Debian puts the browser and its driver.
pub struct Binaries {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// The browser binaries, installed first by `tests/browser/install-chromium.sh` when missing
/// (once: test binaries wait for each other on a lock file); `None` when that fails.
pub fn installed_binaries() -> Option<Binaries> {
    let binaries = Binaries {
        chromium: PathBuf::from(CHROMIUM),
        chromedriver: PathBuf::from(CHROMEDRIVER),
    };
    let present = |b: &Binaries| b.chromium.exists() && b.chromedriver.exists();
    if present(&binaries) {
        return Some(binaries);
    }
    let lock = File::create(std::env::temp_dir().join("identity-tests-chromium.lock"))
        .expect("create the Chromium install lock");
    lock.lock().expect("take the Chromium install lock");
    if present(&binaries) {
        return Some(binaries);
    }
    let script = crate::node::workspace_dir().join("tests/browser/install-chromium.sh");
    let installed = Command::new("bash").arg(&script).output();
    match installed {
        Ok(output) if output.status.success() && present(&binaries) => Some(binaries),
        Ok(output) => testkit::skip(
            PART,
            &format!(
                "Chromium is not installed and {} could not install it:\n{}{}",
                script.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ),
        Err(error) => testkit::skip(PART, &format!("{} did not run: {error}", script.display())),
    }
}

/// A running `chromedriver` (in a process group of its own, with the Chromium it starts),
/// ended on drop.
pub struct Driver {
    process: Child,
    url: String,
}

impl Driver {
    /// Starts `chromedriver` on a port the system picks (`--port=0`), read from the line it
    /// prints once listening.
    pub fn start(binaries: &Binaries) -> Self {
        use std::os::unix::process::CommandExt;
        let mut process = Command::new(&binaries.chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let stdout = process.stdout.take().expect("chromedriver's stdout");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        // Reads until the port line, then on so a full pipe never blocks chromedriver.
        std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    let _ = port_tx.send(Ok(port));
                } else {
                    seen.push_str(&line);
                    seen.push('\n');
                }
            }
            let _ = port_tx.send(Err(seen));
        });
        let driver = |port| Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
        };
        match port_rx.recv_timeout(STARTUP) {
            Ok(Ok(port)) => driver(port),
            Ok(Err(seen)) => panic!("chromedriver ended before listening:\n{seen}"),
            Err(_) => {
                drop(driver(0));
                panic!("chromedriver did not listen within {STARTUP:?}")
            }
        }
    }

    /// A WebDriver session on a headless Chromium (English first, as a browser out of the box;
    /// the browser log kept for [`browser_log`]).
    pub async fn connect(&self, binaries: &Binaries) -> Client {
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binaries.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1280,900",
                    "--lang=en-US",
                    "--no-first-run",
                    "--disable-dev-shm-usage",
                ],
                "prefs": { "intl.accept_languages": "en-US,en" },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are an object")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("a WebDriver session on {}: {error}", self.url))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any Chromium a failed test left running.
        let group = format!("-{}", self.process.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.process.wait();
    }
}

/// The port in chromedriver's "ChromeDriver was started successfully on port 41234." line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("started successfully on port ").nth(1)?;
    rest.trim().trim_end_matches('.').parse().ok()
}

/// The browser's console log since the last read (chromedriver's `se/log` extension):
/// entries with `level`, `source` and `message`.
pub async fn browser_log(client: &Client) -> Vec<Value> {
    let log = client
        .issue_cmd(BrowserLog)
        .await
        .expect("the browser's console log");
    match log {
        Value::Array(entries) => entries,
        other => panic!("the browser log is not a list: {other}"),
    }
}

#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/se/log"))
    }

    fn method_and_body(&self, _url: &url::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({ "type": "browser" }).to_string();
        (reqwest::Method::POST, Some(body))
    }
}
