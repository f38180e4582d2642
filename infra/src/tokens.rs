//! Our tokens: EdDSA access tokens (JWTs other backends verify with the JWKS) and HMAC'd
//! rotating refresh tokens.

mod verified;

use std::sync::{Arc, RwLock};
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
use verified::{Verified, VerifiedTokens};

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
    /// The audience: the appid the token was issued to, so a backend serving one mini-program
    /// can refuse another's tokens with any JWT library's audience check.
    pub aud: AppId,
    /// The session the token belongs to (lets introspection see revocation).
    pub sid: SessionId,
    pub appid: AppId,
    pub iat: i64,
    pub exp: i64,
}

/// How the service verifies and rotates its access tokens.
#[derive(Debug, Clone)]
pub struct AccessTokenPolicy {
    pub issuer: String,
    pub ttl: Duration,
    /// The appids a token may name as its audience (the configured apps).
    pub audiences: Vec<String>,
    /// How often instances reload the key set; a new key signs only once this much time has
    /// passed since it was added, so every instance (and the JWKS) knows it by then.
    pub reload_interval: Duration,
}

/// Extra time a retired key stays published after its last token can have expired: clock
/// skew between instances and verifiers, and the verification leeway.
pub const RETIREMENT_MARGIN: Duration = Duration::from_secs(60);
/// How long after it is added a key starts signing: the longest reload interval
/// (`IDENTITY_SIGNING_KEY_RELOAD_SECS` is at most 30), so every instance has loaded and
/// published it by then, whatever its own interval.
pub const ACTIVATION_DELAY: Duration = Duration::from_secs(30);
const LEEWAY_SECS: u64 = 5;

struct SigningKey {
    kid: String,
    created_at: DateTime<Utc>,
    /// The stored schedule (see `StoredSigningKey`).
    activates_at: Option<DateTime<Utc>>,
    retire_after: Option<DateTime<Utc>>,
    /// `identityd keys retire`: neither signs, verifies nor is published.
    retired: bool,
    /// Opened once: `jsonwebtoken` would rebuild the key pair from its PKCS#8 bytes (a scalar
    /// multiplication) for every token it signs.
    pair: Ed25519KeyPair,
    decoding: DecodingKey,
    /// The raw public key, base64url: the JWK's `x`.
    public_x: String,
}

/// Issues and verifies access tokens with the Ed25519 keys kept (sealed) in the database, so
/// every instance signs with the same key. The key set is reloaded periodically (`reload`),
/// which is how `identityd keys rotate` reaches running instances.
pub struct AccessTokens {
    /// Newest first.
    keys: RwLock<Arc<Vec<Arc<SigningKey>>>>,
    /// When the key set was last read successfully (shown by `/readyz`).
    last_reload: RwLock<DateTime<Utc>>,
    sealer: Sealer,
    policy: AccessTokenPolicy,
    /// Tokens whose signature is known good: signed here, or checked once.
    verified: VerifiedTokens,
}

pub const SIGNING_KEY_PURPOSE: &str = "signing-key";

impl AccessTokens {
    /// Loads the signing keys, creating the first one if the database has none.
    pub async fn load_or_create(
        store: &dyn SigningKeyStore,
        master: &MasterKey,
        policy: AccessTokenPolicy,
    ) -> Result<Self, TokenError> {
        let sealer = master.sealer(SIGNING_KEY_PURPOSE);
        if store.signing_keys().await?.is_empty() {
            store
                .insert_first_signing_key(new_signing_key(&sealer)?)
                .await?;
        }
        let tokens = Self {
            keys: RwLock::new(Arc::new(Vec::new())),
            last_reload: RwLock::new(Utc::now()),
            sealer,
            policy,
            verified: VerifiedTokens::default(),
        };
        tokens.reload(store).await?;
        Ok(tokens)
    }

    /// Reads the key set again: keys added by `identityd keys rotate` join it. Keys already
    /// open are kept as they are.
    pub async fn reload(&self, store: &dyn SigningKeyStore) -> Result<(), TokenError> {
        let stored = store.signing_keys().await?;
        if stored.is_empty() {
            return Err(TokenError::Key("no signing key stored".into()));
        }
        let current = self.key_set();
        let keys = stored
            .iter()
            .map(|key| {
                match current.iter().find(|k| {
                    k.kid == key.kid
                        && k.retired == key.retired_at.is_some()
                        && k.retire_after == key.retire_after
                        && k.activates_at == key.activates_at
                }) {
                    Some(open) => Ok(Arc::clone(open)),
                    None => open_signing_key(&self.sealer, key).map(Arc::new),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        *self.last_reload.write().unwrap_or_else(|e| e.into_inner()) = Utc::now();
        Ok(())
    }

    /// When the key set was last read successfully: a reload that keeps failing shows here.
    pub fn last_reload(&self) -> DateTime<Utc> {
        *self.last_reload.read().unwrap_or_else(|e| e.into_inner())
    }

    /// How many keys are loaded (retired ones included).
    pub fn loaded_keys(&self) -> usize {
        self.key_set().len()
    }

    fn key_set(&self) -> Arc<Vec<Arc<SigningKey>>> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn schedule(&self, keys: &[Arc<SigningKey>]) -> KeySchedule {
        let created: Vec<_> = keys.iter().map(|k| k.created_at).collect();
        let retired: Vec<_> = keys.iter().map(|k| k.retired).collect();
        KeySchedule::of(
            &created,
            self.policy.reload_interval,
            self.policy.ttl + RETIREMENT_MARGIN,
        )
        .with_stored(
            keys.iter().map(|k| k.activates_at).collect(),
            keys.iter().map(|k| k.retire_after).collect(),
        )
        .with_retired(retired)
    }

    pub fn ttl(&self) -> Duration {
        self.policy.ttl
    }

    pub fn reload_interval(&self) -> Duration {
        self.policy.reload_interval
    }

    pub fn issue(
        &self,
        user: UserId,
        session: SessionId,
        appid: &AppId,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let keys = self.key_set();
        let key = &keys[self.schedule(&keys).signer(now)];
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: user,
            aud: appid.clone(),
            sid: session,
            appid: appid.clone(),
            iat: now.timestamp(),
            exp: now.timestamp() + self.policy.ttl.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        // A JWS compact serialisation, as `jsonwebtoken::encode` writes it, signed with the
        // opened key pair.
        let signing_input = format!("{}.{}", jws_part(&header)?, jws_part(&claims)?);
        let signature = key.pair.sign(signing_input.as_bytes());
        let token = format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        );
        // Its first request need not check the signature just made.
        self.verified.insert(
            VerifiedTokens::digest(&token),
            Verified {
                claims,
                kid: key.kid.clone(),
            },
        );
        Ok(token)
    }

    /// Checks signature, algorithm (EdDSA only: `none` and HMAC are refused), key id (a key
    /// still published), issuer, audience (a configured app, the same as `appid`) and expiry.
    ///
    /// A token whose signature was made or checked here before is not checked again; the rest
    /// is judged at every call, by [`Self::judge`] on both paths.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let now = Utc::now();
        let digest = VerifiedTokens::digest(token);
        if let Some(known) = self.verified.get(&digest) {
            return self.judge(&known, now);
        }
        let verified = self.check_signature(token, now)?;
        let claims = self.judge(&verified, now)?;
        self.verified.insert(digest, verified);
        Ok(claims)
    }

    /// The claims `token` is signed for, if it is an EdDSA JWS signed by a key published at
    /// `now`; nothing else about them is judged here.
    fn check_signature(&self, token: &str, now: DateTime<Utc>) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self.published_key(&kid, now).ok_or(TokenError::Invalid)?;
        // The claims are all required by their type; `judge` checks their values.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims::<&str>(&[]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        Ok(Verified { claims, kid })
    }

    /// Whether signed claims are accepted at `now`: the key still published, the issuer ours,
    /// the audience a configured app equal to `appid`, not expired (with a leeway of
    /// `LEEWAY_SECS`). A token signed here is judged so too: it may name an app that is not
    /// configured, and time moves on for every token.
    fn judge(&self, verified: &Verified, now: DateTime<Utc>) -> Result<AccessClaims, TokenError> {
        let claims = &verified.claims;
        let accepted = self.published_key(&verified.kid, now).is_some()
            && claims.iss == self.policy.issuer
            && self
                .policy
                .audiences
                .iter()
                .any(|a| a == claims.aud.as_str())
            && claims.aud == claims.appid
            && claims.exp.saturating_add(LEEWAY_SECS as i64) >= now.timestamp();
        accepted.then(|| claims.clone()).ok_or(TokenError::Invalid)
    }

    /// The key `kid` if it verifies at `now` (see [`KeySchedule::published`]).
    fn published_key(&self, kid: &str, now: DateTime<Utc>) -> Option<Arc<SigningKey>> {
        let keys = self.key_set();
        let published = self.schedule(&keys).published(now);
        published
            .into_iter()
            .map(|i| &keys[i])
            .find(|k| k.kid == kid)
            .cloned()
    }

    /// Adds this instance's access-token metrics to a scrape (under the registry's prefix).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.verified.register(registry);
    }

    /// The published public keys as a JWK Set: the signing key, a key about to sign, and
    /// retired keys until their last token has expired.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.key_set();
        let published: Vec<_> = self
            .schedule(&keys)
            .published(Utc::now())
            .into_iter()
            .map(|i| {
                let k = &keys[i];
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "x": k.public_x,
                    "kid": k.kid, "use": "sig", "alg": "EdDSA",
                })
            })
            .collect();
        serde_json::json!({ "keys": published })
    }
}

/// When each signing key signs and until when it is published (keys newest first). The times
/// stored with the keys (`activates_at`, `retire_after`, by the database's clock) win, so every
/// instance comes to the same answer without coordinating; keys made before migration 0013
/// fall back to this instance's settings:
///
/// A key signs from `activates_at` (else `created + activation`; by then every instance has
/// reloaded it and published it in its JWKS) until the next key does; it is then retired, and
/// stays published until `retire_after` (else for `retention`, the token lifetime plus a
/// margin) so its last tokens verify.
///
/// A key retired by `identityd keys retire` keeps its place in the schedule (so no other key's
/// times move, and no key dropped before comes back), but neither signs nor is published; when
/// it was the signer, the next newer key not retired signs at once.
struct KeySchedule {
    activates: Vec<DateTime<Utc>>,
    /// Stored retirement times; where none is stored, the next key's activation + retention.
    retire_after: Vec<Option<DateTime<Utc>>>,
    retired: Vec<bool>,
    retention: Duration,
}

impl KeySchedule {
    fn of(
        created_newest_first: &[DateTime<Utc>],
        activation: Duration,
        retention: Duration,
    ) -> Self {
        Self {
            activates: created_newest_first
                .iter()
                .map(|c| *c + activation)
                .collect(),
            retire_after: vec![None; created_newest_first.len()],
            retired: vec![false; created_newest_first.len()],
            retention,
        }
    }

    /// The times stored with the keys (by the database's clock when each key was added) win
    /// over those computed from this instance's reload interval and token lifetime, so every
    /// instance follows the same schedule.
    fn with_stored(
        mut self,
        activates: Vec<Option<DateTime<Utc>>>,
        retire_after: Vec<Option<DateTime<Utc>>>,
    ) -> Self {
        for (computed, stored) in self.activates.iter_mut().zip(activates) {
            if let Some(at) = stored {
                *computed = at;
            }
        }
        self.retire_after = retire_after;
        self
    }

    fn with_retired(mut self, retired: Vec<bool>) -> Self {
        self.retired = retired;
        self
    }

    fn is_retired(&self, i: usize) -> bool {
        self.retired.get(i).copied().unwrap_or(false)
    }

    /// The newest active key; the oldest key when none is active yet (a fresh deployment's
    /// first key signs at once).
    fn signer(&self, now: DateTime<Utc>) -> usize {
        let scheduled = self
            .activates
            .iter()
            .position(|at| *at <= now)
            .unwrap_or(self.activates.len().saturating_sub(1));
        if !self.is_retired(scheduled) {
            return scheduled;
        }
        // Never an older key (it was retired on purpose when the scheduled one activated):
        // the nearest newer one. The store refuses to retire the newest key, so there is one.
        (0..scheduled)
            .rev()
            .find(|&i| !self.is_retired(i))
            .unwrap_or(scheduled)
    }

    /// Keys that verify at `now`: those newer than the signer (announced), the signer, and
    /// retired keys whose retention has not run out (a key retires when the next one
    /// activates).
    fn published(&self, now: DateTime<Utc>) -> Vec<usize> {
        let signer = self.signer(now);
        (0..self.activates.len())
            .filter(|&i| !self.is_retired(i))
            .filter(|&i| {
                i <= signer || {
                    let retire_after = self.retire_after.get(i).copied().flatten();
                    now < retire_after.unwrap_or(self.activates[i - 1] + self.retention)
                }
            })
            .collect()
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
        activates_at: None,
        retire_after: None,
        retired_at: None,
    })
}

/// `identityd keys rotate`: adds a new signing key. Running instances load it at their next
/// reload and sign with it once it is active; the previous key stays published until its
/// last token has expired.
///
/// The schedule is stored with the keys, by the database's clock: the new key signs from
/// `ACTIVATION_DELAY` after now, and the previous key retires `token_ttl` + `RETIREMENT_MARGIN`
/// after that. `token_ttl` is the TTL configured where the command runs: it must be the
/// longest any instance uses.
pub async fn add_signing_key(
    store: &dyn SigningKeyStore,
    master: &MasterKey,
    token_ttl: Duration,
) -> Result<StoredSigningKey, TokenError> {
    let key = new_signing_key(&master.sealer(SIGNING_KEY_PURPOSE))?;
    Ok(store
        .insert_signing_key(&key, ACTIVATION_DELAY, token_ttl + RETIREMENT_MARGIN)
        .await?)
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
        created_at: stored.created_at,
        activates_at: stored.activates_at,
        retire_after: stored.retire_after,
        retired: stored.retired_at.is_some(),
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

    fn policy() -> AccessTokenPolicy {
        AccessTokenPolicy {
            issuer: "https://id.example".into(),
            ttl: Duration::from_secs(900),
            audiences: vec!["wx0123456789abcdef".into(), "wx0123456789abcde0".into()],
            reload_interval: Duration::from_secs(30),
        }
    }

    /// Access tokens over one freshly made key, with that key's PKCS#8 bytes and stored form.
    fn one_key_tokens() -> (AccessTokens, Vec<u8>, StoredSigningKey) {
        let sealer = MasterKey::generate().sealer(SIGNING_KEY_PURPOSE);
        let stored = new_signing_key(&sealer).unwrap();
        let pkcs8 = sealer
            .open(&stored.sealed_private_key, stored.kid.as_bytes())
            .unwrap();
        let key = Arc::new(open_signing_key(&sealer, &stored).unwrap());
        let tokens = AccessTokens {
            keys: RwLock::new(Arc::new(vec![key])),
            last_reload: RwLock::new(Utc::now()),
            sealer,
            policy: policy(),
            verified: VerifiedTokens::default(),
        };
        (tokens, pkcs8, stored)
    }

    /// A token as another instance (or `jsonwebtoken`) would sign `claims` with a key.
    fn sign_with(pkcs8: &[u8], kid: &str, claims: &impl Serialize) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8);
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// The first app `policy()` configures.
    fn configured_app() -> AppId {
        AppId::parse("wx0123456789abcdef").unwrap()
    }

    fn ids() -> (UserId, SessionId) {
        (
            UserId::from_uuid(uuid::Uuid::now_v7()),
            SessionId::from_uuid(uuid::Uuid::now_v7()),
        )
    }

    /// Ed25519 signatures are deterministic, so a token signed with the opened key pair must
    /// be exactly what `jsonwebtoken::encode` makes of the same header, claims and key.
    #[test]
    fn access_tokens_are_what_jsonwebtoken_would_sign() {
        let (tokens, pkcs8, stored) = one_key_tokens();
        let (user, session) = ids();
        let appid = configured_app();
        let token = tokens.issue(user, session, &appid, Utc::now()).unwrap();

        let claims = tokens.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
        assert_eq!(claims.aud, appid);
        assert_eq!(token, sign_with(&pkcs8, &stored.kid, &claims));
    }

    /// Signed by our key, yet refused: an audience that is not a configured app, one that
    /// differs from the token's `appid`, or none at all.
    #[test]
    fn the_audience_must_be_a_configured_app_and_the_tokens_appid() {
        let (tokens, pkcs8, stored) = one_key_tokens();
        let (user, session) = ids();
        let now = Utc::now().timestamp();
        let sign = |claims: serde_json::Value| sign_with(&pkcs8, &stored.kid, &claims);
        let claims = |aud: Option<&str>| {
            let mut claims = serde_json::json!({
                "iss": "https://id.example", "sub": user, "sid": session,
                "appid": "wx0123456789abcdef", "iat": now, "exp": now + 600,
            });
            if let Some(aud) = aud {
                claims["aud"] = aud.into();
            }
            claims
        };
        assert!(tokens
            .verify(&sign(claims(Some("wx0123456789abcdef"))))
            .is_ok());
        for aud in [Some("wxffffffffffffffff"), Some("wx0123456789abcde0"), None] {
            assert!(tokens.verify(&sign(claims(aud))).is_err(), "aud {aud:?}");
        }
    }

    /// Signed by our key, yet refused: expired beyond the leeway, or another issuer.
    #[test]
    fn a_checked_token_must_be_ours_and_unexpired() {
        let (tokens, pkcs8, stored) = one_key_tokens();
        let (user, session) = ids();
        let now = Utc::now().timestamp();
        let leeway = LEEWAY_SECS as i64;
        let sign = |iss: &str, exp: i64| {
            let claims = serde_json::json!({
                "iss": iss, "sub": user, "sid": session, "aud": "wx0123456789abcdef",
                "appid": "wx0123456789abcdef", "iat": now - 1000, "exp": exp,
            });
            sign_with(&pkcs8, &stored.kid, &claims)
        };
        assert!(tokens
            .verify(&sign("https://id.example", now - leeway + 2))
            .is_ok());
        assert!(tokens
            .verify(&sign("https://id.example", now - leeway - 2))
            .is_err());
        assert!(tokens
            .verify(&sign("https://other.example", now + 600))
            .is_err());
    }

    #[test]
    fn a_token_signed_here_is_known() {
        let (tokens, _, _) = one_key_tokens();
        let (user, session) = ids();
        let appid = configured_app();
        let token = tokens.issue(user, session, &appid, Utc::now()).unwrap();
        assert_eq!(tokens.verify(&token).unwrap().sid, session);
        assert_eq!(tokens.verified.hits(), 1, "its signature was not checked");
    }

    /// Checked once by its signature (another instance signed it), a token is known from then
    /// on; a token differing from it in any byte is not, and fails its check.
    #[test]
    fn a_token_checked_once_is_known_and_no_other() {
        let (tokens, pkcs8, stored) = one_key_tokens();
        let (user, session) = ids();
        let appid = configured_app();
        let now = Utc::now().timestamp();
        let claims = AccessClaims {
            iss: "https://id.example".into(),
            sub: user,
            aud: appid.clone(),
            sid: session,
            appid,
            iat: now,
            exp: now + 600,
        };
        let token = sign_with(&pkcs8, &stored.kid, &claims);
        assert_eq!(tokens.verify(&token).unwrap(), claims);
        assert_eq!(tokens.verified.hits(), 0);
        assert_eq!(tokens.verify(&token).unwrap(), claims);
        assert_eq!(tokens.verified.hits(), 1);

        // A byte of the payload (just past the header's dot) changed, and a byte added.
        let mut forged = token.clone().into_bytes();
        let i = token.find('.').unwrap() + 5;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        assert!(tokens.verify(&String::from_utf8(forged).unwrap()).is_err());
        assert!(tokens.verify(&format!("{token}A")).is_err());
        assert_eq!(tokens.verified.hits(), 1);
    }

    /// What a signature cannot settle once for all is judged at every use of a known token:
    /// expiry (with its leeway), the audience a configured app, the key still published.
    #[test]
    fn a_known_token_is_refused_once_expired_for_an_unknown_app_or_its_key_retired() {
        let (tokens, _, stored) = one_key_tokens();
        let (user, session) = ids();
        let appid = configured_app();
        let ttl = tokens.ttl().as_secs() as i64;
        let leeway = LEEWAY_SECS as i64;
        let issued_at = |ago: i64| Utc::now() - chrono::Duration::seconds(ago);
        let expired = tokens
            .issue(user, session, &appid, issued_at(ttl + leeway + 2))
            .unwrap();
        let in_leeway = tokens
            .issue(user, session, &appid, issued_at(ttl + leeway - 2))
            .unwrap();
        assert!(tokens.verify(&expired).is_err());
        assert!(tokens.verify(&in_leeway).is_ok());
        let unknown_app = AppId::parse("wxffffffffffffffff").unwrap();
        let for_unknown_app = tokens
            .issue(user, session, &unknown_app, Utc::now())
            .unwrap();
        assert!(tokens.verify(&for_unknown_app).is_err());

        let token = tokens.issue(user, session, &appid, Utc::now()).unwrap();
        assert!(tokens.verify(&token).is_ok());
        let retired = StoredSigningKey {
            retired_at: Some(Utc::now()),
            ..stored
        };
        let retired = open_signing_key(&tokens.sealer, &retired).unwrap();
        *tokens.keys.write().unwrap() = Arc::new(vec![Arc::new(retired)]);
        assert!(tokens.verify(&token).is_err(), "its key retired");
        assert_eq!(
            tokens.verified.hits(),
            5,
            "all were known: judged, not checked"
        );
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// Key 1 made at 0; key 2 added at 1000. With a 30 s activation and a 960 s retention,
    /// key 2 signs from 1030; key 1 verifies until 1030 + 960 and is dropped after.
    #[test]
    fn a_new_key_signs_after_activation_and_the_old_one_stays_until_its_tokens_expire() {
        let schedule = KeySchedule::of(
            &[at(1000), at(0)],
            Duration::from_secs(30),
            Duration::from_secs(960),
        );
        assert_eq!(
            schedule.signer(at(1029)),
            1,
            "not active before every instance knows it"
        );
        assert_eq!(
            schedule.published(at(1029)),
            [0, 1],
            "announced before it signs"
        );
        assert_eq!(schedule.signer(at(1030)), 0);
        assert_eq!(schedule.published(at(1030 + 959)), [0, 1]);
        assert_eq!(schedule.published(at(1030 + 960)), [0]);
    }

    #[test]
    fn a_first_key_signs_at_once() {
        let schedule = KeySchedule::of(&[at(0)], Duration::from_secs(30), Duration::from_secs(960));
        assert_eq!(schedule.signer(at(0)), 0);
        assert_eq!(schedule.published(at(0)), [0]);
        // Two rotations in quick succession: the oldest active key keeps signing.
        let schedule = KeySchedule::of(
            &[at(20), at(10), at(0)],
            Duration::from_secs(30),
            Duration::from_secs(960),
        );
        assert_eq!(schedule.signer(at(35)), 2);
        assert_eq!(schedule.signer(at(40)), 1);
        assert_eq!(schedule.published(at(40)), [0, 1, 2]);
        assert_eq!(schedule.published(at(50 + 960)), [0]);
    }

    /// Keys made at 2000 (index 0, signs from 2030), 1000 (1, signs from 1030) and 0 (2,
    /// retired at 1030, published until 1990). Retiring the oldest drops it at once; retiring
    /// the signer hands over to the newer key (never back to an older one), which signs at
    /// once, before its activation.
    #[test]
    fn a_retired_key_neither_signs_nor_is_published() {
        let schedule = || {
            KeySchedule::of(
                &[at(2000), at(1000), at(0)],
                Duration::from_secs(30),
                Duration::from_secs(960),
            )
        };
        let old_retired = schedule().with_retired(vec![false, false, true]);
        assert_eq!(old_retired.signer(at(1100)), 1);
        assert_eq!(old_retired.published(at(1100)), [0, 1]);
        let signer_retired = schedule().with_retired(vec![false, true, false]);
        assert_eq!(
            signer_retired.signer(at(1100)),
            0,
            "the newer key, not key 0"
        );
        assert_eq!(signer_retired.published(at(1100)), [0, 2]);
        assert_eq!(
            signer_retired.published(at(2030 + 960)),
            [0],
            "the oldest key is not brought back by its successor's retirement"
        );
    }

    /// Two instances with different reload intervals and token lifetimes follow the stored
    /// times, not their own: they agree on the signer and on the published keys.
    #[test]
    fn instances_follow_the_stored_schedule_whatever_their_own_settings() {
        let of = |reload: u64, ttl: u64| {
            KeySchedule::of(
                &[at(1000), at(0)],
                Duration::from_secs(reload),
                Duration::from_secs(ttl),
            )
            .with_stored(vec![Some(at(1030)), None], vec![None, Some(at(1030 + 960))])
        };
        let (fast, slow) = (of(1, 300), of(30, 3600));
        for t in [1001, 1029, 1030, 1031, 1989, 1990, 5000] {
            assert_eq!(fast.signer(at(t)), slow.signer(at(t)), "signer at {t}");
            assert_eq!(fast.published(at(t)), slow.published(at(t)), "JWKS at {t}");
        }
        assert_eq!(fast.signer(at(1029)), 1);
        assert_eq!(fast.signer(at(1030)), 0);
        assert_eq!(fast.published(at(1989)), [0, 1]);
        assert_eq!(fast.published(at(1990)), [0]);
    }

    #[test]
    fn thumbprint_is_stable_and_url_safe() {
        let a = jwk_thumbprint(&[7u8; 32]);
        assert_eq!(a, jwk_thumbprint(&[7u8; 32]));
        assert_ne!(a, jwk_thumbprint(&[8u8; 32]));
        assert_eq!(a.len(), 43);
    }
}
