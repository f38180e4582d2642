//! The simulated people's ids and the random values WeChat hands out.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Same person, same app → same openid, like WeChat.
pub fn openid(appid: &str, user: &str) -> String {
    derive_id('o', "openid", appid, user)
}

/// Same person, same Open Platform account → same unionid across its apps.
pub fn unionid(open_platform: &str, user: &str) -> String {
    derive_id('u', "unionid", open_platform, user)
}

/// 28 characters of the URL-safe base64 alphabet, like WeChat's ids. The NUL separators keep
/// ("ab", "c") and ("a", "bc") apart.
fn derive_id(prefix: char, kind: &str, scope: &str, user: &str) -> String {
    let digest = Sha256::new()
        .chain_update(kind)
        .chain_update([0])
        .chain_update(scope)
        .chain_update([0])
        .chain_update(user)
        .finalize();
    let mut id = String::with_capacity(28);
    id.push(prefix);
    id.push_str(&URL_SAFE_NO_PAD.encode(digest)[..27]);
    id
}

/// A person's phone number, whatever the app: a mainland China mobile number (11 digits,
/// `139…`) derived from the name.
pub(super) fn phone_number(user: &str) -> String {
    let digest = Sha256::new()
        .chain_update("phone")
        .chain_update([0])
        .chain_update(user)
        .finalize();
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&digest[..8]);
    format!("139{:08}", u64::from_be_bytes(eight) % 100_000_000)
}

/// An app's access token: 128 characters of the URL-safe base64 alphabet, like WeChat's.
pub(super) fn new_access_token() -> String {
    URL_SAFE_NO_PAD.encode(random::<96>())
}

/// An initialisation vector for encrypted user data.
pub(super) fn new_iv() -> [u8; 16] {
    random::<16>()
}

/// A code (`wx.login()`'s or the phone-number button's). Unlike WeChat's (alphanumeric),
/// these are standard base64 of 23 bytes:
/// 32 characters ending in '=' and often holding '+' and '/', so a client that forgets to
/// URL-encode its query fails here rather than in production.
pub(super) fn new_code() -> String {
    STANDARD.encode(random::<23>())
}

/// Base64 of 16 random bytes, the shape of WeChat's session_key.
pub(super) fn new_session_key() -> String {
    STANDARD.encode(random::<16>())
}

/// A person nobody named: never seen before, never seen again.
pub(super) fn anonymous_user() -> String {
    format!("anonymous-{}", hex::encode(random::<16>()))
}

/// The app's original id (`gh_…`), the `ToUserName` of what WeChat pushes to it.
pub(super) fn original_id(appid: &str) -> String {
    let digest = Sha256::new()
        .chain_update("original_id")
        .chain_update([0])
        .chain_update(appid)
        .finalize();
    format!("gh_{}", hex::encode(&digest[..6]))
}

/// A content check's id, shaped like WeChat's (`60ae120f-371d5872-7941a05b`).
pub(super) fn trace_id() -> String {
    let [a, b, c] = [random::<4>(), random::<4>(), random::<4>()].map(hex::encode);
    format!("{a}-{b}-{c}")
}

/// A message push's `nonce`: digits, as WeChat sends.
pub(super) fn nonce() -> String {
    (u32::from_be_bytes(random::<4>()) % 1_000_000_000).to_string()
}

/// WeChat ends its errmsg with a request id.
pub(super) fn rid() -> String {
    hex::encode(random::<8>())
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_wechat_ids() {
        let id = openid("wx0123456789abcdef", "alice");
        assert_eq!(id.len(), 28);
        assert!(id.starts_with('o'));
        assert!(domain::OpenId::parse(&id).is_ok());
        assert_eq!(id, openid("wx0123456789abcdef", "alice"));
        assert_ne!(id, openid("wx0123456789abcdee", "alice"));
        assert!(domain::UnionId::parse(&unionid("open", "alice")).is_ok());
    }

    #[test]
    fn phone_numbers_are_per_person() {
        let alice = phone_number("alice");
        assert_eq!(alice.len(), 11);
        assert!(alice.starts_with("139") && alice.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(alice, phone_number("alice"));
        assert_ne!(alice, phone_number("bob"));
    }

    #[test]
    fn codes_and_keys_have_wechat_shapes() {
        let code = new_code();
        assert_eq!(code.len(), 32);
        assert!(domain::WeChatCode::parse(&code).is_ok());
        assert!(crate::wechat::SessionKey::parse(&new_session_key()).is_ok());
    }
}
