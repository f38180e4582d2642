//! Failed authentications per client (a wrong API key, a bad cloud-login signature).
//!
//! Every attempt is charged a token *before* its credential is judged, and a success gets its
//! token back: so however many attempts a client has in flight at once, at most its budget of
//! them can fail with 401 in a minute; the failures beyond it are answered 429, and the client
//! stays barred until its whole budget has refilled.
//!
//! The credential is always judged, barred or not, and a right one always passes. Callers
//! behind one shared address (WeChat cloud functions leave from shared Tencent addresses)
//! must not be locked out by a neighbour sending bad signatures; and confirming a right guess
//! costs nothing here, since every secret a caller could guess at is at least 32 random
//! characters (`config::MIN_SECRET_CHARS`, 2^128 and more guesses). The limit bounds the noise
//! and the work a guesser causes, and answers it 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::clients::{place, ClientKey};
use crate::http::ApiError;

const MINUTE: Duration = Duration::from_secs(60);

pub struct AuthFailureLimit(Option<Failures>);

struct Failures {
    per_minute: u32,
    capacity: usize,
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Over budget: failures are answered 429 until then, when the budget is whole again.
    barred_until: Option<Instant>,
}

/// One authentication attempt, charged before its credential is judged.
#[must_use = "report the attempt as succeeded or failed"]
pub struct AuthAttempt {
    key: Option<ClientKey>,
    charged: bool,
}

impl AuthFailureLimit {
    /// `per_minute` failures per client, with a burst of the same size; 0 disables the limit.
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, super::MAX_TRACKED_CLIENTS)
    }

    pub fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        Self((per_minute > 0).then(|| Failures {
            per_minute,
            capacity,
            buckets: Mutex::default(),
        }))
    }

    /// Charges an attempt by `ip` before its credential is judged.
    pub fn begin(&self, ip: Option<IpAddr>) -> AuthAttempt {
        self.begin_at(ip, Instant::now())
    }

    /// The credential was right (or the attempt ended for a reason not the caller's): the
    /// token comes back.
    pub fn succeeded(&self, attempt: AuthAttempt) {
        self.succeeded_at(attempt, Instant::now());
    }

    /// The credential was wrong: `Ok` while within the budget (answer 401), `Err(wait)` beyond
    /// it (answer 429; the client is barred until its budget has refilled).
    pub fn failed(&self, attempt: AuthAttempt) -> Result<(), Duration> {
        self.failed_at(attempt, Instant::now())
    }

    /// Judges a credential checked without waiting on anything: charges the attempt, then
    /// `Ok` when `valid` says so, else 401 with `why` (429 once the client is over budget).
    pub fn judge(
        &self,
        ip: Option<IpAddr>,
        why: &'static str,
        valid: impl FnOnce() -> bool,
    ) -> Result<(), ApiError> {
        let attempt = self.begin(ip);
        if valid() {
            self.succeeded(attempt);
            return Ok(());
        }
        self.failed(attempt).map_err(ApiError::rate_limited)?;
        Err(ApiError::Unauthorized(why))
    }

    fn begin_at(&self, ip: Option<IpAddr>, now: Instant) -> AuthAttempt {
        let (Some(limit), Some(ip)) = (&self.0, ip) else {
            return AuthAttempt {
                key: None,
                charged: false,
            };
        };
        let mut buckets = limit.lock();
        let key = place(
            ip,
            |k| buckets.contains_key(k),
            buckets.len(),
            limit.capacity,
        );
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(limit.per_minute),
            updated: now,
            barred_until: None,
        });
        limit.refill(bucket, now);
        let barred = bucket.barred_until.is_some_and(|until| until > now);
        let charged = !barred && bucket.tokens >= 1.0;
        if charged {
            bucket.tokens -= 1.0;
        }
        AuthAttempt {
            key: Some(key),
            charged,
        }
    }

    fn succeeded_at(&self, attempt: AuthAttempt, now: Instant) {
        let (Some(limit), Some(key), true) = (&self.0, attempt.key, attempt.charged) else {
            return;
        };
        if let Some(bucket) = limit.lock().get_mut(&key) {
            limit.refill(bucket, now);
            bucket.tokens = (bucket.tokens + 1.0).min(f64::from(limit.per_minute));
        }
    }

    fn failed_at(&self, attempt: AuthAttempt, now: Instant) -> Result<(), Duration> {
        let (Some(limit), Some(key)) = (&self.0, attempt.key) else {
            return Ok(());
        };
        if attempt.charged {
            return Ok(());
        }
        let mut buckets = limit.lock();
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: 0.0,
            updated: now,
            barred_until: None,
        });
        limit.refill(bucket, now);
        // From an empty bucket, the whole budget is back a minute later.
        let until = now + MINUTE.mul_f64(1.0 - bucket.tokens / f64::from(limit.per_minute));
        let until = bucket.barred_until.map_or(until, |old| old.max(until));
        bucket.barred_until = Some(until);
        Err(until - now)
    }

    /// Forgets clients whose budget is whole again and who are not barred.
    pub fn forget_idle(&self) {
        let Some(limit) = &self.0 else { return };
        let now = Instant::now();
        let mut buckets = limit.lock();
        buckets.retain(|_, bucket| {
            limit.refill(bucket, now);
            bucket.barred_until.is_some_and(|until| until > now)
                || bucket.tokens < f64::from(limit.per_minute)
        });
        buckets.shrink_to_fit();
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.0.as_ref().map_or(0, |limit| limit.lock().len())
    }
}

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let per_minute = f64::from(self.per_minute);
        let elapsed = now.saturating_duration_since(bucket.updated);
        bucket.tokens = (bucket.tokens + per_minute * elapsed.as_secs_f64() / MINUTE.as_secs_f64())
            .min(per_minute);
        bucket.updated = now.max(bucket.updated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUESSER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9)));

    #[test]
    fn attempts_in_flight_at_once_are_charged_before_they_are_judged() {
        let limit = AuthFailureLimit::per_minute(3);
        let now = Instant::now();
        // 300 wrong keys sent at once: all begin before any is judged.
        let attempts: Vec<_> = (0..300).map(|_| limit.begin_at(GUESSER, now)).collect();
        let answered_401 = attempts
            .into_iter()
            .map(|attempt| limit.failed_at(attempt, now))
            .filter(Result::is_ok)
            .count();
        assert_eq!(answered_401, 3);
    }

    /// One wrong key from `client` at `at`, begun and judged: `Err` is the wait when barred.
    fn fail(limit: &AuthFailureLimit, client: Option<IpAddr>, at: Instant) -> Result<(), Duration> {
        limit.failed_at(limit.begin_at(client, at), at)
    }

    #[test]
    fn a_barred_client_stays_barred_until_its_whole_budget_is_back() {
        let limit = AuthFailureLimit::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(fail(&limit, GUESSER, t0).is_ok());
        }
        assert_eq!(fail(&limit, GUESSER, t0), Err(MINUTE));
        // A third of a minute later one token has refilled, but the bar holds.
        assert!(fail(&limit, GUESSER, t0 + Duration::from_secs(21)).is_err());
        // Once the budget is whole, the client has its full budget of failures again.
        let t2 = t0 + MINUTE + Duration::from_secs(1);
        for _ in 0..3 {
            assert!(fail(&limit, GUESSER, t2).is_ok());
        }
        assert!(AuthFailureLimit::per_minute(0)
            .failed(AuthFailureLimit::per_minute(0).begin(GUESSER))
            .is_ok());
    }

    #[test]
    fn successes_cost_nothing_and_other_clients_are_not_affected() {
        let limit = AuthFailureLimit::per_minute(2);
        let now = Instant::now();
        for _ in 0..100 {
            let attempt = limit.begin_at(GUESSER, now);
            limit.succeeded_at(attempt, now);
        }
        for _ in 0..2 {
            assert!(fail(&limit, GUESSER, now).is_ok());
        }
        let other = Some(IpAddr::from([203, 0, 113, 10]));
        assert!(fail(&limit, other, now).is_ok());
    }
}
