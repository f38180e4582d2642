//! The admin console in real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driving a real `identityd` on SQLite with the WeChat simulator: what an admin does, page by
//! page, with a screenshot of each (`target/console-screenshots/`), each page's HTML through the
//! Nu HTML checker, and no console error or CSP violation on any.

use api::usecases::services::Clock as _;
use std::time::Duration;

use identity_tests::browser::{Browser, SESSION_COOKIE};
use identity_tests::{assert_problem, Backend, World, ADMIN_TOKEN, APP_A, APP_B};

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

/// The admin user status the API reports for `user_id`.
async fn status_of(world: &World, user_id: &str) -> String {
    let user = world
        .get_json(ADMIN_TOKEN, &format!("/v1/admin/users/{user_id}"))
        .await;
    user["status"].as_str().expect("a status").to_owned()
}

/// The `data-type` of every event on the user page's timeline, newest first.
async fn timeline(browser: &Browser) -> Vec<String> {
    let mut types = Vec::new();
    for event in browser.find_all("#timeline li.timeline-event").await {
        types.push(
            event
                .attr("data-type")
                .await
                .expect("attr")
                .unwrap_or_default(),
        );
    }
    types
}

/// The CSRF token of the page's forms (the sign-out form has one on every signed-in page).
async fn csrf_token(browser: &Browser) -> String {
    browser
        .attr("#sign-out-form input[name=csrf]", "value")
        .await
        .expect("a CSRF field")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_finds_a_user_by_openid_reads_the_timeline_and_blocks_them() {
    let Some((world, mut browser)) = console("admin").await else {
        return;
    };
    let alice = world.login(APP_A, "alice").await;
    world.login(APP_B, "alice").await;
    world.login(APP_A, "bob").await;
    world.wait_for_projections(Duration::from_secs(10)).await;
    let openid = alice["user"]["openid"].as_str().expect("openid").to_owned();

    browser.goto(&world.url("/console")).await;
    assert_eq!(browser.current_path().await, "/console/sign-in");
    browser.record("sign-in").await;
    browser.sign_in(&world.app.base, ADMIN_TOKEN).await;

    // Search by openid, through the form.
    browser.click("#nav-users").await;
    browser.submit_text("input[name=q]", &openid).await;
    let found = browser.find_all("#users a.user-link").await;
    assert_eq!(found.len(), 1, "one user has that openid");
    let href = found[0].attr("href").await.expect("attr").expect("a link");
    assert_eq!(href, format!("/console/users/{}", alice.user_id));
    browser.record("users").await;

    browser.click("#users a.user-link").await;
    browser.record("user").await;
    for section in ["#accounts", "#profile", "#sessions", "#timeline"] {
        assert!(browser.has(section).await, "the user page has {section}");
    }
    let events = timeline(&browser).await;
    assert_eq!(
        events.first().map(String::as_str),
        Some("UserLoggedIn"),
        "newest first: {events:?}"
    );
    assert_eq!(
        events.iter().filter(|t| *t == "UserLoggedIn").count(),
        2,
        "{events:?}"
    );
    assert!(events.iter().any(|t| t == "UserRegistered"), "{events:?}");
    assert_eq!(
        browser.attr("#user-status", "data-status").await.as_deref(),
        Some("active")
    );

    // Block asks first: the confirmation names the user, and opening it changes nothing.
    browser.click("#action-block").await;
    let confirm_path = format!("/console/users/{}/block", alice.user_id);
    assert_eq!(browser.current_path().await, confirm_path);
    let confirmation = browser.text("main").await;
    assert!(
        confirmation.contains(&alice.user_id),
        "names the user: {confirmation}"
    );
    assert_eq!(status_of(&world, &alice.user_id).await, "active");
    browser.record("block-confirmation").await;
    browser
        .fill("input[name=reason]", "abuse reported by support")
        .await;
    browser.click("#confirm").await;

    assert_eq!(
        browser.current_path().await,
        format!("/console/users/{}", alice.user_id)
    );
    assert_eq!(
        browser.attr("#user-status", "data-status").await.as_deref(),
        Some("blocked")
    );
    assert_eq!(
        timeline(&browser).await.first().map(String::as_str),
        Some("UserBlocked")
    );
    browser.record("user-blocked").await;
    assert_eq!(status_of(&world, &alice.user_id).await, "blocked");
    let code = world.wx_login(APP_A, "alice").await;
    assert_problem(world.login_with(APP_A, &code).await, 403, "user_blocked").await;
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_language_switch_shows_chinese_and_stays_until_switched_back() {
    let Some((world, mut browser)) = console("language").await else {
        return;
    };
    // Before any choice, the language comes from Accept-Language.
    let chinese = browser
        .http()
        .get(world.url("/console/sign-in"))
        .header("Accept-Language", "zh-CN,zh;q=0.9")
        .send()
        .await
        .expect("GET");
    assert!(chinese
        .text()
        .await
        .expect("HTML")
        .contains("<html lang=\"zh-CN\""));

    browser.sign_in(&world.app.base, ADMIN_TOKEN).await;
    let english_nav = browser.text("nav").await;
    assert!(!has_chinese(&english_nav), "English first: {english_nav}");
    browser.click("#lang-zh").await;
    assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("zh-CN"));
    let nav = browser.text("nav").await;
    assert!(has_chinese(&nav), "the nav in Chinese: {nav}");
    assert_eq!(
        browser.cookie("identity_console_lang").await.as_deref(),
        Some("zh-CN")
    );
    // The choice sticks on pages reached without `?lang`.
    browser.goto(&world.url("/console/users")).await;
    assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("zh-CN"));
    browser.record("users-zh-CN").await;
    browser.click("#lang-en").await;
    assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("en"));
    assert!(!has_chinese(&browser.text("nav").await));
    browser.finish().await;
}

fn has_chinese(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_key_sees_no_write_buttons_and_its_forged_post_is_refused() {
    let Some((world, mut browser)) = console("read-only").await else {
        return;
    };
    let dave = world.login(APP_A, "dave").await;
    world.wait_for_projections(Duration::from_secs(10)).await;
    let key = world.api_key("admin:read").await;
    browser.sign_in(&world.app.base, &key).await;

    browser
        .goto(&world.url(&format!("/console/users/{}", dave.user_id)))
        .await;
    browser.record("user").await;
    assert!(
        browser.has("#timeline").await,
        "read access shows everything"
    );
    for action in ["block", "unblock", "revoke-sessions", "erase"] {
        assert!(
            !browser.has(&format!("#action-{action}")).await,
            "no {action} for admin:read"
        );
    }

    browser.click("#nav-keys").await;
    browser.record("keys").await;
    assert!(browser.has("#keys").await);
    assert!(
        !browser.has("#create-key-form").await,
        "no key creation for admin:read"
    );
    assert!(
        !browser.has("form.revoke-key").await,
        "no revocation for admin:read"
    );
    // The forged POST: the session's own cookie and CSRF token, the write it may not make.
    let csrf = csrf_token(&browser).await;
    let block = format!("/console/users/{}/block", dave.user_id);
    let forged = browser
        .post_form(
            &world.app.base,
            &block,
            &[("csrf", &csrf), ("reason", "forged")],
        )
        .await;
    assert_eq!(forged.status(), 403, "admin:read may not block");
    browser.record_html("forged-block", forged.text().await.expect("the error page"));
    assert_eq!(status_of(&world, &dave.user_id).await, "active");
    let code = world.wx_login(APP_A, "dave").await;
    assert_eq!(world.login_with(APP_A, &code).await.status(), 200);
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_without_the_csrf_token_or_with_a_wrong_one_is_refused() {
    let Some((world, mut browser)) = console("csrf").await else {
        return;
    };
    let erin = world.login(APP_A, "erin").await;
    world.wait_for_projections(Duration::from_secs(10)).await;
    browser.sign_in(&world.app.base, ADMIN_TOKEN).await;
    let block = format!("/console/users/{}/block", erin.user_id);
    browser.goto(&world.url(&block)).await;
    let csrf = csrf_token(&browser).await;

    // In the browser: the confirmation form submitted with its token taken out.
    browser
        .run("document.querySelectorAll('input[name=csrf]').forEach(field => field.remove())")
        .await;
    browser.click("#confirm").await;
    assert_eq!(
        browser.attr("#error-detail", "data-code").await.as_deref(),
        Some("forbidden")
    );
    let refused = browser.text("#error-detail").await;
    assert!(
        refused.contains("CSRF"),
        "the error page says why: {refused}"
    );
    browser.snapshot("refused").await;

    // The same as raw requests, to see the status: no token, then a wrong one.
    let missing = browser
        .post_form(&world.app.base, &block, &[("reason", "x")])
        .await;
    assert_refused_for_csrf(&mut browser, "no-token", missing).await;
    let wrong = format!("{csrf}x");
    let tampered = browser
        .post_form(
            &world.app.base,
            &block,
            &[("csrf", &wrong), ("reason", "x")],
        )
        .await;
    assert_refused_for_csrf(&mut browser, "wrong-token", tampered).await;
    assert_eq!(
        status_of(&world, &erin.user_id).await,
        "active",
        "nothing was blocked"
    );
    browser.finish().await;
}

/// Asserts `answer` is the 403 `forbidden` error page naming CSRF, and keeps it for the
/// validator as `page`.
async fn assert_refused_for_csrf(browser: &mut Browser, page: &str, answer: reqwest::Response) {
    assert_eq!(answer.status(), 403, "{page}");
    let html = answer.text().await.expect("the error page");
    assert!(html.contains(r#"data-code="forbidden""#), "{page}: {html}");
    assert!(html.contains("CSRF"), "{page}: {html}");
    browser.record_html(page, html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_out_ends_the_session_and_back_or_reload_lands_on_sign_in() {
    let Some((world, browser)) = console("sign-out").await else {
        return;
    };
    browser.sign_in(&world.app.base, ADMIN_TOKEN).await;
    browser.click("#nav-users").await;
    let session = browser
        .cookie(SESSION_COOKIE)
        .await
        .expect("a session cookie");
    browser.click("#sign-out").await;
    assert_eq!(browser.current_path().await, "/console/sign-in");
    assert_eq!(
        browser.cookie(SESSION_COOKIE).await,
        None,
        "the cookie is cleared"
    );

    browser.client().back().await.expect("back");
    assert_eq!(
        browser.current_path().await,
        "/console/sign-in",
        "back lands on sign-in"
    );
    browser.client().refresh().await.expect("reload");
    assert_eq!(
        browser.current_path().await,
        "/console/sign-in",
        "reload lands on sign-in"
    );
    // Ended on the server too: the old cookie, replayed, opens nothing.
    let replayed = browser
        .http()
        .get(world.url("/console"))
        .header("Cookie", format!("{SESSION_COOKIE}={session}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(replayed.status(), 303);
    assert_eq!(replayed.headers()["location"], "/console/sign-in");
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_key_gets_one_generic_message_and_cross_site_sign_in_is_refused() {
    let Some((world, mut browser)) = console("sign-in").await else {
        return;
    };
    browser.goto(&world.url("/console/users")).await;
    assert_eq!(
        browser.current_path().await,
        "/console/sign-in",
        "signed-out visits land here"
    );
    browser.fill("#api_key", "idk_0000000000000000_wrong").await;
    browser.click("#sign-in").await;
    assert_eq!(browser.current_path().await, "/console/sign-in");
    assert!(browser.has("#sign-in-error").await);
    browser.snapshot("wrong-key").await;
    assert_eq!(browser.cookie(SESSION_COOKIE).await, None);

    let wrong = browser
        .http()
        .post(world.url("/console/sign-in"))
        .header("Origin", &world.app.base)
        .header("Accept", "text/html")
        .form(&[("api_key", "idk_nope")])
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), 401);
    browser.record_html("wrong-key", wrong.text().await.expect("the sign-in page"));
    let cross_site = browser
        .http()
        .post(world.url("/console/sign-in"))
        .header("Origin", "https://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("api_key", ADMIN_TOKEN)])
        .send()
        .await
        .expect("POST");
    assert_eq!(cross_site.status(), 403, "a cross-site sign-in is refused");
    assert!(
        cross_site.headers().get("set-cookie").is_none(),
        "and opens no session"
    );
    browser.finish().await;
}

/// The number a hidden per-day table cell holds (`textContent`: WebDriver's text is only what
/// is rendered, and the table sits in a closed `<details>`).
async fn hidden_number(browser: &Browser, css: &str) -> u64 {
    let script = "return document.querySelector(arguments[0]).textContent";
    let text = browser
        .client()
        .execute(script, vec![serde_json::json!(css)])
        .await
        .unwrap_or_else(|error| panic!("read `{css}`: {error}"));
    let text = text.as_str().unwrap_or_else(|| panic!("no `{css}`"));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("`{css}` is not a number: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_the_days_logins_and_active_users() {
    let Some((world, mut browser)) = console("dashboard").await else {
        return;
    };
    // The day the logins fall on; a run that crosses midnight (UTC, the default zone) checks
    // nothing rather than the wrong row.
    let today = world.clock.now().date_naive();
    world.login(APP_A, "alice").await;
    world.login(APP_B, "alice").await;
    world.login(APP_A, "bob").await;
    world.wait_for_projections(Duration::from_secs(10)).await;
    browser.sign_in(&world.app.base, ADMIN_TOKEN).await;
    browser.record("dashboard").await;
    if world.clock.now().date_naive() != today {
        eprintln!("the day changed during the test: its per-day figures are not checked");
        return;
    }

    assert!(
        browser.has("#logins-per-day svg").await,
        "a server-drawn chart"
    );
    let row = format!("#per-day tr[data-day='{today}']");
    assert_eq!(
        hidden_number(&browser, &format!("{row} td.logins")).await,
        3
    );
    assert_eq!(
        hidden_number(&browser, &format!("{row} td.new-users")).await,
        2
    );
    // alice (one person in two apps of one Open Platform account) and bob.
    assert_eq!(browser.text("#dau").await.trim(), "2");
    for section in [
        "#new-users-per-day",
        "#active-users",
        "#failed-logins",
        "#projections",
        "#relay",
    ] {
        assert!(browser.has(section).await, "the dashboard has {section}");
    }
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_renders_valid_html_in_english_and_chinese() {
    let Some((world, mut browser)) = console("pages").await else {
        return;
    };
    world.login(APP_A, "carol").await;
    world.wait_for_projections(Duration::from_secs(10)).await;
    browser.sign_in(&world.app.base, ADMIN_TOKEN).await;
    for (language, switch) in [("en", "#lang-en"), ("zh-CN", "#lang-zh")] {
        browser.click(switch).await;
        for page in ["dashboard", "users", "logins", "audit", "events", "keys"] {
            browser.click(&format!("#nav-{page}")).await;
            let lang = browser.attr("html", "lang").await;
            assert_eq!(lang.as_deref(), Some(language), "{page}");
            browser.record(&format!("{page}-{language}")).await;
        }
    }
    browser.finish().await;
}
