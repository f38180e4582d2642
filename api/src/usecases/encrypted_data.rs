//! Opening WeChat's encrypted user data (AES-128-CBC under the user's `session_key`, no MAC)
//! for a signed-in user: the one way in for every such payload, so its rules hold for all.
//!
//! - Every failure that depends on the key gives one answer (`UserDataError::Undecryptable`,
//!   see `infra::wechat::user_data`), including content the caller refuses after decrypting.
//! - Attempts are capped per user and per session key, counted in the database so the cap
//!   holds across instances; successes are given back. A session key that reaches its cap is
//!   retired (deleted): the user needs a fresh `wx.login()`, and if WeChat hands out the same key
//!   again its count is still there. Past a cap the answer is 429 `rate_limited`.
//!
//! An honest client needs a handful of attempts (a stale key after a new login); a padding
//! oracle needs thousands, and gets no difference to measure anyway.

use domain::{AppId, OpenId, UserId};
use infra::wechat::user_data::{self, EncryptedData, UserDataError};
use infra::wechat::SessionKey;

use super::error::UseCaseError;
use super::services::Services;

/// Failed attempts one session key may have per window; the last one retires it.
pub const MAX_FAILURES_PER_SESSION_KEY: u32 = 5;
/// Failed attempts one user may have per window, over all their apps and keys.
pub const MAX_FAILURES_PER_USER: u32 = 20;
/// The counting window (fixed, UTC days).
const WINDOW_SECS: i64 = 24 * 60 * 60;

/// One counted attempt at a user's encrypted data: begun before the key is used, settled with
/// the outcome.
pub struct DecryptAttempt<'a> {
    state: &'a Services,
    window: i64,
    counted: Vec<String>,
}

impl<'a> DecryptAttempt<'a> {
    /// Counts an attempt against the user's budget; 429 when it is spent.
    pub async fn begin(state: &'a Services, user_id: UserId) -> Result<Self, UseCaseError> {
        let now = state.clock.now().timestamp();
        let mut attempt = Self {
            state,
            window: now - now.rem_euclid(WINDOW_SECS),
            counted: Vec::new(),
        };
        attempt
            .count(format!("decrypt:user:{user_id}"), MAX_FAILURES_PER_USER)
            .await?;
        Ok(attempt)
    }

    /// Verifies the signature, counts the attempt against the key's budget, decrypts and hands
    /// the data to `accept` (which may still refuse it). Every refusal after the signature is
    /// the same `Undecryptable`; only a refusal counts as a failure.
    pub async fn open<T>(
        mut self,
        session_key: &SessionKey,
        appid: &AppId,
        openid: &OpenId,
        signed: (&str, &str),
        data: &EncryptedData,
        accept: impl AsyncFnOnce(serde_json::Value) -> Result<Option<T>, UseCaseError>,
    ) -> Result<T, UseCaseError> {
        let (raw_data, signature) = signed;
        user_data::verify_raw_data(raw_data, signature, session_key)
            .map_err(UseCaseError::UserData)?;
        let key = format!("decrypt:key:{}", user_data::key_fingerprint(session_key));
        let failures = self.count(key, MAX_FAILURES_PER_SESSION_KEY).await?;
        let accepted = match data.open(session_key, appid.as_str()) {
            Ok(value) => accept(value).await?,
            Err(_) => None,
        };
        match accepted {
            Some(accepted) => {
                self.forgive().await?;
                Ok(accepted)
            }
            None => {
                if failures >= MAX_FAILURES_PER_SESSION_KEY {
                    tracing::warn!(%appid, "session key retired after repeated decryption failures");
                    self.state
                        .store
                        .delete_session_key(
                            appid.as_str(),
                            &self.state.lookup_index.account(appid, openid),
                        )
                        .await?;
                }
                Err(UseCaseError::UserData(UserDataError::Undecryptable))
            }
        }
    }

    /// Counts one attempt of `subject`; 429 when it goes over `cap`.
    async fn count(&mut self, subject: String, cap: u32) -> Result<u32, UseCaseError> {
        let attempts = self
            .state
            .store
            .count_attempt(&subject, self.window)
            .await?;
        if attempts > cap {
            let now = self.state.clock.now().timestamp();
            return Err(UseCaseError::RateLimited {
                retry_after_secs: u64::try_from(self.window + WINDOW_SECS - now)
                    .unwrap_or(1)
                    .max(1),
            });
        }
        self.counted.push(subject);
        Ok(attempts)
    }

    /// A success is not a failure: gives the attempts back.
    async fn forgive(self) -> Result<(), UseCaseError> {
        for subject in &self.counted {
            self.state
                .store
                .uncount_attempt(subject, self.window)
                .await?;
        }
        Ok(())
    }
}
