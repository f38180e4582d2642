//! The OpenAPI 3.1 document, generated from the `#[utoipa::path]` annotations on the handlers,
//! served at `/openapi.json`, with Swagger UI at `/docs` (its assets are compiled in, so it works
//! offline).
//!
//! Error responses are annotated with a status and a description naming the problem `code`s;
//! [`ProblemBodies`] then gives every 4xx and 5xx the shared [`Problem`] body, so the annotations
//! stay short and no error response can be left without it.
//!
//! Every body schema is derived from the type the handler serialises (`Problem` included);
//! `http::schemas` holds the few written by hand for JSON encoded elsewhere. The tests here check
//! the document against the router; the black-box tests check every answer against it.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use utoipa_swagger_ui::SwaggerUi;

use super::error::{Problem, PROBLEM_CONTENT_TYPE};
use super::routes::{
    admin, avatar, cloud_login, events, health, login, me, metrics, profile, sessions, tokens,
    wechat_push, wellknown,
};

pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// Both unauthenticated: the document holds no secret.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, ApiDoc::openapi())
        .into()
}

/// The document as served at [`OPENAPI_PATH`].
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes")
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "identityd",
        description = "WeChat mini-program identity service. Errors are RFC 9457 \
            `application/problem+json` with a stable `code`."
    ),
    paths(
        login::wechat_login,
        cloud_login::cloud_login,
        wechat_push::verify_url,
        wechat_push::receive_push,
        profile::authorize_profile,
        profile::update_profile,
        profile::bind_phone,
        profile::withdraw,
        profile::erase_me,
        avatar::upload_avatar,
        avatar::avatar_image,
        tokens::refresh,
        tokens::introspect,
        me::me,
        me::logout,
        sessions::my_sessions,
        sessions::end_my_session,
        wellknown::jwks,
        health::healthz,
        health::readyz,
        metrics::metrics,
        admin::find_users,
        admin::user,
        admin::user_logins,
        admin::block,
        admin::unblock,
        admin::erase,
        admin::logins,
        admin::audit,
        admin::daily_stats,
        sessions::user_sessions,
        sessions::revoke_user_sessions,
        events::list,
        events::stream,
        events::schema,
    ),
    components(schemas(Problem)),
    modifiers(&SecuritySchemes, &ValueSchemas, &EdgeResponses, &CommonResponses, &ProblemBodies),
    tags(
        (name = "login", description = "Mini-program login"),
        (name = "tokens", description = "Token refresh and introspection"),
        (name = "me", description = "The signed-in user (access token)"),
        (name = "wechat", description = "WeChat calling us: message push (signed with the app's push token)"),
        (name = "avatars", description = "Uploaded avatar images, public"),
        (name = "well-known", description = "Keys other backends verify access tokens with"),
        (name = "admin", description = "Admin API (API key with a scope)"),
        (name = "events", description = "The event stream for analytics (API key with `events:read`)"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// `bearer`: a user's access token. `api_key`: an admin or analytics API key, whose scopes an
/// operation's security requirement names.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The access token from `POST /v1/wechat/login` or `POST /v1/token/refresh`: \
                         an EdDSA JWT whose `aud` is the appid it was issued to.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("idk_…")
                    .description(Some(
                        "An API key (`identityd admin create-key`) or the bootstrap \
                         `IDENTITY_ADMIN_TOKEN`, as a bearer token. Keys carry scopes: \
                         `admin:read`, `admin:write`, `events:read`, `tokens:introspect`; each \
                         operation names the one it requires. A user access token is refused \
                         with 403.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The schemas of `http::values`, which request types and parameters refer to.
struct ValueSchemas;

impl Modify for ValueSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.extend(super::values::all());
    }
}

/// The answers of the edge, the same on every route, so no annotation has to repeat them: 408
/// `request_timeout` everywhere but the event stream (which is exempt from the request
/// timeout), 429 `rate_limited` wherever an API key is checked (too many failed
/// authentications from the client). (503 `database_unavailable`, 413 and 500 come from
/// `CommonResponses`.)
struct EdgeResponses;

impl Modify for EdgeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ResponseBuilder, Type};
        let timeout = ResponseBuilder::new()
            .description(
                "`request_timeout`: the request was not received and answered within \
                 `IDENTITY_REQUEST_TIMEOUT_SECS` (default 30); the connection is closed",
            )
            .build();
        let retry_after = HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some("Seconds to wait before retrying"))
            .build();
        let guessing = ResponseBuilder::new()
            .description(
                "`rate_limited`: a wrong key from a client that failed authentication too \
                 often (`IDENTITY_AUTH_FAILURES_PER_MINUTE`); its wrong keys are refused so \
                 until `Retry-After`, a right key still passes",
            )
            .header("Retry-After", retry_after.clone())
            .build();
        each_operation(openapi, |path, operation| {
            let responses = &mut operation.responses.responses;
            if path != "/v1/events/stream" {
                responses
                    .entry("408".to_owned())
                    .or_insert_with(|| timeout.clone().into());
            }
            let keyed = operation.security.iter().flatten().any(|requirement| {
                serde_json::to_value(requirement).is_ok_and(|value| value.get("api_key").is_some())
            });
            if keyed {
                responses
                    .entry("429".to_owned())
                    .or_insert_with(|| guessing.clone().into());
            }
        });
    }
}

/// The answers shared mechanisms give, stated here once for every operation they apply to
/// rather than by each route: 413 `payload_too_large` wherever a body is taken (with the limit
/// `http::body_limit` holds the route to), 503 `database_unavailable` wherever the database is
/// read or written, and 500 `internal` wherever anything can fail. A route that documents the
/// same status for its own reasons keeps its description, and the shared one is added to it.
struct CommonResponses;

/// Operations that touch no database: no 503 `database_unavailable`.
const NO_DATABASE: [(&str, &str); 4] = [
    ("get", "/healthz"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/v1/events/schema"),
    ("get", "/v1/wechat/push/{appid}"),
];
/// Operations that cannot fail short of a panic: no 500.
const NO_FAILURE: [&str; 2] = ["/healthz", "/v1/events/schema"];

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::Type;
        let retry_after = || {
            HeaderBuilder::new()
                .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before retrying"))
                .build()
        };
        each_method(openapi, |method, path, operation| {
            let responses = &mut operation.responses.responses;
            if operation.request_body.is_some() {
                let limit = super::body_limit::limit_of(Some(path));
                add_code(
                    responses,
                    "413",
                    "payload_too_large",
                    &format!("the body is over {}", bytes_in_words(limit)),
                    None,
                );
            }
            if !NO_DATABASE.contains(&(method, path)) {
                add_code(
                    responses,
                    "503",
                    "database_unavailable",
                    "the database is unavailable (connection lost, server restarting, \
                     busy or its disk full): retry",
                    Some(retry_after()),
                );
            }
            if !NO_FAILURE.contains(&path) {
                add_code(
                    responses,
                    "500",
                    "internal",
                    "an unexpected failure (details are logged, never sent)",
                    None,
                );
            }
        });
    }
}

/// Documents `code` under `status`: a new answer, or one more code of the route's own.
fn add_code(
    responses: &mut std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>>,
    status: &str,
    code: &str,
    meaning: &str,
    header: Option<utoipa::openapi::header::Header>,
) {
    use utoipa::openapi::ResponseBuilder;
    let named = format!("`{code}`");
    let response = responses
        .entry(status.to_owned())
        .or_insert_with(|| ResponseBuilder::new().build().into());
    let RefOr::T(response) = response else {
        return;
    };
    if response.description.is_empty() {
        response.description = format!("{named}: {meaning}");
    } else if response.description.contains(&named) {
        // The route's own description names the code already, for its own reason.
        response.description = format!("{}; or {meaning}", response.description);
    } else {
        response.description = format!("{}; {named}: {meaning}", response.description);
    }
    if let Some(header) = header {
        response
            .headers
            .entry("Retry-After".to_owned())
            .or_insert(header);
    }
}

/// `16 KiB`, `8 MiB`.
fn bytes_in_words(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Calls `visit` with every operation of the document, its method and its path.
fn each_method(
    openapi: &mut utoipa::openapi::OpenApi,
    mut visit: impl FnMut(&str, &str, &mut utoipa::openapi::path::Operation),
) {
    for (path, item) in &mut openapi.paths.paths {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                visit(method, path, operation);
            }
        }
    }
}

/// Calls `visit` with every operation of the document and its path.
fn each_operation(
    openapi: &mut utoipa::openapi::OpenApi,
    mut visit: impl FnMut(&str, &mut utoipa::openapi::path::Operation),
) {
    each_method(openapi, |_, path, operation| visit(path, operation));
}

/// Gives every error response without a body the [`Problem`] body.
struct ProblemBodies;

impl Modify for ProblemBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        each_operation(openapi, |_, operation| {
            for (status, response) in &mut operation.responses.responses {
                let RefOr::T(response) = response else {
                    continue;
                };
                if is_error_status(status) && response.content.is_empty() {
                    response.content.insert(
                        PROBLEM_CONTENT_TYPE.to_owned(),
                        Content::new(Some(Ref::from_schema_name(Problem::name()))),
                    );
                }
            }
        });
    }
}

fn is_error_status(status: &str) -> bool {
    status.starts_with('4') || status.starts_with('5')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use super::*;
    use crate::http::ApiError;

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document serializes")
    }

    /// The route files, by the module names `routes/mod.rs` declares.
    const ROUTE_SOURCES: &[(&str, &str)] = &[
        ("admin", include_str!("routes/admin.rs")),
        ("avatar", include_str!("routes/avatar.rs")),
        ("cloud_login", include_str!("routes/cloud_login.rs")),
        ("events", include_str!("routes/events.rs")),
        ("profile", include_str!("routes/profile.rs")),
        ("health", include_str!("routes/health.rs")),
        ("login", include_str!("routes/login.rs")),
        ("me", include_str!("routes/me.rs")),
        ("metrics", include_str!("routes/metrics.rs")),
        ("sessions", include_str!("routes/sessions.rs")),
        ("tokens", include_str!("routes/tokens.rs")),
        ("wellknown", include_str!("routes/wellknown.rs")),
        ("wechat_push", include_str!("routes/wechat_push.rs")),
    ];

    /// `(METHOD, path)` of every `.route("path", method(handler))` in the route files: read from
    /// the source, so a new route without documentation fails the test rather than a list that
    /// nobody updated.
    fn served_routes() -> BTreeSet<(String, String)> {
        let declared: BTreeSet<&str> = include_str!("routes/mod.rs")
            .lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.trim().strip_suffix(';')?.split_whitespace().collect();
                words
                    .contains(&"mod")
                    .then(|| words.last().copied())
                    .flatten()
            })
            .collect();
        let scanned: BTreeSet<&str> = ROUTE_SOURCES.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            declared, scanned,
            "ROUTE_SOURCES must list every route module"
        );

        let mut routes = BTreeSet::new();
        for (_, source) in ROUTE_SOURCES {
            for rest in source.split(".route(").skip(1) {
                let rest = rest.trim_start();
                let rest = rest.strip_prefix('"').expect("a route path literal");
                let (path, rest) = rest.split_once('"').expect("the path literal ends");
                let rest = rest.trim_start().trim_start_matches(',').trim_start();
                let (method, _) = rest.split_once('(').expect("a method router");
                routes.insert((method.trim().to_uppercase(), path.to_owned()));
            }
        }
        routes
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                found.push((method.to_uppercase(), path.clone(), operation));
            }
        }
        found
    }

    #[test]
    fn documents_every_route_the_router_serves() {
        let served = served_routes();
        assert!(
            served.len() >= 17,
            "the scan found too few routes: {served:?}"
        );
        let documented: BTreeSet<(String, String)> = operations(&document())
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        assert_eq!(
            documented, served,
            "documented (left) and served (right) routes differ"
        );
    }

    #[test]
    fn is_openapi_3_1_with_both_security_schemes() {
        let doc = document();
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
        assert_eq!(schemes["api_key"]["scheme"], "bearer");
    }

    /// Operations that read no input and need no credentials, so no 4xx is theirs to answer.
    const NO_CLIENT_ERRORS: [&str; 5] = [
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/events/schema",
    ];
    /// Of those, the ones that cannot fail short of a panic.
    const NO_ERRORS: [&str; 2] = ["/healthz", "/v1/events/schema"];

    #[test]
    fn every_operation_documents_its_errors_as_problems() {
        let doc = document();
        for (method, path, operation) in operations(&doc) {
            let responses = operation["responses"].as_object().expect("responses");
            let errors: Vec<&String> = responses.keys().filter(|s| is_error_status(s)).collect();
            if !NO_CLIENT_ERRORS.contains(&path.as_str()) {
                assert!(
                    errors.iter().any(|s| s.starts_with('4')),
                    "{method} {path} documents no 4xx"
                );
            }
            if !NO_ERRORS.contains(&path.as_str()) {
                assert!(!errors.is_empty(), "{method} {path} documents no error");
            }
            for status in errors {
                let response = &responses[status];
                assert_eq!(
                    response["content"][PROBLEM_CONTENT_TYPE]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
                let description = response["description"].as_str().unwrap_or_default();
                assert!(
                    description.starts_with('`'),
                    "{method} {path} {status}: the description must name the code"
                );
            }
        }
    }

    #[test]
    fn the_edges_answers_are_documented_where_they_happen() {
        let doc = document();
        for (method, path, operation) in operations(&doc) {
            let responses = &operation["responses"];
            let streaming = path == "/v1/events/stream";
            assert_eq!(
                responses.get("408").is_some(),
                !streaming,
                "{method} {path}: the request timeout spares only the event stream"
            );
            let keyed = operation["security"]
                .as_array()
                .is_some_and(|all| all.iter().any(|r| r.get("api_key").is_some()));
            if keyed {
                assert!(responses.get("429").is_some(), "{method} {path} lacks 429");
            }
        }
    }

    /// The answers of shared mechanisms: 413 with the route's own limit wherever a body is
    /// taken, 503 `database_unavailable` with `Retry-After` wherever the database is used, 500
    /// wherever anything can fail.
    #[test]
    fn shared_mechanisms_answers_are_documented_on_every_operation_they_reach() {
        let doc = document();
        for (method, path, operation) in operations(&doc) {
            let responses = &operation["responses"];
            let description = |status: &str| {
                responses[status]["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            if operation.get("requestBody").is_some() {
                let limit = bytes_in_words(super::super::body_limit::limit_of(Some(&path)));
                let too_large = description("413");
                assert!(
                    too_large.contains("`payload_too_large`") && too_large.contains(&limit),
                    "{method} {path}: 413 must name the limit, {limit}: {too_large}"
                );
            }
            let lowercase = method.to_lowercase();
            if !NO_DATABASE.contains(&(lowercase.as_str(), path.as_str())) {
                assert!(
                    description("503").contains("`database_unavailable`"),
                    "{method} {path} lacks 503 database_unavailable"
                );
                assert!(
                    responses["503"]["headers"].get("Retry-After").is_some(),
                    "{method} {path}: 503 without Retry-After"
                );
            }
            if !NO_FAILURE.contains(&path.as_str()) {
                assert!(
                    description("500").contains("`internal`"),
                    "{method} {path} lacks 500"
                );
            }
        }
        assert_eq!(bytes_in_words(16 * 1024), "16 KiB");
        assert_eq!(bytes_in_words(8 << 20), "8 MiB");
        assert_eq!(bytes_in_words(1000), "1000 bytes");
    }

    #[test]
    fn every_larger_body_limit_is_a_served_route() {
        let served: BTreeSet<String> = served_routes().into_iter().map(|(_, p)| p).collect();
        for (route, _) in super::super::routes::LARGER_BODIES {
            assert!(served.contains(route), "{route} is not served");
        }
    }

    /// Resolves a `$ref` (and a nullable `oneOf [null, $ref]`) to the schema it names.
    fn resolved<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        if let Some(target) = schema["$ref"].as_str() {
            let name = target.trim_start_matches("#/components/schemas/");
            return resolved(doc, &doc["components"]["schemas"][name]);
        }
        if let Some(choices) = schema["oneOf"].as_array() {
            let not_null: Vec<&Value> = choices.iter().filter(|c| c["type"] != "null").collect();
            if let [only] = not_null.as_slice() {
                return resolved(doc, only);
            }
        }
        schema
    }

    /// Whether a schema bounds its values: an enum, a pattern, a format, a maximum length or
    /// numeric bounds.
    fn bounded(schema: &Value) -> bool {
        ["enum", "pattern", "format", "maxLength"]
            .iter()
            .any(|rule| schema.get(*rule).is_some())
            || (schema.get("minimum").is_some() && schema["type"] != "string")
    }

    /// What the server takes as it comes (checked cryptographically, looked up, or ignored),
    /// so the document cannot bound it further: `(schema or parameter, field)`.
    const OPAQUE: [(&str, &str); 13] = [
        // Verified against the session key by signature and decryption.
        ("AuthorizeProfileRequest", "raw_data"),
        ("AuthorizeProfileRequest", "signature"),
        ("AuthorizeProfileRequest", "encrypted_data"),
        ("AuthorizeProfileRequest", "iv"),
        // Tokens: verified, never parsed by shape; anything else is not active or 401.
        ("RefreshRequest", "refresh_token"),
        ("IntrospectRequest", "token"),
        ("IntrospectRequest", "token_type_hint"),
        // Search filters: a value that names nothing finds nothing.
        ("query", "openid"),
        ("query", "unionid"),
        ("query", "phone"),
        ("query", "actor"),
        ("query", "action"),
        // The previous page's `next_cursor`, verified when decoded.
        ("query", "cursor"),
    ];

    /// Every parameter and every field of a request body states its rule (an enum, a
    /// pattern, a format, a length or numeric bounds), unless the server takes it as it comes.
    #[test]
    fn every_input_states_the_rule_the_server_enforces() {
        let doc = document();
        for (method, path, operation) in operations(&doc) {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().expect("a parameter name");
                let place = parameter["in"].as_str().expect("a parameter place");
                if place == "query" && OPAQUE.contains(&("query", name)) {
                    continue;
                }
                let schema = resolved(&doc, &parameter["schema"]);
                assert!(
                    bounded(schema),
                    "{method} {path}: {place} parameter {name} states no rule: {schema}"
                );
            }
            let Some(content) = operation["requestBody"]["content"].as_object() else {
                continue;
            };
            for (media_type, body) in content {
                let reference = body["schema"]["$ref"].as_str().unwrap_or_default();
                let name = reference.trim_start_matches("#/components/schemas/");
                let schema = resolved(&doc, &body["schema"]);
                for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                    if OPAQUE.contains(&(name, field.as_str())) {
                        continue;
                    }
                    let rule = resolved(&doc, property);
                    assert!(
                        bounded(rule),
                        "{method} {path} ({media_type}): {name}.{field} states no rule: {rule}"
                    );
                }
            }
        }
    }

    /// Request bodies whose type refuses unknown fields (`deny_unknown_fields`) say so, and
    /// only those: read from the route sources, as serde sees them.
    #[test]
    fn closed_request_bodies_are_stated_closed() {
        let doc = document();
        let mut closed = BTreeSet::new();
        for (_, source) in ROUTE_SOURCES {
            for (before, _) in source
                .match_indices("pub struct ")
                .chain(source.match_indices("\nstruct "))
            {
                let header = &source[source[..before].rfind("#[derive").unwrap_or(before)..before];
                let rest = &source[before..];
                let name = rest
                    .trim_start_matches('\n')
                    .trim_start_matches("pub ")
                    .trim_start_matches("struct ")
                    .split(|c: char| !c.is_alphanumeric())
                    .next()
                    .unwrap_or_default();
                if header.contains("deny_unknown_fields") {
                    closed.insert(name.to_owned());
                }
            }
        }
        let mut bodies = BTreeSet::new();
        for (_, _, operation) in operations(&doc) {
            for (_, body) in operation["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if let Some(target) = body["schema"]["$ref"].as_str() {
                    bodies.insert(
                        target
                            .trim_start_matches("#/components/schemas/")
                            .to_owned(),
                    );
                }
            }
        }
        assert!(
            bodies.len() >= 8,
            "too few request bodies found: {bodies:?}"
        );
        for name in bodies {
            let schema = &doc["components"]["schemas"][&name];
            let stated_closed = schema["additionalProperties"] == json!(false);
            assert_eq!(
                stated_closed,
                closed.contains(&name),
                "{name}: additionalProperties must be false exactly when serde refuses unknown fields"
            );
        }
    }

    /// The API key scope an operation requires, if it takes an API key.
    fn required_scope(method: &str, path: &str) -> Option<&'static str> {
        if path.starts_with("/v1/admin/") {
            Some(if method == "GET" {
                "admin:read"
            } else {
                "admin:write"
            })
        } else if path == "/v1/token/introspect" {
            Some("tokens:introspect")
        } else if path == "/v1/events" || path == "/v1/events/stream" {
            Some("events:read")
        } else {
            None
        }
    }

    #[test]
    fn operations_require_the_right_credentials() {
        let doc = document();
        for (method, path, operation) in operations(&doc) {
            let security = &operation["security"];
            if let Some(scope) = required_scope(&method, &path) {
                assert_eq!(
                    security,
                    &serde_json::json!([{ "api_key": [scope] }]),
                    "{method} {path}"
                );
                let description = operation["description"].as_str().unwrap_or_default();
                assert!(
                    description.contains(scope),
                    "{method} {path} names no scope"
                );
            } else if path.starts_with("/v1/me") || path == "/v1/logout" {
                assert_eq!(
                    security,
                    &serde_json::json!([{ "bearer": [] }]),
                    "{method} {path}"
                );
            } else {
                assert!(security.is_null(), "{method} {path} is public");
            }
        }
    }

    /// The shared sets (`http::responses`) land on the routes that name them: every keyed route
    /// refuses a key without its scope, every route taking a token refuses a bad one.
    #[test]
    fn the_shared_refusals_are_documented_on_every_route() {
        let doc = document();
        for (method, path, operation) in operations(&doc) {
            let responses = &operation["responses"];
            let scopes: Vec<&str> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["api_key"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for scope in scopes {
                let forbidden = responses["403"]["description"].as_str().unwrap_or_default();
                assert!(
                    forbidden.contains(scope),
                    "{method} {path}: 403 names no {scope}"
                );
                assert!(responses.get("401").is_some(), "{method} {path} lacks 401");
            }
            let bearer = operation["security"]
                .as_array()
                .is_some_and(|all| all.iter().any(|r| r.get("bearer").is_some()));
            if bearer {
                let unauthorized = responses["401"]["description"].as_str().unwrap_or_default();
                assert!(unauthorized.contains("access token"), "{method} {path}");
            }
        }
    }

    /// Every write by a user or an admin goes through the command executor, which answers 409
    /// when concurrent writers keep winning or the user was erased meanwhile.
    #[test]
    fn every_write_of_a_user_or_admin_documents_its_conflict() {
        let doc = document();
        for (method, path, operation) in operations(&doc) {
            let writes = matches!(method.as_str(), "POST" | "PUT" | "DELETE");
            let secured = operation["security"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|r| r.get("bearer").is_some() || r["api_key"] == json!(["admin:write"]))
            });
            if writes && secured {
                let conflict = operation["responses"]["409"]["description"]
                    .as_str()
                    .unwrap_or_default();
                assert!(conflict.contains("`conflict`"), "{method} {path} lacks 409");
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        found.push(target);
                    }
                    map.values().for_each(|v| refs(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
                _ => {}
            }
        }
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected reference {target}"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{target} does not resolve"
            );
        }
    }

    /// The names of a JSON object's members.
    fn keys(object: &Value) -> BTreeSet<&str> {
        let members = object.as_object().expect("an object");
        members.keys().map(String::as_str).collect()
    }

    /// The `Problem` schema describes what `ApiError` really sends.
    #[tokio::test]
    async fn problem_schema_matches_what_errors_send() {
        let doc = document();
        let problem = &doc["components"]["schemas"]["Problem"];
        let properties = keys(&problem["properties"]);
        let required: BTreeSet<&str> = problem["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for error in [
            ApiError::InvalidRequest("appid: must start with \"wx\"".into()),
            ApiError::Unauthorized("missing bearer token"),
            ApiError::NotFound,
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::internal(anyhow::anyhow!("the cause")),
        ] {
            let response = error.into_response();
            assert_eq!(
                response.headers()["content-type"],
                PROBLEM_CONTENT_TYPE,
                "{response:?}"
            );
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("the body");
            let body: Value = serde_json::from_slice(&bytes).expect("a JSON problem");
            let fields = keys(&body);
            assert!(
                fields.is_subset(&properties),
                "{body} has fields the schema lacks"
            );
            assert!(required.is_subset(&fields), "{body} lacks required fields");
        }
    }

    #[tokio::test]
    async fn serves_the_document_and_swagger_ui_offline() {
        let app: Router = router();
        let spec = app
            .clone()
            .oneshot(
                Request::get(OPENAPI_PATH)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        assert_eq!(spec.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(spec.into_body(), usize::MAX)
            .await
            .expect("body");
        let served: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(served, document());

        for path in [
            "/docs/",
            "/docs/swagger-ui.css",
            "/docs/swagger-initializer.js",
        ] {
            let page = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("answer");
            assert_eq!(page.status(), StatusCode::OK, "{path}");
        }
        let initializer = app
            .oneshot(
                Request::get("/docs/swagger-initializer.js")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        let bytes = axum::body::to_bytes(initializer.into_body(), usize::MAX)
            .await
            .expect("body");
        let script = String::from_utf8_lossy(&bytes);
        assert!(
            script.contains(OPENAPI_PATH),
            "Swagger UI reads our document"
        );
    }
}
