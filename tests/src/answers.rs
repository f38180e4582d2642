//! What the service answered: JSON bodies and RFC 9457 problems.

use serde_json::{json, Value};

/// The body of a 200 answer, as JSON.
pub async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "status");
    response.json().await.expect("JSON")
}

/// `status code detail hint`: everything a problem answer says, to compare answers whole.
pub async fn answer_of(response: reqwest::Response) -> String {
    let (status, body) = problem_of(response).await;
    format!(
        "{status} {} {} {}",
        body["code"], body["detail"], body["hint"]
    )
}

/// The body of `POST /v1/me/profile/authorize` for what the simulator's `wx.getUserProfile()`
/// returned.
pub fn authorize_body(wx: &Value) -> Value {
    json!({
        "raw_data": wx["rawData"],
        "signature": wx["signature"],
        "encrypted_data": wx["encryptedData"],
        "iv": wx["iv"],
    })
}

/// Asserts an RFC 9457 problem answer with the given status and code; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let (_, body) = problem_of(response).await;
    assert_eq!(body["code"], code, "problem code in {body}");
    assert_eq!(body["status"], status);
    body
}

/// Asserts the problem's `field` (`detail`, `hint`) is a string that mentions `text`.
pub fn assert_mentions(problem: &Value, field: &str, text: &str) {
    assert!(
        problem[field].as_str().is_some_and(|f| f.contains(text)),
        "{field} should mention {text:?}: {problem}"
    );
}

/// A problem answer's status and body (asserting it is `application/problem+json`).
async fn problem_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        content_type(&response),
        "application/problem+json",
        "status {status}"
    );
    (status, response.json().await.expect("problem JSON"))
}

/// The answer's `Content-Type`, or empty.
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
