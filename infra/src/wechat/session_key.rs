//! WeChat's `session_key`: the AES key of the user's encrypted data, a credential we keep to
//! ourselves.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::ids::InvalidValue;
use secrecy::{ExposeSecret, SecretString};

/// Base64 (standard alphabet, padded) of 16 bytes, as WeChat hands it out. Debug is redacted;
/// there is deliberately no Display or Serialize so it cannot end up in a log line or a JSON
/// answer by accident.
#[derive(Clone)]
pub struct SessionKey(SecretString);

impl SessionKey {
    pub const LEN: usize = 16;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match STANDARD.decode(raw) {
            Ok(bytes) if bytes.len() == Self::LEN => Ok(Self(raw.to_owned().into())),
            _ => Err(InvalidValue::new(
                "session_key",
                "must be base64 of 16 bytes",
            )),
        }
    }

    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(STANDARD.encode(bytes).into())
    }

    /// The base64 text, as WeChat's signatures (`sha1(rawData + session_key)`) need it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The AES-128 key.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut key = [0u8; Self::LEN];
        // `parse` and `from_bytes` guarantee 16 bytes of valid base64.
        let bytes = STANDARD
            .decode(self.expose())
            .expect("a SessionKey holds base64 of 16 bytes");
        key.copy_from_slice(&bytes);
        key
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base64_of_16_bytes() {
        let key = SessionKey::parse("HyVFkGl5F5OQWJZZaNzBBg==").unwrap();
        assert_eq!(key.expose(), "HyVFkGl5F5OQWJZZaNzBBg==");
        assert_eq!(
            SessionKey::from_bytes(key.to_bytes()).expose(),
            key.expose()
        );
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "",
            "HyVFkGl5F5OQWJZZaNzBBg",   // unpadded
            "HyVFkGl5F5OQWJZZaNzBBgAA", // 18 bytes
            "HyVFkGl5F5OQWJZZaNzB",     // 15 bytes
            "HyVFkGl5F5OQWJZZaNz-Bg==", // url-safe alphabet
            "HyVFkGl5F5OQWJZZaNzBBg== ",
        ] {
            assert!(SessionKey::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let key = SessionKey::parse("HyVFkGl5F5OQWJZZaNzBBg==").unwrap();
        assert_eq!(format!("{key:?}"), "SessionKey(<redacted>)");
    }
}
