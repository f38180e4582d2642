//! What the use cases work with: the store, the read models, WeChat, tokens, keys and the
//! clock. The HTTP layer's state holds these plus its own (rate limits, proxies, streams).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::AppId;
use infra::crypto::{PhoneIndex, Sealer};
use infra::personal_data::{LookupIndex, PersonalData};
use infra::store::Store;
use infra::tokens::{AccessTokens, RefreshTokens};
use infra::wechat::{AppCredentials, WeChatClient};
use projections::ReadModels;

use super::content_check::ContentChecks;
use super::rejection_counts::Rejections;

/// Time, injected so tests can control it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

pub struct Services {
    pub store: Arc<dyn Store>,
    pub wechat: WeChatClient,
    pub apps: BTreeMap<AppId, AppCredentials>,
    pub access_tokens: AccessTokens,
    pub refresh_tokens: RefreshTokens,
    /// Seals WeChat `session_key`s at rest.
    pub session_key_sealer: Sealer,
    pub clock: Arc<dyn Clock>,
    /// `IDENTITY_SESSION_MAX_AGE_SECS`, `IDENTITY_SESSION_IDLE_SECS`.
    pub session_lifetime: domain::SessionLifetime,
    pub read_models: ReadModels,
    pub phone_index: PhoneIndex,
    /// Keyed hashes of openids and unionids: the claims table and admin look-ups.
    pub lookup_index: LookupIndex,
    /// Seals personal data under per-user data keys (crypto-shredding).
    pub personal_data: PersonalData,
    /// Refused logins: retention and this instance's counters.
    pub rejections: Rejections,
    /// WeChat content checks: which apps have them, and their message-push tokens.
    pub content: ContentChecks,
    /// `IDENTITY_PUBLIC_URL`: where clients and WeChat reach the service (avatar URLs).
    pub public_url: crate::config::PublicUrl,
    /// Avatar images being decoded at once on this instance (`avatar::MAX_CONCURRENT_DECODES`).
    pub avatar_decodes: Arc<tokio::sync::Semaphore>,
    /// `IDENTITY_STATS_TIMEZONE`: where a stats day starts (also `read_models.stats_timezone()`).
    pub stats_timezone: chrono_tz::Tz,
    /// This instance's operations counters (`/metrics`).
    pub metrics: super::ops_metrics::OpsMetrics,
}

impl Services {
    /// The day `at` falls on in `IDENTITY_STATS_TIMEZONE`: the day of the daily stats and the
    /// refused-login tallies.
    pub fn stats_day(&self, at: DateTime<Utc>) -> chrono::NaiveDate {
        at.with_timezone(&self.stats_timezone).date_naive()
    }
}
