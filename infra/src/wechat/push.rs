//! WeChat's message push (WeChat calling us), plain mode with JSON bodies: the signature that
//! authenticates each call, and the one event we act on, `wxa_media_check` (the verdict of a
//! `media_check_async`).
//!
//! `signature = hex(sha1(concat(sort([token, timestamp, nonce]))))`, sorted as strings. The
//! body is not covered by it in plain mode: a push carries no secret, and whoever forges one
//! needs the token; an event only ever removes content, and only for a trace we submitted.

use serde::Deserialize;
use serde_json::Value;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::content::{RawVerdict, TraceId, Verdict};

/// The event type of an asynchronous media check's verdict.
pub const MEDIA_CHECK_EVENT: &str = "wxa_media_check";

/// The signature WeChat sends with every push for `token` (the app's push token).
pub fn push_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    let mut sha = Sha1::new();
    for part in parts {
        sha.update(part.as_bytes());
    }
    hex::encode(sha.finalize())
}

/// Whether `signature` is the push signature for `token`, compared in constant time (case
/// ignored: it is hex).
pub fn verify(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    let expected = push_signature(token, timestamp, nonce);
    let given = signature.to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// A pushed message, as far as we read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    MediaCheck(MediaCheck),
    /// Any other message or event (subscriptions, customer-service messages, …): not ours to
    /// act on, but acknowledged so WeChat does not retry it.
    Other,
}

/// The verdict of one asynchronous media check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaCheck {
    /// The app WeChat says the check was for.
    pub appid: String,
    pub trace_id: TraceId,
    /// `Err(errcode)`: WeChat could not check the image (it could not fetch it, say).
    pub outcome: Result<Verdict, i64>,
}

/// Why a push body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the body is not a JSON object")]
    NotJson,
    #[error("a wxa_media_check event lacks a valid {0}")]
    Malformed(&'static str),
}

#[derive(Deserialize)]
struct RawMediaCheck {
    appid: Option<String>,
    trace_id: Option<String>,
    #[serde(default)]
    errcode: i64,
    result: Option<RawVerdict>,
}

/// Reads a plain-mode JSON push: strictly the fields a media check's verdict is acted on by,
/// leniently everything else (WeChat adds fields; other events are `Other`).
pub fn parse_push(body: &[u8]) -> Result<PushEvent, PushError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| PushError::NotJson)?;
    if !value.is_object() {
        return Err(PushError::NotJson);
    }
    let is_event = value.get("MsgType").and_then(Value::as_str) == Some("event");
    if !is_event || value.get("Event").and_then(Value::as_str) != Some(MEDIA_CHECK_EVENT) {
        return Ok(PushEvent::Other);
    }
    let raw: RawMediaCheck =
        serde_json::from_value(value).map_err(|_| PushError::Malformed("field"))?;
    let appid = raw.appid.ok_or(PushError::Malformed("appid"))?;
    let trace_id = raw
        .trace_id
        .as_deref()
        .and_then(TraceId::parse)
        .ok_or(PushError::Malformed("trace_id"))?;
    let outcome = if raw.errcode != 0 {
        Err(raw.errcode)
    } else {
        Ok(raw
            .result
            .and_then(RawVerdict::parse)
            .ok_or(PushError::Malformed("result"))?)
    };
    Ok(PushEvent::MediaCheck(MediaCheck {
        appid,
        trace_id,
        outcome,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Computed apart from this code:
    // python3 -c "import hashlib; print(hashlib.sha1(''.join(sorted(['identityd-push',
    //   '1714000000', '8675309'])).encode()).hexdigest())"
    // → b81481fd9024d912d16ebcdb4f0722cc945a3ea3
    // and for WeChat's documentation example, token "AAAAA", timestamp "1409304348", nonce
    // "xxxxxx" → 87e50d28dcac81e5f82950c4c6f701200ac60e2c.
    #[test]
    fn the_signature_is_the_sha1_of_the_sorted_parts() {
        assert_eq!(
            push_signature("identityd-push", "1714000000", "8675309"),
            "b81481fd9024d912d16ebcdb4f0722cc945a3ea3"
        );
        assert_eq!(
            push_signature("AAAAA", "1409304348", "xxxxxx"),
            "87e50d28dcac81e5f82950c4c6f701200ac60e2c"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let good = "b81481fd9024d912d16ebcdb4f0722cc945a3ea3";
        assert!(verify("identityd-push", "1714000000", "8675309", good));
        assert!(verify(
            "identityd-push",
            "1714000000",
            "8675309",
            &good.to_uppercase()
        ));
        assert!(!verify("identityd-push", "1714000001", "8675309", good));
        assert!(!verify("other-token", "1714000000", "8675309", good));
        assert!(!verify(
            "identityd-push",
            "1714000000",
            "8675309",
            &good[..39]
        ));
        assert!(!verify("identityd-push", "1714000000", "8675309", ""));
    }

    fn media_check(result: Value, errcode: i64) -> Value {
        json!({
            "ToUserName": "gh_38cc49f9733b", "FromUserName": "oH1fu0FdHqpToe2T6gBj0WyB8iS1",
            "CreateTime": 1626959646, "MsgType": "event", "Event": "wxa_media_check",
            "appid": "wx0123456789abcdef", "trace_id": "60f96f1d-3845297a-1976a3ae",
            "version": 2, "detail": [{"strategy": "content_model", "errcode": 0,
            "suggest": "risky", "label": 20002, "prob": 90}],
            "errcode": errcode, "errmsg": "ok", "result": result,
        })
    }

    fn parse(value: &Value) -> Result<PushEvent, PushError> {
        parse_push(value.to_string().as_bytes())
    }

    #[test]
    fn a_media_check_verdict_is_read() {
        let event = parse(&media_check(json!({"suggest": "risky", "label": 20002}), 0));
        assert_eq!(
            event,
            Ok(PushEvent::MediaCheck(MediaCheck {
                appid: "wx0123456789abcdef".into(),
                trace_id: TraceId::parse("60f96f1d-3845297a-1976a3ae").unwrap(),
                outcome: Ok(Verdict::Risky { label: 20002 }),
            }))
        );
        let failed = parse(&media_check(Value::Null, 87014));
        assert!(matches!(
            failed,
            Ok(PushEvent::MediaCheck(MediaCheck {
                outcome: Err(87014),
                ..
            }))
        ));
    }

    #[test]
    fn other_messages_are_acknowledged_and_bad_bodies_refused() {
        let subscribe = json!({"MsgType": "event", "Event": "subscribe_msg_popup_event"});
        assert_eq!(parse(&subscribe), Ok(PushEvent::Other));
        assert_eq!(parse(&json!({"MsgType": "text"})), Ok(PushEvent::Other));
        assert_eq!(parse_push(b"<xml></xml>"), Err(PushError::NotJson));
        assert_eq!(parse(&json!([1, 2])), Err(PushError::NotJson));
        let mut no_trace = media_check(json!({"suggest": "pass", "label": 100}), 0);
        no_trace["trace_id"] = json!(42);
        assert_eq!(parse(&no_trace), Err(PushError::Malformed("field")));
        no_trace.as_object_mut().unwrap().remove("trace_id");
        assert_eq!(parse(&no_trace), Err(PushError::Malformed("trace_id")));
        let odd = media_check(json!({"suggest": "unsure", "label": 100}), 0);
        assert_eq!(parse(&odd), Err(PushError::Malformed("result")));
    }
}
