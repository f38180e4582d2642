//! WeChat's encrypted user data (legacy `getUserProfile` / `getUserInfo`): the `rawData`
//! signature and the AES-128-CBC payload, keyed by the user's `session_key`.
//!
//! Each failure is its own variant so the API can say precisely what is wrong, and flag the
//! ones a stale `session_key` causes (the client logged in again after fetching the payload).

use aes::Aes128;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::{Digest, Sha1};
use sha2::Sha256;

use super::SessionKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    /// `signature` is not `hex(sha1(rawData + session_key))`: tampered, or signed with
    /// another (stale) `session_key`.
    #[error("the signature does not match raw_data")]
    SignatureMismatch,
    #[error("{0} is not valid base64")]
    BadBase64(&'static str),
    /// WeChat's `iv` is base64 of 16 bytes (-41002 in its reference decoder).
    #[error("iv must be base64 of 16 bytes")]
    BadIv,
    /// The ciphertext is empty or not whole AES blocks.
    #[error("encrypted_data must be whole 16-byte blocks")]
    BadCiphertextLength,
    /// The padding is wrong after decryption: almost always a stale `session_key`.
    #[error("encrypted_data does not decrypt under the current session key")]
    DecryptFailed,
    /// Decrypted, but not JSON: also the mark of a wrong key (the padding check passes by
    /// chance about once in 256 tries).
    #[error("the decrypted data is not JSON")]
    NotJson,
    /// The payload was made for another app.
    #[error("the data's watermark names another appid")]
    WatermarkMismatch,
}

impl UserDataError {
    /// Whether logging in again (a fresh `session_key`) and fetching the data again is the
    /// likely fix.
    pub fn suggests_stale_session_key(&self) -> bool {
        matches!(
            self,
            Self::SignatureMismatch | Self::DecryptFailed | Self::NotJson
        )
    }
}

/// `hex(sha1(rawData + session_key))`, the session key as its base64 text.
pub fn raw_data_signature(raw_data: &str, session_key: &SessionKey) -> String {
    let mut sha = Sha1::new();
    sha.update(raw_data.as_bytes());
    sha.update(session_key.expose().as_bytes());
    hex::encode(sha.finalize())
}

pub fn verify_raw_data(
    raw_data: &str,
    signature: &str,
    session_key: &SessionKey,
) -> Result<(), UserDataError> {
    let expected = raw_data_signature(raw_data, session_key);
    // Constant-time: compare MACs of both under a throwaway key.
    let mac = |text: &str| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"signature-compare")
            .expect("HMAC takes keys of any length");
        mac.update(text.to_ascii_lowercase().as_bytes());
        mac
    };
    mac(signature)
        .verify_slice(&mac(&expected).finalize().into_bytes())
        .map_err(|_| UserDataError::SignatureMismatch)
}

/// Decrypts `encrypted_data` and checks `watermark.appid`.
pub fn decrypt(
    encrypted_data: &str,
    iv: &str,
    session_key: &SessionKey,
    appid: &str,
) -> Result<Value, UserDataError> {
    let iv = STANDARD
        .decode(iv)
        .map_err(|_| UserDataError::BadBase64("iv"))?;
    let iv: [u8; 16] = iv.try_into().map_err(|_| UserDataError::BadIv)?;
    let ciphertext = STANDARD
        .decode(encrypted_data)
        .map_err(|_| UserDataError::BadBase64("encrypted_data"))?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(UserDataError::BadCiphertextLength);
    }
    let plaintext = cbc::Decryptor::<Aes128>::new(&session_key.to_bytes().into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .map_err(|_| UserDataError::DecryptFailed)?;
    let data: Value = serde_json::from_slice(&plaintext).map_err(|_| UserDataError::NotJson)?;
    if data["watermark"]["appid"].as_str() != Some(appid) {
        return Err(UserDataError::WatermarkMismatch);
    }
    Ok(data)
}

/// What WeChat does on the phone: encrypts `data` under the session key. For the simulator.
pub fn encrypt(data: &Value, iv: [u8; 16], session_key: &SessionKey) -> String {
    let plaintext = serde_json::to_vec(data).expect("a JSON value serialises");
    let ciphertext = cbc::Encryptor::<Aes128>::new(&session_key.to_bytes().into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(&plaintext);
    STANDARD.encode(ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RAW_DATA: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;

    fn key(text: &str) -> SessionKey {
        SessionKey::parse(text).unwrap()
    }

    #[test]
    fn wechat_signature_vector() {
        let session_key = key("HyVFkGl5F5OQWJZZaNzBBg==");
        assert_eq!(
            raw_data_signature(RAW_DATA, &session_key),
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        );
        assert!(verify_raw_data(
            RAW_DATA,
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c",
            &session_key
        )
        .is_ok());
        assert_eq!(
            verify_raw_data(
                RAW_DATA,
                "75e81ceda165f4ffa64f4068af58c64b8f54b88d",
                &session_key
            ),
            Err(UserDataError::SignatureMismatch)
        );
        assert_eq!(
            verify_raw_data(RAW_DATA, "75e8", &key("tiihtNczf5v6AKRyjwEUhQ==")),
            Err(UserDataError::SignatureMismatch)
        );
    }

    #[test]
    fn round_trip_and_every_failure() {
        let session_key = key("tiihtNczf5v6AKRyjwEUhQ==");
        let data = json!({"nickName": "Band", "watermark": {"appid": "wx4f4bc4dec97d474b", "timestamp": 1477314187}});
        let iv = [7u8; 16];
        let iv_b64 = STANDARD.encode(iv);
        let sealed = encrypt(&data, iv, &session_key);
        assert_eq!(
            decrypt(&sealed, &iv_b64, &session_key, "wx4f4bc4dec97d474b").unwrap(),
            data
        );

        assert_eq!(
            decrypt(&sealed, &iv_b64, &session_key, "wx0000000000000000"),
            Err(UserDataError::WatermarkMismatch)
        );
        assert_eq!(
            decrypt("%%%", &iv_b64, &session_key, "wx4f4bc4dec97d474b"),
            Err(UserDataError::BadBase64("encrypted_data"))
        );
        assert_eq!(
            decrypt(&sealed, "AAAA", &session_key, "wx4f4bc4dec97d474b"),
            Err(UserDataError::BadIv)
        );
        assert_eq!(
            decrypt("AAAA", &iv_b64, &session_key, "wx4f4bc4dec97d474b"),
            Err(UserDataError::BadCiphertextLength)
        );
        let stale = decrypt(
            &sealed,
            &iv_b64,
            &key("HyVFkGl5F5OQWJZZaNzBBg=="),
            "wx4f4bc4dec97d474b",
        )
        .unwrap_err();
        assert!(stale.suggests_stale_session_key(), "{stale:?}");
        let not_json = encrypt(&json!("just a string"), iv, &session_key);
        assert_eq!(
            decrypt(&not_json, &iv_b64, &session_key, "wx4f4bc4dec97d474b"),
            Err(UserDataError::WatermarkMismatch)
        );
    }

    #[test]
    fn check_session_hmac_vector() {
        // WECHAT.md: key o0q0otL8aEzpcZL/FT9WsQ== over {"foo":"bar"}.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"o0q0otL8aEzpcZL/FT9WsQ==").unwrap();
        mac.update(br#"{"foo":"bar"}"#);
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
    }
}
