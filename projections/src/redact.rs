//! What of a payload the audit log may keep: the analytics allow-list
//! (`infra::analytics::is_kept`), so one policy decides what is personal. Ids, reasons and
//! flags are kept; names, avatars, phone numbers, regions, device strings, WeChat identifiers
//! and encrypted blobs are not. A kept field's sealed value (a block reason) stays sealed: the
//! admin API opens it with the user's data key, and nothing opens it after an erasure.

use serde_json::Value;

/// Replaces the value of every field not known to be harmless.
#[cfg(test)]
pub(crate) const REDACTED: &str = infra::analytics::REDACTED;

pub(crate) fn redact(payload: &Value) -> Value {
    infra::analytics::redact_for_audit(payload)
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
            "openid": "o_1", "unionid": "u_1", "phone_id": "p1",
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
            "openid",
            "unionid",
            "phone_id",
        ] {
            assert_eq!(out[key], REDACTED, "{key}");
        }
        assert_eq!(out["profile"]["nickname"], REDACTED);
        assert_eq!(out["count"], 3);
        assert!(out["gone"].is_null());
        assert!(!out.to_string().contains("张三"));
    }
}
