//! Our tokens: EdDSA access tokens (JWTs other backends verify with the JWKS) and HMAC'd
//! rotating refresh tokens.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use domain::{AppId, SessionId, UserId};

use crate::crypto::{MasterKey, Sealer};
use crate::store::{SigningKeyStore, StoreError, StoredSigningKey};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, badly signed, wrong algorithm, unknown key, expired: the caller learns no more.
    #[error("invalid token")]
    Invalid,
    #[error("signing key store: {0}")]
    Store(#[from] StoreError),
    #[error("signing key is unusable: {0}")]
    Key(String),
}

/// What an access token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user id.
    pub sub: UserId,
    /// The session the token belongs to (lets introspection see revocation).
    pub sid: SessionId,
    pub appid: AppId,
    pub iat: i64,
    pub exp: i64,
}

struct SigningKey {
    kid: String,
    /// Opened once: `jsonwebtoken` would rebuild the key pair from its PKCS#8 bytes (a scalar
    /// multiplication) for every token it signs.
    pair: Ed25519KeyPair,
    decoding: DecodingKey,
    /// The raw public key, base64url: the JWK's `x`.
    public_x: String,
}

/// Issues and verifies access tokens with the Ed25519 keys kept (sealed) in the database, so
/// every instance signs with the same key.
pub struct AccessTokens {
    keys: Vec<SigningKey>,
    issuer: String,
    ttl: Duration,
}

const SIGNING_KEY_PURPOSE: &str = "signing-key";

impl AccessTokens {
    /// Loads the signing keys, creating the first one if the database has none.
    pub async fn load_or_create(
        store: &dyn SigningKeyStore,
        master: &MasterKey,
        issuer: String,
        ttl: Duration,
    ) -> Result<Self, TokenError> {
        let sealer = master.sealer(SIGNING_KEY_PURPOSE);
        let mut stored = store.signing_keys().await?;
        if stored.is_empty() {
            stored = store
                .insert_first_signing_key(new_signing_key(&sealer)?)
                .await?;
        }
        let keys = stored
            .iter()
            .map(|key| open_signing_key(&sealer, key))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(TokenError::Key("no signing key stored".into()));
        }
        Ok(Self { keys, issuer, ttl })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(
        &self,
        user: UserId,
        session: SessionId,
        appid: &AppId,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let key = &self.keys[0];
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: user,
            sid: session,
            appid: appid.clone(),
            iat: now.timestamp(),
            exp: now.timestamp() + self.ttl.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        // A JWS compact serialisation, as `jsonwebtoken::encode` writes it, signed with the
        // opened key pair.
        let signing_input = format!("{}.{}", jws_part(&header)?, jws_part(&claims)?);
        let signature = key.pair.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Checks signature, algorithm (EdDSA only: `none` and HMAC are refused), key id, issuer
    /// and expiry.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "x": k.public_x,
                    "kid": k.kid, "use": "sig", "alg": "EdDSA",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn new_signing_key(sealer: &Sealer) -> Result<StoredSigningKey, TokenError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| TokenError::Key("key generation failed".into()))?;
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| TokenError::Key(e.to_string()))?;
    let kid = jwk_thumbprint(pair.public_key().as_ref());
    Ok(StoredSigningKey {
        sealed_private_key: sealer.seal(pkcs8.as_ref(), kid.as_bytes()),
        kid,
        created_at: Utc::now(),
    })
}

fn open_signing_key(sealer: &Sealer, stored: &StoredSigningKey) -> Result<SigningKey, TokenError> {
    let pkcs8 = SecretBox::new(Box::new(
        sealer
            .open(&stored.sealed_private_key, stored.kid.as_bytes())
            .map_err(|_| {
                TokenError::Key(format!(
                    "key {} does not open under this master key",
                    stored.kid
                ))
            })?,
    ));
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.expose_secret())
        .map_err(|e| TokenError::Key(e.to_string()))?;
    let public_x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    Ok(SigningKey {
        kid: stored.kid.clone(),
        pair,
        decoding: DecodingKey::from_ed_components(&public_x)
            .map_err(|e| TokenError::Key(e.to_string()))?,
        public_x,
    })
}

/// base64url(JSON) of a JWS header or payload.
fn jws_part<T: Serialize>(value: &T) -> Result<String, TokenError> {
    serde_json::to_vec(value)
        .map(|json| URL_SAFE_NO_PAD.encode(json))
        .map_err(|e| TokenError::Key(e.to_string()))
}

/// RFC 7638 thumbprint of the Ed25519 JWK: a stable, public key id.
fn jwk_thumbprint(public_key: &[u8]) -> String {
    let x = URL_SAFE_NO_PAD.encode(public_key);
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Refresh tokens: `rt1.` + base64url(session id ‖ generation ‖ HMAC). Nothing about them is
/// stored: the MAC proves we issued it, the session's stream says which generation is current.
pub struct RefreshTokens {
    key: SecretBox<[u8; 32]>,
}

const REFRESH_PREFIX: &str = "rt1.";
const REFRESH_BODY_LEN: usize = 16 + 4;

impl RefreshTokens {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            key: master.derive("refresh-token"),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }

    pub fn issue(&self, session: SessionId, generation: u32) -> String {
        let mut body = Vec::with_capacity(REFRESH_BODY_LEN + 32);
        body.extend_from_slice(session.as_uuid().as_bytes());
        body.extend_from_slice(&generation.to_be_bytes());
        let mut mac = self.mac();
        mac.update(&body);
        body.extend_from_slice(&mac.finalize().into_bytes());
        format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(body))
    }

    /// The session and generation a genuine token names.
    pub fn verify(&self, token: &str) -> Result<(SessionId, u32), TokenError> {
        let encoded = token
            .strip_prefix(REFRESH_PREFIX)
            .ok_or(TokenError::Invalid)?;
        let raw = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TokenError::Invalid)?;
        if raw.len() != REFRESH_BODY_LEN + 32 {
            return Err(TokenError::Invalid);
        }
        let (body, tag) = raw.split_at(REFRESH_BODY_LEN);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| TokenError::Invalid)?;
        let (session, generation) = body.split_at(16);
        let session = uuid::Uuid::from_slice(session).map_err(|_| TokenError::Invalid)?;
        let generation =
            u32::from_be_bytes(generation.try_into().map_err(|_| TokenError::Invalid)?);
        Ok((SessionId::from_uuid(session), generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_verify_and_resist_tampering() {
        let master = MasterKey::generate();
        let tokens = RefreshTokens::new(&master);
        let session = SessionId::from_uuid(uuid::Uuid::now_v7());
        let token = tokens.issue(session, 3);
        assert_eq!(tokens.verify(&token).unwrap(), (session, 3));
        assert!(RefreshTokens::new(&MasterKey::generate())
            .verify(&token)
            .is_err());
        let mut forged = token.clone().into_bytes();
        let i = forged.len() - 50;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        assert!(tokens.verify(&String::from_utf8(forged).unwrap()).is_err());
        assert!(tokens.verify("rt1.").is_err());
        assert!(tokens.verify("garbage").is_err());
    }

    /// Ed25519 signatures are deterministic, so a token signed with the opened key pair must
    /// be exactly what `jsonwebtoken::encode` makes of the same header, claims and key.
    #[test]
    fn access_tokens_are_what_jsonwebtoken_would_sign() {
        let sealer = MasterKey::generate().sealer(SIGNING_KEY_PURPOSE);
        let stored = new_signing_key(&sealer).unwrap();
        let tokens = AccessTokens {
            keys: vec![open_signing_key(&sealer, &stored).unwrap()],
            issuer: "https://id.example".into(),
            ttl: Duration::from_secs(900),
        };
        let (user, session) = (
            UserId::from_uuid(uuid::Uuid::now_v7()),
            SessionId::from_uuid(uuid::Uuid::now_v7()),
        );
        let appid = AppId::parse("wx0123456789abcdef").unwrap();
        let token = tokens.issue(user, session, &appid, Utc::now()).unwrap();

        let claims = tokens.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
        let pkcs8 = sealer
            .open(&stored.sealed_private_key, stored.kid.as_bytes())
            .unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(stored.kid.clone());
        let expected = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8),
        )
        .unwrap();
        assert_eq!(token, expected);
    }

    #[test]
    fn thumbprint_is_stable_and_url_safe() {
        let a = jwk_thumbprint(&[7u8; 32]);
        assert_eq!(a, jwk_thumbprint(&[7u8; 32]));
        assert_ne!(a, jwk_thumbprint(&[8u8; 32]));
        assert_eq!(a.len(), 43);
    }
}
