//! Every answer checked against the OpenAPI document: the harness wraps each service instance's
//! router with [`checked`], so whatever a black-box test receives has first been validated
//! against the schema of its operation and status. An answer that drifts from the document (a
//! renamed field, a wrong type, an undocumented status or content type) panics the connection
//! with the reason on stderr, and the test fails with it.
//!
//! The checker covers the part of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that utoipa
//! emits: `$ref`, `type` (one or several), `enum`, `const`, `properties`, `required`,
//! `additionalProperties`, `items`, `allOf`, `oneOf`, `anyOf`, the `uuid`, `date-time` and `date`
//! formats and numeric and length bounds. It is stricter than JSON Schema in one way: an object
//! schema with `properties` and no `additionalProperties` is closed, so a field the answer has
//! and the document lacks is drift too.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use serde_json::Value;

/// `router`, with every answer checked against the OpenAPI document.
pub fn checked(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(check))
}

async fn check(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if method == Method::HEAD || method == Method::OPTIONS {
        return response;
    }
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let assert_conforms = |body: Option<&[u8]>| {
        if let Err(drift) = check_answer(
            document(),
            &method,
            &path,
            status,
            content_type.as_deref(),
            body,
        ) {
            panic!("{drift}");
        }
    };
    if content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        // Endless: only its status and content type can be checked.
        assert_conforms(None);
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => panic!("{method} {path}: the answer's body failed: {error}"),
    };
    assert_conforms(Some(&bytes));
    Response::from_parts(parts, Body::from(bytes))
}

/// The service's OpenAPI document, as `/openapi.json` serves it.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(api::http::openapi::document)
}

/// Checks one answer against `doc`: `Ok` when its status is documented for the operation that
/// `path` and `method` name, its content type is one the status documents, and its body (`None`:
/// not read, a stream) matches the schema. Paths no operation serves (`/docs`, unknown paths)
/// are only checked to be problems when they are errors, unless they are console pages (HTML).
pub fn check_answer(
    doc: &Value,
    method: &Method,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> Result<(), String> {
    let at = format!("{method} {path} {status}");
    let Some(operation) = operation(doc, method, path) else {
        // The admin console's pages are HTML, outside the document: its errors too are pages.
        let console_page = (path == "/console" || path.starts_with("/console/"))
            && content_type.is_some_and(|c| c.starts_with("text/html"));
        if status >= 400 && !console_page {
            return check_content(doc, &at, &problem_response(), content_type, body);
        }
        return Ok(());
    };
    let responses = &operation["responses"];
    let Some(response) = responses.get(status.to_string()) else {
        let documented: Vec<&String> = responses
            .as_object()
            .into_iter()
            .flatten()
            .map(|(s, _)| s)
            .collect();
        return Err(format!(
            "{at}: status not documented (documented: {documented:?})"
        ));
    };
    let response = resolve(doc, response);
    check_content(doc, &at, response, content_type, body)
}

/// The response every unknown path or method answers: a problem.
fn problem_response() -> Value {
    serde_json::json!({
        "content": {
            "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } }
        }
    })
}

fn check_content(
    doc: &Value,
    at: &str,
    response: &Value,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> Result<(), String> {
    let content = response["content"].as_object();
    let Some(content) = content.filter(|c| !c.is_empty()) else {
        return match body {
            Some(bytes) if !bytes.is_empty() => Err(format!(
                "{at}: the document says no body, the answer has {} bytes ({content_type:?})",
                bytes.len()
            )),
            _ => Ok(()),
        };
    };
    let Some(content_type) = content_type else {
        return Err(format!(
            "{at}: no content type, documented {:?}",
            content.keys()
        ));
    };
    let media = media_type(content_type);
    let documented = content.iter().find(|(name, _)| media_type(name) == media);
    let Some((_, media_schema)) = documented else {
        return Err(format!(
            "{at}: content type {content_type} not documented (documented: {:?})",
            content.keys().collect::<Vec<_>>()
        ));
    };
    let is_json = media == "application/json" || media.ends_with("+json");
    let (Some(bytes), true) = (body, is_json) else {
        return Ok(());
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{at}: the body is not JSON ({e})"))?;
    let Some(schema) = media_schema.get("schema") else {
        return Ok(());
    };
    let mut drift = Vec::new();
    Checker { doc }.value(&value, schema, "$", false, &mut drift);
    if drift.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{at}: the body drifted from its schema:\n  {}\n  body: {value}",
            drift.join("\n  ")
        ))
    }
}

/// A content type without its parameters (`; charset=utf-8`), lower case.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The operation serving `method` at `path`: the document's path templates matched segment by
/// segment, a literal segment winning over a `{parameter}` (as the router does).
fn operation<'a>(doc: &'a Value, method: &Method, path: &str) -> Option<&'a Value> {
    let wanted: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &Value)> = None;
    for (template, item) in doc["paths"].as_object()? {
        let segments: Vec<&str> = template.split('/').collect();
        if segments.len() != wanted.len() {
            continue;
        }
        let mut literal = 0;
        let matches = segments.iter().zip(&wanted).all(|(t, w)| {
            if t.starts_with('{') && t.ends_with('}') {
                !w.is_empty()
            } else {
                literal += 1;
                t == w
            }
        });
        if matches && best.is_none_or(|(l, _)| literal > l) {
            best = Some((literal, item));
        }
    }
    best?.1.get(method.as_str().to_ascii_lowercase())
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let mut schema = schema;
    // References chain at most a few times; a cycle would be a broken document.
    for _ in 0..16 {
        let Some(target) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        let Some(pointer) = target.strip_prefix('#') else {
            return &Value::Null;
        };
        schema = doc.pointer(pointer).unwrap_or(&Value::Null);
    }
    schema
}

struct Checker<'a> {
    doc: &'a Value,
}

impl Checker<'_> {
    /// Appends to `drift` every way `value` breaks `schema`. `open`: the caller (an `allOf`)
    /// checks unknown properties against all its branches together.
    fn value(&self, value: &Value, schema: &Value, at: &str, open: bool, drift: &mut Vec<String>) {
        let schema = resolve(self.doc, schema);
        if schema.is_null() {
            drift.push(format!("{at}: unresolvable schema reference"));
            return;
        }
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.iter().any(|t| is_type(value, t)) {
                drift.push(format!(
                    "{at}: expected {}, got {value}",
                    allowed.join(" or ")
                ));
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                drift.push(format!("{at}: {value} is none of {options:?}"));
            }
        }
        if let Some(constant) = schema.get("const") {
            if constant != value {
                drift.push(format!("{at}: expected {constant}, got {value}"));
            }
        }
        self.format(value, schema, at, drift);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for branch in all {
                self.value(value, branch, at, true, drift);
            }
        }
        if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
            let passing = one.iter().filter(|b| self.passes(value, b, at)).count();
            if passing != 1 {
                drift.push(format!(
                    "{at}: {value} matches {passing} of the oneOf branches, not 1"
                ));
            }
        }
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            if !any.iter().any(|b| self.passes(value, b, at)) {
                drift.push(format!("{at}: {value} matches none of the anyOf branches"));
            }
        }
        match value {
            Value::Object(fields) => self.object(fields, schema, at, open, drift),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.value(item, item_schema, &format!("{at}[{i}]"), false, drift);
                    }
                }
            }
            _ => {}
        }
    }

    fn passes(&self, value: &Value, schema: &Value, at: &str) -> bool {
        let mut drift = Vec::new();
        self.value(value, schema, at, false, &mut drift);
        drift.is_empty()
    }

    fn object(
        &self,
        fields: &serde_json::Map<String, Value>,
        schema: &Value,
        at: &str,
        open: bool,
        drift: &mut Vec<String>,
    ) {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !fields.contains_key(name) {
                drift.push(format!("{at}: lacks the required field `{name}`"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, field) in fields {
            let field_at = format!("{at}.{name}");
            if let Some(property) = properties.and_then(|p| p.get(name)) {
                self.value(field, property, &field_at, false, drift);
            } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                self.value(field, extra, &field_at, false, drift);
            }
        }
        if open {
            return;
        }
        if let Some(declared) = self.declared(schema) {
            for name in fields.keys() {
                if !declared.contains(name) {
                    drift.push(format!("{at}: has the field `{name}` the document lacks"));
                }
            }
        }
    }

    /// The property names an object schema allows, with its `allOf` branches'; `None` when it
    /// allows any (`additionalProperties`, or no `properties` at all).
    fn declared(&self, schema: &Value) -> Option<BTreeSet<String>> {
        let schema = resolve(self.doc, schema);
        if schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        {
            return None;
        }
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut any = false;
        if let Some(properties) = schema["properties"].as_object() {
            any = true;
            names.extend(properties.keys().cloned());
        }
        for branch in schema["allOf"].as_array().into_iter().flatten() {
            any = true;
            names.extend(self.declared(branch)?);
        }
        if schema.get("oneOf").is_some() || schema.get("anyOf").is_some() {
            return None;
        }
        any.then_some(names)
    }

    fn format(&self, value: &Value, schema: &Value, at: &str, drift: &mut Vec<String>) {
        if let (Some(text), Some(format)) = (value.as_str(), schema["format"].as_str()) {
            let ok = match format {
                "uuid" => uuid::Uuid::try_parse(text).is_ok(),
                "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
                _ => true,
            };
            if !ok {
                drift.push(format!("{at}: {value} is not a {format}"));
            }
            let length = text.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|min| length < min) {
                drift.push(format!("{at}: {value} is shorter than minLength"));
            }
            if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
                drift.push(format!("{at}: {value} is longer than maxLength"));
            }
        }
        if let Some(number) = value.as_f64() {
            if schema["minimum"].as_f64().is_some_and(|min| number < min) {
                drift.push(format!("{at}: {value} is below the minimum"));
            }
            if schema["maximum"].as_f64().is_some_and(|max| number > max) {
                drift.push(format!("{at}: {value} is above the maximum"));
            }
        }
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn login_answer() -> Value {
        json!({
            "access_token": "eyJ.x.y",
            "token_type": "Bearer",
            "expires_in": 900,
            "refresh_token": "r1",
            "user": {
                "user_id": "0193a1b2-0000-7000-8000-000000000000",
                "openid": "o-1",
                "unionid": null,
                "is_new_user": true,
                "profile": null,
                "phone": null,
            },
        })
    }

    fn check(status: u16, content_type: &str, body: &Value) -> Result<(), String> {
        check_answer(
            document(),
            &Method::POST,
            "/v1/wechat/login",
            status,
            Some(content_type),
            Some(body.to_string().as_bytes()),
        )
    }

    #[test]
    fn a_faithful_login_answer_passes() {
        check(200, "application/json", &login_answer()).expect("conforms");
    }

    #[test]
    fn a_renamed_field_fails() {
        let mut answer = login_answer();
        let token = answer["access_token"].take();
        answer
            .as_object_mut()
            .expect("object")
            .remove("access_token");
        answer["accessToken"] = token;
        let drift = check(200, "application/json", &answer).expect_err("drift");
        assert!(drift.contains("`access_token`"), "{drift}");
        assert!(drift.contains("`accessToken`"), "{drift}");
    }

    #[test]
    fn a_nested_field_of_the_wrong_type_fails() {
        let mut answer = login_answer();
        answer["user"]["is_new_user"] = json!("yes");
        let drift = check(200, "application/json", &answer).expect_err("drift");
        assert!(drift.contains("$.user.is_new_user"), "{drift}");
        answer["user"]["is_new_user"] = json!(true);
        answer["user"]["user_id"] = json!("not-a-uuid");
        let drift = check(200, "application/json", &answer).expect_err("drift");
        assert!(drift.contains("$.user.user_id"), "{drift}");
    }

    #[test]
    fn an_undocumented_status_or_content_type_fails() {
        let drift = check(202, "application/json", &login_answer()).expect_err("drift");
        assert!(drift.contains("status not documented"), "{drift}");
        let drift = check(200, "text/html", &login_answer()).expect_err("drift");
        assert!(drift.contains("content type"), "{drift}");
    }

    #[test]
    fn problems_are_checked_against_the_problem_schema() {
        let problem = json!({
            "type": "about:blank", "title": "Bad Request", "status": 400,
            "detail": "appid: bad", "code": "invalid_request",
        });
        check(400, "application/problem+json", &problem).expect("conforms");
        let mut drifted = problem.clone();
        drifted["status"] = json!("400");
        check(400, "application/problem+json", &drifted).expect_err("drift");
        // An unknown path answers a problem too.
        check_answer(
            document(),
            &Method::GET,
            "/v1/nowhere",
            404,
            Some("application/json"),
            Some(b"{}"),
        )
        .expect_err("not a problem");
    }

    #[test]
    fn templates_match_with_literals_first() {
        let op = operation(
            document(),
            &Method::POST,
            "/v1/admin/users/abc/sessions/revoke",
        )
        .expect("matched");
        assert!(op["responses"].get("200").is_some());
        assert!(operation(document(), &Method::GET, "/v1/admin/users/abc/nothing").is_none());
    }
}
