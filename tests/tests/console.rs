//! The admin console over plain HTTP: sign-in and its cookie, session expiry and revocation,
//! CSRF, scopes, an admin action through the console, escaping, the security headers.
//! (Real-browser tests live elsewhere.)

use chrono::Duration;
use identity_tests::console::{csrf_of, location, set_cookie, ConsoleClient};
use identity_tests::{assert_problem, both_backends, World, ADMIN_TOKEN, APP_A, APP_C};
use serde_json::json;

both_backends! {
    World:
    an_unauthenticated_visit_is_sent_to_sign_in,
    a_good_key_signs_in_with_a_strict_cookie,
    a_bad_key_is_refused_and_charged_to_the_failure_limit,
    over_https_the_cookie_is_secure_and_host_only,
    times_are_shown_in_the_stats_time_zone,
    revoking_the_key_ends_its_console_sessions,
    a_changed_bootstrap_token_ends_its_sessions,
    an_idle_session_expires,
    a_busy_session_expires_at_its_absolute_age,
    a_post_without_the_right_csrf_token_is_refused,
    sign_out_ends_the_session,
    signing_in_again_ends_the_previous_session,
    a_read_only_key_sees_no_actions_and_cannot_post_them,
    a_block_through_the_console_refuses_the_next_login,
    a_hostile_nickname_is_shown_escaped,
    a_cross_site_sign_in_is_refused,
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_csp(answer: &reqwest::Response) {
    assert_eq!(
        answer
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok()),
        Some(CSP),
        "{}",
        answer.url()
    );
}

async fn assert_sent_to_sign_in(console: &ConsoleClient, path: &str) {
    let answer = console.get(path).await;
    assert_eq!(answer.status(), 303, "GET {path}");
    assert_eq!(location(&answer), "/console/sign-in");
    assert_csp(&answer);
}

async fn an_unauthenticated_visit_is_sent_to_sign_in(world: World) {
    let console = ConsoleClient::new(&world.app.base);
    for path in [
        "/console",
        "/console/users",
        "/console/users/0190d8a0-0000-7000-8000-000000000000",
    ] {
        assert_sent_to_sign_in(&console, path).await;
    }
    let page = console.get("/console/sign-in").await;
    assert_eq!(page.status(), 200);
    assert_csp(&page);
    let html = page.text().await.expect("HTML");
    for needle in [
        r#"<html lang="en">"#,
        r#"<form id="sign-in-form" method="post" action="/console/sign-in""#,
        r#"<input type="password" name="api_key" id="api_key""#,
        r#"id="lang-zh""#,
    ] {
        assert!(html.contains(needle), "{needle} in {html}");
    }
    // The stylesheet it links is served, cacheable, under the same policy.
    let css = html
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|u| u.ends_with(".css")))
        .expect("a stylesheet");
    let sheet = console.get(css).await;
    assert_eq!(sheet.status(), 200);
    assert!(sheet.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/css"));
    // Chinese from Accept-Language, and from ?lang= (remembered in a cookie).
    let zh = reqwest::Client::new()
        .get(world.url("/console/sign-in"))
        .header("accept-language", "zh-CN,zh;q=0.9,en;q=0.5")
        .send()
        .await
        .expect("GET");
    assert!(zh
        .text()
        .await
        .expect("HTML")
        .contains(r#"<html lang="zh-CN">"#));
    let chosen = console.get("/console/sign-in?lang=zh-CN").await;
    let cookie = chosen.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.starts_with("identity_console_lang=zh-CN;"),
        "{cookie}"
    );
}

async fn a_good_key_signs_in_with_a_strict_cookie(world: World) {
    let mut console = ConsoleClient::new(&world.app.base);
    let answer = console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(answer.status(), 303);
    assert_eq!(location(&answer), "/console");
    let cookie = set_cookie(answer.headers()).expect("a session cookie");
    assert!(cookie.starts_with("identity_console="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let dashboard = console.get("/console").await;
    assert_eq!(dashboard.status(), 200);
    assert_csp(&dashboard);
    let html = dashboard.text().await.expect("HTML");
    for needle in [
        r#"id="sign-out-form""#,
        r#"id="nav-users""#,
        r#"id="nav-keys""#,
        "bootstrap",
    ] {
        assert!(html.contains(needle), "{needle} in {html}");
    }
    // The session token is in no page, and the database keeps only its hash.
    let token = console.cookie.clone().expect("cookie");
    let token = token.split_once('=').expect("name=value").1;
    assert!(!html.contains(token));
    assert!(!world.database_text().await.contains(token));
}

async fn a_bad_key_is_refused_and_charged_to_the_failure_limit(world: World) {
    let app = world
        .spawn_instance(|c| c.auth_failures_per_minute = 2)
        .await;
    let mut console = ConsoleClient::new(&app.base);
    for _ in 0..2 {
        let answer = console.sign_in("idk_0000000000000000_nope").await;
        assert_eq!(answer.status(), 401);
        assert!(set_cookie(answer.headers()).is_none());
        let html = answer.text().await.expect("HTML");
        assert!(html.contains(r#"id="sign-in-error""#), "{html}");
    }
    let limited = console.sign_in("wrong again").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    // A key without admin:read opens no session.
    let key = world.api_key("events:read").await;
    let answer = ConsoleClient::new(&world.app.base).sign_in(&key).await;
    assert_eq!(answer.status(), 403);
    assert!(set_cookie(answer.headers()).is_none());
}

async fn over_https_the_cookie_is_secure_and_host_only(world: World) {
    let app = world
        .spawn_instance(|c| {
            c.public_url =
                Some(api::config::PublicUrl::parse("https://id.example.com").expect("url"))
        })
        .await;
    let mut console = ConsoleClient::new(&app.base);
    let answer = console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(answer.status(), 303);
    let cookie = set_cookie(answer.headers()).expect("a session cookie");
    assert!(cookie.starts_with("__Host-identity_console="), "{cookie}");
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(console.get("/console").await.status(), 200);
}

/// Times are in the configured zone, named on the page (here the default, UTC; other zones
/// are the unit tests' of `console::render`: every instance on a database shares one).
async fn times_are_shown_in_the_stats_time_zone(world: World) {
    let alice = world.login(APP_A, "alice").await;
    world
        .wait_for_projections(std::time::Duration::from_secs(10))
        .await;
    let console = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    let html = console
        .page(&format!("/console/users/{}", alice.user_id))
        .await;
    assert!(html.contains("Times are shown in UTC"), "{html}");
    let registered = world.events_of_type("UserRegistered").await[0].occurred_at;
    let shown = registered.format("%Y-%m-%d %H:%M:%S").to_string();
    assert!(html.contains(&shown), "{shown} in {html}");

    // A world of its own (its own database) in Asia/Shanghai shows the same kind of time at
    // +08:00, and not at UTC.
    let shanghai = World::start_in_zone(world.backend, "Asia/Shanghai")
        .await
        .expect("the backend this test runs on");
    let bob = shanghai.login(APP_A, "bob").await;
    shanghai
        .wait_for_projections(std::time::Duration::from_secs(10))
        .await;
    let console = ConsoleClient::signed_in(&shanghai.app.base, ADMIN_TOKEN).await;
    let html = console
        .page(&format!("/console/users/{}", bob.user_id))
        .await;
    assert!(html.contains("Times are shown in Asia/Shanghai"), "{html}");
    let registered = shanghai.events_of_type("UserRegistered").await[0].occurred_at;
    let plus_eight = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00");
    let shown = registered
        .with_timezone(&plus_eight)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert!(html.contains(&shown), "{shown} in {html}");
    let utc = registered.format("%Y-%m-%d %H:%M:%S").to_string();
    assert!(!html.contains(&utc), "{utc} (UTC) in {html}");
}

async fn revoking_the_key_ends_its_console_sessions(world: World) {
    let key = world.api_key("admin:read,admin:write").await;
    let console = ConsoleClient::signed_in(&world.app.base, &key).await;
    assert_eq!(console.get("/console").await.status(), 200);
    world.revoke_api_key(&key).await;
    assert_sent_to_sign_in(&console, "/console").await;
    // The same key cannot sign in again either.
    let answer = ConsoleClient::new(&world.app.base).sign_in(&key).await;
    assert_eq!(answer.status(), 401);
}

async fn a_changed_bootstrap_token_ends_its_sessions(world: World) {
    let console = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    // Another instance on the same database, with the token changed.
    let changed = world
        .spawn_instance(|c| c.admin_token = Some("another-admin-token".to_owned().into()))
        .await;
    let mut elsewhere = ConsoleClient::new(&changed.base);
    elsewhere.cookie.clone_from(&console.cookie);
    assert_sent_to_sign_in(&elsewhere, "/console").await;
    // The session is gone for good, not only on that instance.
    assert_sent_to_sign_in(&console, "/console").await;
}

async fn an_idle_session_expires(world: World) {
    let console = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    // Default idle lifetime: 30 minutes since the last request.
    for _ in 0..3 {
        world.clock.advance(Duration::minutes(25));
        assert_eq!(console.get("/console").await.status(), 200);
    }
    world.clock.advance(Duration::minutes(31));
    assert_sent_to_sign_in(&console, "/console").await;
}

async fn a_busy_session_expires_at_its_absolute_age(world: World) {
    let app = world
        .spawn_instance(|c| {
            c.console_max_age_secs = 3600;
            c.console_idle_secs = 1800;
        })
        .await;
    let console = ConsoleClient::signed_in(&app.base, ADMIN_TOKEN).await;
    for _ in 0..2 {
        world.clock.advance(Duration::minutes(25));
        assert_eq!(console.get("/console").await.status(), 200);
    }
    world.clock.advance(Duration::minutes(11));
    assert_sent_to_sign_in(&console, "/console").await;
}

async fn a_post_without_the_right_csrf_token_is_refused(world: World) {
    let console = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    let other = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    let others_token = other.csrf().await;
    for fields in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", others_token.as_str())],
    ] {
        let refused = console.post("/console/sign-out", &fields).await;
        assert_eq!(refused.status(), 403);
        assert_csp(&refused);
        let html = refused.text().await.expect("HTML");
        assert!(
            html.contains("forbidden") && html.contains("CSRF"),
            "{html}"
        );
    }
    // Still signed in.
    assert_eq!(console.get("/console").await.status(), 200);
}

async fn sign_out_ends_the_session(world: World) {
    let console = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    let csrf = console.csrf().await;
    let out = console.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(location(&out), "/console/sign-in");
    let cleared = set_cookie(out.headers()).expect("the cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie opens nothing any more.
    assert_sent_to_sign_in(&console, "/console").await;
}

async fn signing_in_again_ends_the_previous_session(world: World) {
    let mut console = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    let mut before = ConsoleClient::new(&world.app.base);
    before.cookie.clone_from(&console.cookie);
    assert_eq!(before.get("/console").await.status(), 200);
    // The browser still holds the first cookie when it signs in again.
    assert_eq!(console.sign_in(ADMIN_TOKEN).await.status(), 303);
    assert_ne!(console.cookie, before.cookie);
    assert_eq!(console.get("/console").await.status(), 200);
    assert_sent_to_sign_in(&before, "/console").await;
}

async fn a_read_only_key_sees_no_actions_and_cannot_post_them(world: World) {
    let alice = world.login(APP_A, "alice").await;
    world
        .wait_for_projections(std::time::Duration::from_secs(10))
        .await;
    let key = world.api_key("admin:read").await;
    let console = ConsoleClient::signed_in(&world.app.base, &key).await;
    let user_page = format!("/console/users/{}", alice.user_id);
    let html = console.page(&user_page).await;
    assert!(html.contains(r#"id="user-status""#), "{html}");
    for action in [
        "action-block",
        "action-unblock",
        "action-revoke-sessions",
        "action-erase",
    ] {
        assert!(!html.contains(action), "{action} shown to a read-only key");
    }
    let csrf = csrf_of(&html);
    let forged = console
        .post(
            &format!("{user_page}/block"),
            &[("csrf", &csrf), ("reason", "x")],
        )
        .await;
    assert_eq!(forged.status(), 403);
    assert_eq!(
        console.get(&format!("{user_page}/block")).await.status(),
        403
    );
    // Nothing happened.
    let login = world
        .login_with(APP_A, &world.wx_login(APP_A, "alice").await)
        .await;
    assert_eq!(login.status(), 200);
}

async fn a_block_through_the_console_refuses_the_next_login(world: World) {
    let alice = world.login(APP_A, "alice").await;
    world
        .wait_for_projections(std::time::Duration::from_secs(10))
        .await;
    let console = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    let openid = alice["user"]["openid"].as_str().expect("openid");
    let found = console.page(&format!("/console/users?q={openid}")).await;
    let user_page = format!("/console/users/{}", alice.user_id);
    assert!(
        found.contains(&format!(r#"class="user-link" href="{user_page}""#)),
        "{found}"
    );
    let html = console.page(&user_page).await;
    assert!(html.contains(r#"data-status="active""#), "{html}");
    assert!(html.contains(r#"data-type="UserRegistered""#), "{html}");
    assert!(html.contains(r#"data-type="UserLoggedIn""#), "{html}");
    assert!(html.contains(r#"id="action-block""#), "{html}");
    let confirm = console.page(&format!("{user_page}/block")).await;
    assert!(confirm.contains(r#"id="confirm-form""#) && confirm.contains(&alice.user_id));
    assert!(confirm.contains(r#"id="reason""#), "{confirm}");
    // Erasing records no reason, so its confirmation asks for none.
    let erase = console.page(&format!("{user_page}/erase")).await;
    assert!(
        erase.contains(r#"id="confirm-form""#) && !erase.contains(r#"id="reason""#),
        "{erase}"
    );
    let csrf = csrf_of(&confirm);
    let done = console
        .post(
            &format!("{user_page}/block"),
            &[("csrf", csrf.as_str()), ("reason", "spam")],
        )
        .await;
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done), user_page);
    let refused = world
        .login_with(APP_A, &world.wx_login(APP_A, "alice").await)
        .await;
    assert_problem(refused, 403, "user_blocked").await;
    // Audited with the console's key as the actor, and on the timeline.
    world
        .wait_for_projections(std::time::Duration::from_secs(10))
        .await;
    let html = console.page(&user_page).await;
    assert!(html.contains(r#"data-status="blocked""#), "{html}");
    assert!(html.contains(r#"data-type="UserBlocked""#), "{html}");
    assert!(html.contains("admin:bootstrap"), "{html}");
    assert!(html.contains(r#"id="action-unblock""#), "{html}");
}

async fn a_hostile_nickname_is_shown_escaped(world: World) {
    let mallory = world.login(APP_C, "mallory").await;
    let hostile = "<script>alert(1)</script>\"'&";
    world
        .share_profile(
            &mallory.access,
            APP_C,
            "mallory",
            json!({ "nickName": hostile }),
        )
        .await;
    world
        .wait_for_projections(std::time::Duration::from_secs(10))
        .await;
    let console = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    let html = console
        .page(&format!("/console/users/{}", mallory.user_id))
        .await;
    assert!(!html.contains("<script>alert"), "{html}");
    // Escaped as entities, whichever form the template engine picks.
    let escaped = [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&#60;script&#62;alert(1)&#60;/script&#62;",
    ];
    assert!(escaped.iter().any(|e| html.contains(e)), "{html}");
}

async fn a_cross_site_sign_in_is_refused(world: World) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let answer = client
            .post(world.url("/console/sign-in"))
            .header(name, value)
            .form(&[("api_key", ADMIN_TOKEN)])
            .send()
            .await
            .expect("POST");
        assert_eq!(answer.status(), 403, "{name}: {value}");
        assert!(set_cookie(answer.headers()).is_none());
    }
}
