//! What of a payload the audit log may keep. An allow-list, so that fields of event types we
//! do not know yet (or new fields of known ones) are redacted until someone decides they are
//! not personal: ids, reasons and flags are kept; names, avatars, phone numbers, regions,
//! device strings and encrypted blobs are not.

use serde_json::{Map, Value};

/// Replaces the value of every field not known to be harmless.
pub(crate) const REDACTED: &str = "[redacted]";

/// Fields kept as they are (besides any `…_id` field and any boolean flag).
const KEPT: &[&str] = &[
    "appid",
    "openid",
    "unionid",
    "source",
    "reason",
    "scope",
    "authorization",
    "kind",
    "generation",
    "fields",
    "is_new_user",
];

/// Fields that end in `_id` yet hold personal data in clear.
const NEVER: &[&str] = &["phone_id", "device_id"];

pub(crate) fn redact(payload: &Value) -> Value {
    match payload {
        Value::Object(fields) => Value::Object(redact_fields(fields)),
        Value::Null => Value::Null,
        _ => Value::String(REDACTED.to_owned()),
    }
}

fn redact_fields(fields: &Map<String, Value>) -> Map<String, Value> {
    fields
        .iter()
        .map(|(key, value)| {
            let kept = match value {
                Value::Null | Value::Bool(_) => value.clone(),
                _ if !is_kept(key) => Value::String(REDACTED.to_owned()),
                Value::Object(inner) => Value::Object(redact_fields(inner)),
                _ => value.clone(),
            };
            (key.clone(), kept)
        })
        .collect()
}

fn is_kept(key: &str) -> bool {
    !NEVER.contains(&key) && (KEPT.contains(&key) || key.ends_with("_id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_fields_are_redacted_ids_and_reasons_kept() {
        let payload = json!({
            "user_id": "u1", "appid": "wx1", "reason": "spam", "is_new_user": true,
            "nickname": "张三", "avatar_url": "https://x", "phone_number": "+8613800000000",
            "city": "Shenzhen", "encrypted_profile": "AAAA", "device": "iPhone",
            "profile": {"nickname": "n"}, "count": 3, "gone": null
        });
        let out = redact(&payload);
        assert_eq!(out["user_id"], "u1");
        assert_eq!(out["appid"], "wx1");
        assert_eq!(out["reason"], "spam");
        assert_eq!(out["is_new_user"], true);
        for key in [
            "nickname",
            "avatar_url",
            "phone_number",
            "city",
            "encrypted_profile",
            "device",
            "profile",
            "count",
        ] {
            assert_eq!(out[key], REDACTED, "{key}");
        }
        assert!(out["gone"].is_null());
        assert!(!out.to_string().contains("张三"));
    }
}
