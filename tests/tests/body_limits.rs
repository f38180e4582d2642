//! Every body over its route's limit answers 413 `payload_too_large`, whatever its content type
//! (JSON, a form, multipart, WeChat's XML or JSON pushes, anything else or none), declared with
//! a `Content-Length` or sent chunked without one; the console shows it as its own 413 page.
//! Backend-independent, so SQLite.

use std::time::Duration;

use api::http::body_limit::{limit_of, DEFAULT_MAX_BODY_BYTES};
use identity_tests::console::{csrf_of, ConsoleClient};
use identity_tests::{assert_problem, Backend, World, ADMIN_TOKEN, APP_A, PUSH_TOKEN_A};
use infra::wechat::push::push_signature;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn world() -> World {
    World::start(Backend::Sqlite)
        .await
        .expect("SQLite is always available")
}

/// A body of `len` bytes of the given kind: valid up to its size, so only the size is wrong.
fn body_of(kind: &str, len: usize) -> Vec<u8> {
    let (head, tail) = match kind {
        "json" => (
            format!(r#"{{"appid":"{APP_A}","code":""#),
            r#""}"#.to_owned(),
        ),
        "form" => ("token=".to_owned(), String::new()),
        "xml" => (
            "<xml><Content><![CDATA[".to_owned(),
            "]]></Content></xml>".to_owned(),
        ),
        _ => (String::new(), String::new()),
    };
    let fill = len - head.len() - tail.len();
    [head.into_bytes(), vec![b'x'; fill], tail.into_bytes()].concat()
}

/// A WeChat push query for `APP_A`, signed now.
fn push_path() -> String {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = push_signature(PUSH_TOKEN_A, &timestamp, "1234567");
    format!("/v1/wechat/push/{APP_A}?signature={signature}&timestamp={timestamp}&nonce=1234567")
}

/// What the service answered a request sent by hand with a chunked body (no
/// `Content-Length`): the status, the head (lowercased) and the body as sent.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    /// The value of header `name` (lowercase), or empty.
    fn header(&self, name: &str) -> &str {
        self.head
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
    }

    fn assert_payload_too_large(&self, what: &str) {
        assert_eq!(self.status, 413, "{what}: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            "application/problem+json",
            "{what}"
        );
        assert!(
            self.body.contains(r#""code":"payload_too_large""#),
            "{what}"
        );
    }
}

/// Sends `body` chunked (8 KiB a chunk) to `path` of the world's first instance, writing
/// beside the reading: the service may answer before it has read everything.
async fn send_chunked(
    world: &World,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Raw {
    let authority = world.app.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("the service listens");
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(8 * 1024) {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        writer.flush().await
    });
    let mut answer = Vec::new();
    // The service may close the connection without reading the rest: what was read counts.
    let _ = tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer))
        .await
        .expect("an answer within a minute");
    sending.abort();
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// A body the API takes: what it is, where it goes, with what.
struct Case {
    what: &'static str,
    path: String,
    content_type: Option<&'static str>,
    credential: Option<String>,
    kind: &'static str,
    limit: usize,
}

/// Every kind of body, to the routes that take it.
async fn api_bodies(world: &World) -> Vec<Case> {
    let introspector = world.api_key("tokens:introspect").await;
    let push_limit = limit_of(Some("/v1/wechat/push/{appid}"));
    let case = |what, path: &str, content_type, credential: Option<&String>, kind, limit| Case {
        what,
        path: path.to_owned(),
        content_type,
        credential: credential.cloned(),
        kind,
        limit,
    };
    let (json, form) = (
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
    );
    let default = DEFAULT_MAX_BODY_BYTES;
    let key = Some(&introspector);
    vec![
        case("JSON", "/v1/wechat/login", json, None, "json", default),
        case("a form", "/v1/token/introspect", form, key, "form", default),
        case(
            "JSON to a form route",
            "/v1/token/introspect",
            json,
            key,
            "json",
            default,
        ),
        case(
            "XML pushed",
            &push_path(),
            Some("text/xml"),
            None,
            "xml",
            push_limit,
        ),
        case("JSON pushed", &push_path(), json, None, "json", push_limit),
        case(
            "another type",
            "/v1/wechat/login",
            Some("application/octet-stream"),
            None,
            "bytes",
            default,
        ),
        case("no type", "/v1/wechat/login", None, None, "bytes", default),
        case(
            "no type, signed",
            "/v1/wechat/cloud-login",
            None,
            None,
            "bytes",
            default,
        ),
    ]
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_whatever_its_type() {
    let world = world().await;
    for case in api_bodies(&world).await {
        let body = body_of(case.kind, case.limit + 1);
        let mut call = world.call(Method::POST, &case.path).with(|r| r.body(body));
        if let Some(content_type) = case.content_type {
            call = call.header("content-type", content_type);
        }
        if let Some(credential) = &case.credential {
            call = call.bearer(credential);
        }
        let answer = call.send().await;
        assert_eq!(answer.status(), 413, "{}", case.what);
        assert_problem(answer, 413, "payload_too_large").await;
    }
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_whatever_its_type() {
    let world = world().await;
    for case in api_bodies(&world).await {
        let mut headers = Vec::new();
        if let Some(content_type) = case.content_type {
            headers.push(("content-type", content_type.to_owned()));
        }
        if let Some(credential) = &case.credential {
            headers.push(("authorization", format!("Bearer {credential}")));
        }
        let body = body_of(case.kind, case.limit + 1);
        let raw = send_chunked(&world, "POST", &case.path, &headers, body).await;
        raw.assert_payload_too_large(case.what);
    }
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_read() {
    let world = world().await;
    // A code far over its 256 characters: the body is read, and its field refused.
    let body = body_of("json", DEFAULT_MAX_BODY_BYTES);
    let declared = world
        .call(Method::POST, "/v1/wechat/login")
        .header("content-type", "application/json")
        .with(|r| r.body(body.clone()))
        .send()
        .await;
    assert_problem(declared, 400, "invalid_request").await;
    let headers = [("content-type", "application/json".to_owned())];
    let chunked = send_chunked(&world, "POST", "/v1/wechat/login", &headers, body).await;
    assert_eq!(chunked.status, 400, "{}", chunked.body);
    assert!(chunked.body.contains("invalid_request"));
}

#[tokio::test]
async fn an_upload_over_the_routes_limit_is_413() {
    let world = world().await;
    let login = world.login(APP_A, "uploader").await;
    let limit = limit_of(Some("/v1/me/avatar"));
    assert!(limit > DEFAULT_MAX_BODY_BYTES);
    // A form whose first field fills the body past the limit, before any `file`.
    const BOUNDARY: &str = "body-limit-boundary";
    let mut body =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"padding\"\r\n\r\n")
            .into_bytes();
    body.resize(limit + 1024, b'x');
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let headers = [
        (
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ),
        ("authorization", format!("Bearer {}", login.access)),
    ];
    let raw = send_chunked(&world, "POST", "/v1/me/avatar", &headers, body).await;
    raw.assert_payload_too_large("multipart");
}

/// The console's forms (sign-in, and a signed-in session's, CSRF checked) over the limit: its
/// own 413 page, declared or chunked.
#[tokio::test]
async fn the_console_shows_its_own_413_page() {
    let world = world().await;
    let padding = "x".repeat(DEFAULT_MAX_BODY_BYTES);
    let assert_page = |status: u16, content_type: &str, html: &str, what: &str| {
        assert_eq!(status, 413, "{what}");
        assert!(
            content_type.starts_with("text/html"),
            "{what}: {content_type}"
        );
        assert!(html.contains("payload_too_large"), "{what}: {html}");
    };

    let stranger = ConsoleClient::new(&world.app.base);
    let answer = stranger
        .post("/console/sign-in", &[("api_key", &padding)])
        .await;
    let status = answer.status().as_u16();
    let content_type = identity_tests::content_type(&answer);
    assert_page(
        status,
        &content_type,
        &answer.text().await.expect("a page"),
        "sign-in",
    );
    let form = format!("api_key={padding}");
    let headers = [(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let raw = send_chunked(
        &world,
        "POST",
        "/console/sign-in",
        &headers,
        form.into_bytes(),
    )
    .await;
    let content_type = raw.header("content-type");
    assert_page(raw.status, content_type, &raw.body, "chunked sign-in");

    let admin = ConsoleClient::signed_in(&world.app.base, ADMIN_TOKEN).await;
    let csrf = csrf_of(&admin.page("/console").await);
    let answer = admin
        .post(
            "/console/sign-out",
            &[("csrf", &csrf), ("padding", &padding)],
        )
        .await;
    let status = answer.status().as_u16();
    let content_type = identity_tests::content_type(&answer);
    assert_page(
        status,
        &content_type,
        &answer.text().await.expect("a page"),
        "sign-out",
    );
    // Refused before the handler: the session is still open.
    assert_eq!(admin.get("/console").await.status(), 200);
}
