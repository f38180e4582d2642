//! The admin console in real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driving a real `identityd` on SQLite with the WeChat simulator: what an admin does, page by
//! page, with a screenshot of each (`target/console-screenshots/`), each page's HTML through the
//! Nu HTML checker, and no console error or CSP violation on any.

use identity_tests::browser::Browser;
use identity_tests::{Backend, World};

/// A browser for `test` and a fresh service on SQLite; `None` when the browser cannot be had
/// (a skip; a failure under `CI=true`).
async fn console(test: &str) -> Option<(World, Browser)> {
    let browser = Browser::open(test).await?;
    let world = World::start(Backend::Sqlite)
        .await
        .expect("SQLite always runs");
    Some((world, browser))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_opens_a_page_of_the_service() {
    let Some((world, browser)) = console("smoke").await else {
        return;
    };
    browser.goto(&world.url("/docs")).await;
    assert!(browser.current_path().await.starts_with("/docs"));
    let title = browser.client().title().await.expect("the page's title");
    assert!(!title.is_empty(), "the docs page has a title");
    let shot = browser.screenshot("docs").await;
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    browser.finish().await;
}
