//! Real headless Chromium, driven over WebDriver, for the console tests: a [`Browser`] is one
//! `chromedriver` on a port of its own (killed with the browser on drop) and one session.
//!
//! Every page a test [`records`](Browser::record) is screenshotted to
//! `target/console-screenshots/<test>-<page>.png`, checked for console errors and CSP
//! violations, and kept for the Nu HTML checker, which [`Browser::finish`] runs on all of them
//! at once (one JVM start per test, not per page).
//!
//! Chromium comes from Debian (`tests/browser/install-chromium.sh`, which the harness runs when
//! the binaries are missing); without it the tests skip, and fail under `CI=true`.

mod driver;
mod html_check;

use std::path::PathBuf;

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use reqwest::header::{ACCEPT, COOKIE, ORIGIN};
use serde_json::{json, Value};

use driver::Driver;

/// The console's session cookie over plain http (tests serve http on 127.0.0.1).
pub const SESSION_COOKIE: &str = "identity_console";

/// How long a click's page may take to load (a busy machine, a debug build).
const PAGE_LOAD: std::time::Duration = std::time::Duration::from_secs(20);

/// What the tests skip under when there is no browser, and name in the CI failure.
const PART: &str = "console browser";

/// One headless Chromium session; see the module documentation.
pub struct Browser {
    client: Client,
    // Declared after `client`: the session goes first, then its driver.
    _driver: Driver,
    test: String,
    pages: Vec<RecordedPage>,
    http: reqwest::Client,
}

/// The HTML of a page as the server sent it, kept for the validator.
pub struct RecordedPage {
    pub name: String,
    pub html: String,
}

impl Browser {
    /// A fresh browser for the test named `test` (the prefix of its screenshots); `None` (a
    /// loud skip, a failure under `CI=true`) when Chromium or Java cannot be had.
    pub async fn open(test: &str) -> Option<Self> {
        let binaries = driver::installed_binaries()?;
        html_check::checker()?;
        let driver = Driver::start(&binaries);
        let client = driver.connect(&binaries).await;
        Some(Self {
            client,
            _driver: driver,
            test: test.to_owned(),
            pages: Vec::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
        })
    }

    /// An HTTP client beside the browser that follows no redirect, for raw requests (with
    /// [`Browser::cookie_header`] to act as this browser).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The WebDriver client, for what the shorthands below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("open {url}: {error}"));
    }

    pub async fn current_url(&self) -> url::Url {
        self.client.current_url().await.expect("the current URL")
    }

    /// The path (and query) of the current page.
    pub async fn current_path(&self) -> String {
        let url = self.current_url().await;
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The one element `css` selects; panics (with the page's URL) when there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => panic!("no `{css}` on {}: {error}", self.current_url().await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("find `{css}`: {error}"))
    }

    pub async fn has(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The rendered text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .expect("an element's text")
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(name)
            .await
            .expect("an element's attribute")
    }

    /// Clicks the link or submit button `css` selects and waits for the next page to load.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.mark_page().await;
        element
            .click()
            .await
            .unwrap_or_else(|error| panic!("click `{css}`: {error}"));
        self.wait_for_next_page(css).await;
    }

    /// Types `text` into the field `css` selects and presses Enter (submitting its form, as a
    /// person searching does), then waits for the next page to load.
    pub async fn submit_text(&self, css: &str, text: &str) {
        self.mark_page().await;
        self.fill(css, &format!("{text}\u{E007}")).await;
        self.wait_for_next_page(css).await;
    }

    /// WebDriver may return from a click or a key press before a form's POST and its redirect
    /// are through: the old page is marked first, and [`Browser::wait_for_next_page`] waits for
    /// a loaded page without the mark.
    async fn mark_page(&self) {
        self.run("window.__identityOldPage = true").await;
    }

    async fn wait_for_next_page(&self, after: &str) {
        let loaded = "return window.__identityOldPage === undefined \
                      && document.readyState === 'complete'";
        let deadline = std::time::Instant::now() + PAGE_LOAD;
        // Errors while the page changes (no document to run in yet) count as not loaded.
        while !matches!(
            self.client.execute(loaded, Vec::new()).await,
            Ok(Value::Bool(true))
        ) {
            assert!(
                std::time::Instant::now() < deadline,
                "no new page within {PAGE_LOAD:?} after `{after}`"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the field `css` selects, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear a field");
        field.send_keys(text).await.expect("type into a field");
    }

    /// Runs `script` in the page (WebDriver's execute, which the page's CSP does not apply to)
    /// and returns its value.
    pub async fn run(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("run `{script}`: {error}"))
    }

    /// The value of the browser's cookie `name` (HttpOnly ones too), if it has one.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let cookies = self.client.get_all_cookies().await.expect("the cookies");
        cookies
            .iter()
            .find(|cookie| cookie.name() == name)
            .map(|cookie| cookie.value().to_owned())
    }

    /// The `Cookie` header the browser would send: every cookie it holds for the site.
    pub async fn cookie_header(&self) -> String {
        let cookies = self.client.get_all_cookies().await.expect("the cookies");
        cookies
            .iter()
            .map(|cookie| format!("{}={}", cookie.name(), cookie.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A screenshot of the current page as `name` and the check that it reported no console
    /// error or CSP violation; for a page that answered a POST, which cannot be fetched again.
    pub async fn snapshot(&self, name: &str) {
        self.screenshot(name).await;
        self.assert_no_console_problems(name).await;
    }

    /// Records the current page as `name`: a screenshot, a check that the page reported no
    /// console error or CSP violation, and its HTML as the server sends it (fetched again with
    /// the browser's cookies: a console GET changes nothing) for [`Browser::finish`].
    pub async fn record(&mut self, name: &str) {
        let url = self.current_url().await;
        self.snapshot(name).await;
        let answer = self
            .http
            .get(url.as_str())
            .header(ACCEPT, "text/html")
            .header(COOKIE, self.cookie_header().await)
            .send()
            .await
            .unwrap_or_else(|error| panic!("fetch {url} again: {error}"));
        let html = answer.text().await.expect("the page's HTML");
        self.record_html(name, html);
    }

    /// Keeps `html` (an answer the browser did not render, such as a raw POST's) for the
    /// validator as page `name`.
    pub fn record_html(&mut self, name: &str, html: String) {
        self.pages.push(RecordedPage {
            name: name.to_owned(),
            html,
        });
    }

    /// Saves a screenshot of the viewport as `target/console-screenshots/<test>-<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).expect("create the screenshot directory");
        let path = dir.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, png).expect("save the screenshot");
        path
    }

    /// Asserts the page logged no script error and no CSP violation since the last check.
    /// Network entries (a 401 or 403 page the test asked for) are the tests' own business.
    pub async fn assert_no_console_problems(&self, page: &str) {
        let problems: Vec<Value> = driver::browser_log(&self.client)
            .await
            .into_iter()
            .filter(|entry| {
                let level = entry["level"].as_str().unwrap_or_default();
                let source = entry["source"].as_str().unwrap_or_default();
                let message = entry["message"].as_str().unwrap_or_default();
                message.contains("Content Security Policy")
                    || (source != "network" && matches!(level, "SEVERE" | "WARNING"))
            })
            .collect();
        assert!(
            problems.is_empty(),
            "{page}: the page reported problems: {}",
            json!(problems)
        );
    }

    /// `POST path` as this browser would send it from a page of `base` (its cookies, a
    /// same-origin `Origin`) with these form fields: a forged or tampered form submission.
    pub async fn post_form(
        &self,
        base: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(format!("{base}{path}"))
            .header(COOKIE, self.cookie_header().await)
            .header(ORIGIN, base)
            .header("Sec-Fetch-Site", "same-origin")
            .header(ACCEPT, "text/html")
            .form(form)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"))
    }

    /// Signs in to the console of the service at `base` with `key` through its form, as a
    /// person would (the unauthenticated visit lands on the sign-in page first); panics unless
    /// it lands on the dashboard.
    pub async fn sign_in(&self, base: &str, key: &str) {
        self.goto(&format!("{base}/console")).await;
        assert_eq!(self.current_path().await, "/console/sign-in");
        self.fill("#api_key", key).await;
        self.click("#sign-in").await;
        let landed = self.current_path().await;
        if landed != "/console" {
            let shot = self.screenshot("sign-in-failed").await;
            let page = self.text("body").await;
            panic!(
                "sign-in landed on {landed} (see {}):\n{page}",
                shot.display()
            );
        }
    }

    /// Validates every recorded page with the Nu HTML checker (any error fails the test) and
    /// ends the browser session.
    pub async fn finish(self) {
        html_check::assert_valid(&self.test, &self.pages);
        let _ = self.client.close().await;
    }
}

/// `target/console-screenshots` (under `CARGO_TARGET_DIR` when set): test artifacts, never
/// committed.
pub fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::node::workspace_dir().join("target"));
    target.join("console-screenshots")
}
