//! The rules `/openapi.json` states for inputs are the server's. The cases are read from the
//! served document: every rule of a JSON body field (a length, a pattern, an enum) is broken
//! in turn and must be refused with 400 `invalid_request`, while the unbroken body is taken;
//! every path parameter given a value outside its schema (not a UUID, not a member, off its
//! pattern) must be refused. A rule stated but not enforced, or a valid value refused, fails
//! here. (The signed cloud login is left to its own tests.) Backend-independent, so SQLite.

use identity_tests::{assert_problem, Backend, World, ADMIN_TOKEN, APP_A};
use reqwest::Method;
use serde_json::{json, Value};

async fn world() -> World {
    World::start(Backend::Sqlite)
        .await
        .expect("SQLite is always available")
}

/// The schema `schema` names, through a `$ref` or a nullable `oneOf [null, …]`.
fn resolved(doc: &Value, schema: &Value) -> Value {
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
    schema.clone()
}

/// Values breaking `rule`, each with why. Every pattern of the document excludes control
/// characters, so one in the middle breaks any of them.
fn breaking(rule: &Value) -> Vec<(&'static str, Value)> {
    let mut values = Vec::new();
    if let Some(max) = rule["maxLength"].as_u64() {
        values.push(("one past maxLength", json!("a".repeat(max as usize + 1))));
    }
    if let Some(min) = rule["minLength"].as_u64().filter(|min| *min > 0) {
        values.push((
            "one short of minLength",
            json!("a".repeat(min as usize - 1)),
        ));
    }
    if rule.get("pattern").is_some() {
        values.push(("off its pattern", json!("a\u{1}b")));
    }
    if rule.get("enum").is_some() {
        values.push(("not a member", json!("not-a-member")));
    }
    values
}

/// The JSON body schema of `method path`.
fn body_schema(doc: &Value, method: &str, path: &str) -> Value {
    let operation = &doc["paths"][path][method];
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} takes no JSON body");
    resolved(doc, schema)
}

#[tokio::test]
async fn every_rule_of_a_json_body_is_enforced_and_a_body_keeping_them_taken() {
    let world = world().await;
    let doc: Value = world.get("/openapi.json").await.json().await.expect("JSON");
    let user = world.login(APP_A, "rule-keeper").await;
    let target = world.login(APP_A, "rule-target").await;
    let admin_path = |action: &str| format!("/v1/admin/users/{}/{action}", target.user_id);
    // (method, documented path, concrete path, credential, a body keeping every rule), in an
    // order where each accepted body leaves the next one possible.
    let operations = [
        (
            "post",
            "/v1/wechat/login".to_owned(),
            "/v1/wechat/login".to_owned(),
            None,
            json!({ "appid": APP_A, "code": world.wx_login(APP_A, "rule-keeper").await }),
        ),
        (
            "post",
            "/v1/me/phone".into(),
            "/v1/me/phone".into(),
            Some(user.access.clone()),
            json!({ "code": world.phone_code(APP_A, "rule-keeper") }),
        ),
        (
            "put",
            "/v1/me/profile".into(),
            "/v1/me/profile".into(),
            Some(user.access.clone()),
            json!({ "nickname": "Rule Keeper", "avatar_url": "https://example.com/a.png" }),
        ),
        (
            "post",
            "/v1/admin/users/{id}/block".into(),
            admin_path("block"),
            Some(ADMIN_TOKEN.to_owned()),
            json!({ "reason": "testing\nthe rules" }),
        ),
        (
            "post",
            "/v1/admin/users/{id}/unblock".into(),
            admin_path("unblock"),
            Some(ADMIN_TOKEN.to_owned()),
            json!({ "reason": "done" }),
        ),
        (
            "post",
            "/v1/admin/users/{id}/sessions/revoke".into(),
            admin_path("sessions/revoke"),
            Some(ADMIN_TOKEN.to_owned()),
            json!({ "reason": "done" }),
        ),
    ];
    let mut broken = 0;
    for (method, documented, path, credential, keeping) in operations {
        let send = |body: Value| {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let mut call = world.call(method, &path).json(&body);
            if let Some(credential) = &credential {
                call = call.bearer(credential);
            }
            call.send()
        };
        let schema = body_schema(&doc, method, &documented);
        let fields = schema["properties"].as_object().expect("an object body");
        for (field, property) in fields {
            for (why, value) in breaking(&resolved(&doc, property)) {
                let mut body = keeping.clone();
                body[field] = value;
                let refused = send(body).await;
                assert_eq!(
                    refused.status(),
                    400,
                    "{method} {documented}: {field} {why} must be refused"
                );
                assert_problem(refused, 400, "invalid_request").await;
                broken += 1;
            }
        }
        let taken = send(keeping).await;
        assert!(
            taken.status().is_success(),
            "{method} {documented}: a body keeping every rule is taken, not {}",
            taken.status()
        );
    }
    assert!(
        broken >= 15,
        "only {broken} rules were broken: the walk found too few"
    );
}

/// A value inside every path parameter's schema, by name.
fn keeping_value(name: &str) -> String {
    match name {
        "kind" => "profile".into(),
        "appid" => APP_A.into(),
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

/// A value outside `schema`, as it goes in a path.
fn breaking_path_value(schema: &Value) -> Option<&'static str> {
    if schema.get("enum").is_some() {
        Some("not-a-member")
    } else if schema["format"] == "uuid" {
        Some("not-a-uuid")
    } else if schema.get("pattern").is_some() {
        Some("a%01b")
    } else {
        None
    }
}

#[tokio::test]
async fn every_path_parameter_outside_its_schema_is_refused() {
    let world = world().await;
    let doc: Value = world.get("/openapi.json").await.json().await.expect("JSON");
    let user = world.login(APP_A, "path-walker").await;
    let mut refused = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let parameters: Vec<&Value> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .collect();
            let credential = match operation["security"][0].as_object() {
                Some(scheme) if scheme.contains_key("api_key") => Some(ADMIN_TOKEN),
                Some(_) => Some(user.access.as_str()),
                None => None,
            };
            for broken in &parameters {
                let schema = resolved(&doc, &broken["schema"]);
                let name = broken["name"].as_str().expect("a name");
                let Some(value) = breaking_path_value(&schema) else {
                    panic!("{method} {path}: path parameter {name} has no rule: {schema}");
                };
                let mut concrete = path.clone();
                for parameter in &parameters {
                    let other = parameter["name"].as_str().expect("a name");
                    let filled = if other == name {
                        value.to_owned()
                    } else {
                        keeping_value(other)
                    };
                    concrete = concrete.replace(&format!("{{{other}}}"), &filled);
                }
                let method =
                    Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
                let mut call = world.call(method.clone(), &concrete);
                if let Some(credential) = credential {
                    call = call.bearer(credential);
                }
                if operation.get("requestBody").is_some() {
                    call = call.json(&json!({ "reason": "walking the paths" }));
                }
                let answer = call.send().await;
                let status = answer.status().as_u16();
                assert!(
                    status == 400 || status == 404,
                    "{method} {concrete}: {name} outside its schema answered {status}"
                );
                let code = if status == 400 {
                    "invalid_request"
                } else {
                    "not_found"
                };
                assert_problem(answer, status, code).await;
                refused += 1;
            }
        }
    }
    assert!(refused >= 10, "only {refused} path parameters were walked");
}

#[tokio::test]
async fn every_member_of_an_enumerated_path_parameter_is_taken() {
    let world = world().await;
    let doc: Value = world.get("/openapi.json").await.json().await.expect("JSON");
    let user = world.login(APP_A, "withdrawer").await;
    let kind = &doc["paths"]["/v1/me/authorizations/{kind}"]["delete"]["parameters"][0];
    let members = resolved(&doc, &kind["schema"])["enum"].clone();
    let members = members.as_array().expect("kind is an enum");
    assert_eq!(members.len(), 2);
    for member in members {
        let member = member.as_str().expect("a name");
        let path = format!("/v1/me/authorizations/{member}");
        // Nothing was authorized: the kind is understood, and there is nothing to withdraw.
        let answer = world.delete_as(&user.access, &path).await;
        assert_problem(answer, 404, "not_found").await;
    }
}
