//! The console's pages over HTTP: dashboard, login history, audit log, events, API keys and
//! the CSV exports, signed in the way a browser is (form post, cookie, CSRF field).

use std::time::Duration;

use identity_tests::{both_backends, World, ADMIN_TOKEN, APP_A, APP_B};
use reqwest::header;

both_backends! {
    World:
    the_dashboard_shows_the_days_logins_actives_and_failures,
    login_history_filters_pages_and_exports_safe_csv,
    the_audit_log_filters_by_action_and_user,
    the_events_page_shows_the_redacted_log_by_type_and_app,
    a_key_created_in_the_console_is_shown_once_and_works,
    a_read_only_session_sees_no_key_forms_and_its_posts_are_refused,
    revoking_the_sessions_own_key_signs_it_out,
}

/// A user agent a spreadsheet would run as a formula, were it not escaped.
const HOSTILE_DEVICE: &str = "=HYPERLINK(\"http://evil.example\",\"x\")";

/// A signed-in console session, the way a browser holds one.
struct Console {
    base: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Console {
    async fn sign_in(world: &World, key: &str) -> Self {
        let base = world.app.base.clone();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let answer = http
            .post(format!("{base}/console/sign-in"))
            .header(header::ORIGIN, &base)
            .form(&[("api_key", key)])
            .send()
            .await
            .expect("sign-in");
        assert_eq!(answer.status(), 303, "sign-in");
        let cookie = answer
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("identity_console="))
            .and_then(|v| v.split(';').next())
            .expect("the session cookie")
            .to_owned();
        let mut console = Self {
            base,
            http,
            cookie,
            csrf: String::new(),
        };
        let page = console.page("/console/keys").await;
        console.csrf = attribute_after(&page, "name=\"csrf\" value=\"").expect("a CSRF field");
        console
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .send()
            .await
            .expect("GET")
    }

    /// The page at `path`, which must answer 200.
    async fn page(&self, path: &str) -> String {
        let answer = self.get(path).await;
        assert_eq!(answer.status(), 200, "GET {path}");
        answer.text().await.expect("a page")
    }

    /// A form post with the session's CSRF field.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        self.http
            .post(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .header(header::ORIGIN, &self.base)
            .form(&form)
            .send()
            .await
            .expect("POST")
    }
}

/// The text after `prefix` up to the next `"`, e.g. an attribute's value.
fn attribute_after(page: &str, prefix: &str) -> Option<String> {
    let start = page.find(prefix)? + prefix.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_owned())
}

/// The text of the element `id`, up to the next tag.
fn text_of(page: &str, id: &str) -> String {
    let open = format!("id=\"{id}\">");
    let start = page.find(&open).unwrap_or_else(|| panic!("no #{id}")) + open.len();
    let end = page[start..].find('<').expect("a closing tag");
    page[start..start + end].to_owned()
}

fn rows(page: &str, class: &str) -> usize {
    page.matches(&format!("<tr class=\"{class}\"")).count()
}

/// Some logins: carol twice and dave once in app A, erin in app B from a hostile device; one
/// refused login in app A.
async fn some_logins(world: &World) -> Vec<identity_tests::Login> {
    let logins = vec![
        world.login(APP_A, "carol").await,
        world.login(APP_A, "carol").await,
        world.login(APP_A, "dave").await,
        world.login_from(APP_B, "erin", HOSTILE_DEVICE).await,
    ];
    let refused = world.login_with(APP_A, "not-a-code").await;
    assert_eq!(refused.status(), 400);
    world.wait_for_projections(Duration::from_secs(10)).await;
    logins
}

async fn the_dashboard_shows_the_days_logins_actives_and_failures(world: World) {
    some_logins(&world).await;
    let console = Console::sign_in(&world, ADMIN_TOKEN).await;
    let answer = console.get("/console").await;
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ASCII")
        .contains("script-src 'self'"));
    let page = answer.text().await.expect("the page");
    assert!(page.len() < 100 * 1024, "{} bytes", page.len());
    for section in [
        "logins-per-day",
        "new-users-per-day",
        "active-users",
        "failed-logins",
        "projections",
        "relay",
    ] {
        assert!(page.contains(&format!("id=\"{section}\"")), "#{section}");
    }
    assert!(!page.contains("<script>"), "no inline script");
    assert!(
        page.contains("data-refresh=\"30\" data-refresh-until-idle=\"1800\""),
        "the script reloads it every 30 s, until idle for the console's idle lifetime"
    );
    assert_eq!(page.matches("<svg").count(), 4, "four charts");
    assert_eq!(text_of(&page, "dau"), "3");
    assert_eq!(text_of(&page, "wau"), "3");
    assert_eq!(text_of(&page, "mau"), "3");
    // Today is the table's first row: 4 logins, 3 new users, 3 active users.
    let today = &page[page.find("<tr data-day=").expect("a day row")..];
    let cell = |class: &str| attribute_after(today, &format!("class=\"{class}\">")).map(|_| ());
    assert!(cell("logins").is_some());
    assert!(today.contains("class=\"logins\">4<"), "{today:.300}");
    assert!(today.contains("class=\"new-users\">3<"), "{today:.300}");
    assert!(today.contains("class=\"active-users\">3<"), "{today:.300}");
    assert!(
        page.contains("data-reason=\"invalid_code\""),
        "a refused login by reason"
    );
    assert!(page.contains("data-projection=\"login_history\""));
    assert!(page.contains("id=\"relay-not-configured\""));

    let app_b = console
        .page(&format!("/console?appid={APP_B}&days=7&lang=zh-CN"))
        .await;
    assert!(app_b.contains("<html lang=\"zh-CN\""));
    assert_eq!(text_of(&app_b, "dau"), "1");
    assert!(app_b.contains("id=\"no-failed-logins\""));
    let bad = console.get("/console?days=1000").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("a page").contains("days"));
}

async fn login_history_filters_pages_and_exports_safe_csv(world: World) {
    let logins = some_logins(&world).await;
    let console = Console::sign_in(&world, ADMIN_TOKEN).await;
    let all = console.page("/console/logins").await;
    assert_eq!(rows(&all, "login"), 4);
    // Admins see the openid, as the admin API shows it.
    let openid = logins[3]["user"]["openid"].as_str().expect("openid");
    assert!(all.contains(openid));

    // A submitted filter form: empty fields and the language are no filter.
    let app_a = console
        .page(&format!("/console/logins?appid={APP_A}&from=&to=&lang=en"))
        .await;
    assert_eq!(rows(&app_a, "login"), 3);
    assert!(!app_a.contains(openid));
    assert!(app_a.contains(&format!("<option value=\"{APP_A}\" selected>")));
    // Switching language keeps the filters.
    assert!(
        app_a.contains(&format!(
            "id=\"lang-zh\" href=\"?appid={APP_A}&#38;from=&#38;to=&#38;lang=zh-CN\""
        )),
        "{app_a}"
    );

    let first = console.page("/console/logins?limit=3").await;
    assert_eq!(rows(&first, "login"), 3);
    let next = attribute_after(&first, "id=\"next-page\" href=\"")
        .expect("a next page")
        .replace("&amp;", "&");
    let second = console.page(&next).await;
    assert_eq!(rows(&second, "login"), 1);
    assert!(!second.contains("id=\"next-page\""));

    let future = console
        .page("/console/logins?from=2100-01-01T00:00:00Z")
        .await;
    assert_eq!(rows(&future, "login"), 0);
    assert!(future.contains("id=\"no-rows\""));
    let bad = console.get("/console/logins?from=yesterday").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("a page").contains("RFC 3339"));
    assert_eq!(console.get("/console/logins?bogus=1").await.status(), 400);

    // The export link carries the filter.
    let export = attribute_after(
        &console
            .page(&format!("/console/logins?appid={APP_B}"))
            .await,
        "id=\"export-csv\" href=\"",
    )
    .expect("an export link");
    assert_eq!(export, format!("/console/logins.csv?appid={APP_B}"));
    let answer = console.get(&export).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    let csv = answer.text().await.expect("CSV");
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    assert!(lines
        .next()
        .expect("a header")
        .starts_with("occurred_at,position,user_id,appid,openid"));
    let row = lines.next().expect("erin's login");
    assert!(lines.next().is_none(), "one login in app B");
    assert!(row.contains(APP_B) && row.contains(openid), "{row}");
    // The hostile device is text, not a formula: a leading quote, CSV-quoted.
    assert!(
        row.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\""),
        "{row}"
    );
    let everything = console.get("/console/logins.csv").await;
    assert_eq!(everything.text().await.expect("CSV").lines().count(), 5);
}

async fn the_audit_log_filters_by_action_and_user(world: World) {
    let logins = some_logins(&world).await;
    let console = Console::sign_in(&world, ADMIN_TOKEN).await;
    let registered = console
        .page("/console/audit?action=UserRegistered&user_id=&actor=")
        .await;
    assert_eq!(rows(&registered, "audit-entry"), 3);
    assert_eq!(
        registered.matches("data-action=\"UserRegistered\"").count(),
        3
    );
    let carol = &logins[0].user_id;
    let hers = console
        .page(&format!("/console/audit?user_id={carol}"))
        .await;
    assert!(rows(&hers, "audit-entry") >= 1);
    assert!(hers.contains(carol.as_str()));
    assert!(!hers.contains(logins[2].user_id.as_str()), "dave's entries");
    assert_eq!(
        console.get("/console/audit?user_id=nobody").await.status(),
        400
    );
    let csv = console
        .get("/console/audit.csv?action=UserRegistered")
        .await
        .text()
        .await
        .expect("CSV");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.lines().skip(1).all(|l| l.contains(",UserRegistered,")));
}

async fn the_events_page_shows_the_redacted_log_by_type_and_app(world: World) {
    let logins = some_logins(&world).await;
    let console = Console::sign_in(&world, ADMIN_TOKEN).await;
    let all = console.page("/console/events").await;
    assert!(rows(&all, "event") >= 7, "registrations and logins");
    // As analytics see it: the pseudonymous user id, never the openid.
    let openid = logins[0]["user"]["openid"].as_str().expect("openid");
    assert!(!all.contains(openid));
    assert!(all.contains(logins[0].user_id.as_str()));

    let logged_in = console
        .page("/console/events?type=UserLoggedIn&lang=zh-CN")
        .await;
    assert_eq!(rows(&logged_in, "event"), 4);
    assert_eq!(logged_in.matches("data-type=\"UserLoggedIn\"").count(), 4);
    let in_b = console
        .page(&format!("/console/events?type=UserLoggedIn&appid={APP_B}"))
        .await;
    assert_eq!(rows(&in_b, "event"), 1);

    // Paging by position: after the first login, three remain.
    let first = attribute_after(
        &logged_in,
        "<tr class=\"event\" data-type=\"UserLoggedIn\" data-position=\"",
    )
    .expect("a position");
    let rest = console
        .page(&format!("/console/events?type=UserLoggedIn&after={first}"))
        .await;
    assert_eq!(rows(&rest, "event"), 3);
    assert_eq!(console.get("/console/events?type=Nope").await.status(), 400);
    assert_eq!(console.get("/console/events?after=-1").await.status(), 400);
}

async fn a_key_created_in_the_console_is_shown_once_and_works(world: World) {
    world.login(APP_A, "carol").await;
    let console = Console::sign_in(&world, ADMIN_TOKEN).await;
    let keys = console.page("/console/keys").await;
    assert!(keys.contains("id=\"create-key-form\""));
    let answer = console
        .post(
            "/console/keys",
            &[
                ("name", "support desk"),
                ("scope", "admin:read"),
                ("scope", "events:read"),
            ],
        )
        .await;
    assert_eq!(answer.status(), 200);
    let created = answer.text().await.expect("a page");
    let token = text_of(&created, "new-key-secret");
    let key_id = text_of(&created, "new-key-id");
    assert!(token.starts_with("idk_"), "{token}");
    // The key works, with the scopes asked for and no other.
    assert_eq!(world.get_as(&token, "/v1/admin/logins").await.status(), 200);
    assert_eq!(world.get_as(&token, "/v1/events").await.status(), 200);
    assert_eq!(
        world
            .call(reqwest::Method::POST, "/v1/token/introspect")
            .bearer(&token)
            .form(&[("token", "x")])
            .send()
            .await
            .status(),
        403
    );
    // Shown once: the list names the key, never its secret.
    let keys = console.page("/console/keys").await;
    assert!(keys.contains(&key_id) && keys.contains("support desk"));
    assert!(!keys.contains(&token));
    // The secret is base64url and may itself hold `_`: it is all after `idk_<key id>_`.
    let secret = token.splitn(3, '_').nth(2).expect("a secret");
    assert_eq!(secret.len(), 43, "{token}");
    assert!(!keys.contains(secret));

    for bad in [
        vec![("name", "x")],
        vec![("name", ""), ("scope", "admin:read")],
        vec![("name", "x"), ("scope", "root")],
    ] {
        assert_eq!(
            console.post("/console/keys", &bad).await.status(),
            400,
            "{bad:?}"
        );
    }

    // Revoke behind a confirmation.
    let confirm = console
        .page(&format!("/console/keys/{key_id}/revoke"))
        .await;
    assert!(confirm.contains("id=\"confirm-form\"") && confirm.contains(&key_id));
    let revoked = console
        .post(&format!("/console/keys/{key_id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status(), 303);
    assert_eq!(world.get_as(&token, "/v1/admin/logins").await.status(), 401);
    assert_eq!(
        console
            .get("/console/keys/0123456789abcdef/revoke")
            .await
            .status(),
        404
    );
}

async fn a_read_only_session_sees_no_key_forms_and_its_posts_are_refused(world: World) {
    let reader = world.api_key("admin:read").await;
    let other = world.api_key("events:read").await;
    let other_id = other.split('_').nth(1).expect("a key id").to_owned();
    let console = Console::sign_in(&world, &reader).await;
    let keys = console.page("/console/keys").await;
    assert!(keys.contains("<table id=\"keys\""));
    assert!(keys.contains(&other_id));
    assert!(!keys.contains("create-key-form"));
    assert!(!keys.contains("class=\"revoke-key\""));
    let create = console
        .post(
            "/console/keys",
            &[("name", "mine"), ("scope", "admin:read")],
        )
        .await;
    assert_eq!(create.status(), 403);
    let revoke = console
        .post(&format!("/console/keys/{other_id}/revoke"), &[])
        .await;
    assert_eq!(revoke.status(), 403);
    assert_eq!(world.get_as(&other, "/v1/events").await.status(), 200);

    // A writer cannot hand out a scope it lacks.
    let writer = world.api_key("admin:read,admin:write").await;
    let console = Console::sign_in(&world, &writer).await;
    let keys = console.page("/console/keys").await;
    assert!(keys.contains("value=\"admin:write\"") && !keys.contains("value=\"events:read\""));
    let escalate = console
        .post(
            "/console/keys",
            &[("name", "more"), ("scope", "events:read")],
        )
        .await;
    assert_eq!(escalate.status(), 403);
    // Nor revoke a key holding a scope it lacks: revoking is as strong as creating.
    let wider = world.api_key("admin:read,events:read").await;
    let wider_id = wider.split('_').nth(1).expect("a key id").to_owned();
    let confirm = console
        .get(&format!("/console/keys/{wider_id}/revoke"))
        .await;
    assert_eq!(confirm.status(), 403);
    let cut_off = console
        .post(&format!("/console/keys/{wider_id}/revoke"), &[])
        .await;
    assert_eq!(cut_off.status(), 403);
    assert_eq!(world.get_as(&wider, "/v1/events").await.status(), 200);
    let narrower = world.api_key("admin:read").await;
    let narrower_id = narrower.split('_').nth(1).expect("a key id").to_owned();
    let revoked = console
        .post(&format!("/console/keys/{narrower_id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status(), 303);
    assert_eq!(
        world.get_as(&narrower, "/v1/admin/logins").await.status(),
        401
    );
}

async fn revoking_the_sessions_own_key_signs_it_out(world: World) {
    let key = world.api_key("admin:read,admin:write").await;
    let key_id = key.split('_').nth(1).expect("a key id").to_owned();
    let console = Console::sign_in(&world, &key).await;
    let confirm = console
        .page(&format!("/console/keys/{key_id}/revoke"))
        .await;
    assert!(confirm.contains("id=\"own-key-warning\""));
    let answer = console
        .post(&format!("/console/keys/{key_id}/revoke"), &[])
        .await;
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()[header::LOCATION], "/console/sign-in");
    let after = console.get("/console").await;
    assert_eq!(after.status(), 303);
    assert_eq!(after.headers()[header::LOCATION], "/console/sign-in");
}
