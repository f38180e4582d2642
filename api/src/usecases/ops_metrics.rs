//! This instance's operations counters for `/metrics`: HTTP requests, logins, token
//! refreshes and console sign-ins (WeChat calls are counted by the WeChat client itself).
//!
//! Every label value comes from a closed set: routes as declared (never the raw path), status
//! codes, error codes, configured appids (anything else is `unknown`). A label fed from
//! request bytes would let any caller grow the scrape, and this process's memory, without
//! bound.

use std::collections::BTreeSet;
use std::time::Duration;

use domain::AppId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    /// The matched route (`/v1/admin/users/{user_id}`), or `unmatched`.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    appid: String,
    /// `success`, or the error code answered (`invalid_code`, `user_blocked`, …).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 5 ms to about 20 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// How a console sign-in (an API key exchanged for a console session) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleSignIn {
    /// A session was opened.
    SignedIn,
    /// The key was unknown, revoked or malformed.
    InvalidKey,
    /// The key is genuine but has no scope the console can use.
    Forbidden,
    /// Refused by a rate limit.
    RateLimited,
    /// The form was refused before the key was looked at (a cross-site post, or malformed).
    BadRequest,
}

impl ConsoleSignIn {
    fn label(self) -> &'static str {
        match self {
            Self::SignedIn => "signed_in",
            Self::InvalidKey => "invalid_key",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::BadRequest => "bad_request",
        }
    }
}

/// The counters. Cheap to share: the families are reference-counted inside.
pub struct OpsMetrics {
    /// The appids logins are labelled with; others count as `unknown`.
    apps: BTreeSet<String>,
    http: HistogramFamily<HttpLabels>,
    logins: Family<LoginLabels, Counter>,
    refreshes: Family<OutcomeLabel, Counter>,
    reuses: Counter,
    console_sign_ins: Family<OutcomeLabel, Counter>,
}

impl OpsMetrics {
    pub fn new<'a>(apps: impl IntoIterator<Item = &'a AppId>) -> Self {
        Self {
            apps: apps.into_iter().map(|a| a.as_str().to_owned()).collect(),
            http: Family::new_with_constructor(latency_histogram),
            logins: Family::default(),
            refreshes: Family::default(),
            reuses: Counter::default(),
            console_sign_ins: Family::default(),
        }
    }

    /// One answered HTTP request: `route` is the matched route (`None`: no route matched).
    pub fn http_request(&self, method: &str, route: Option<&str>, status: u16, took: Duration) {
        let labels = HttpLabels {
            method: method_label(method),
            route: route.unwrap_or("unmatched").to_owned(),
            status,
        };
        self.http.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// One login attempt in `appid` (as the caller sent it): `Err(code)` is the error code
    /// answered.
    pub fn login(&self, appid: &str, outcome: Result<(), &'static str>) {
        let appid = if self.apps.contains(appid) {
            appid.to_owned()
        } else {
            "unknown".to_owned()
        };
        let outcome = outcome.err().unwrap_or("success");
        self.logins
            .get_or_create(&LoginLabels { appid, outcome })
            .inc();
    }

    /// One `POST /v1/token/refresh`: `refreshed`, `reuse_detected`, `refused` or `error`.
    pub fn token_refresh(&self, outcome: &'static str) {
        self.refreshes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        if outcome == REUSE_DETECTED {
            self.reuses.inc();
        }
    }

    /// One console sign-in attempt (`identity_console_sign_ins_total{outcome}`).
    pub fn console_sign_in(&self, outcome: ConsoleSignIn) {
        self.console_sign_ins
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Adds the counters to a scrape (under the registry's `identity` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests answered, by method, matched route and status, and their latency \
             to the response head",
            self.http.clone(),
        );
        registry.register(
            "logins",
            "Login attempts (code and cloud login) by app and outcome (success or the error code)",
            self.logins.clone(),
        );
        registry.register(
            "token_refreshes",
            "Refresh-token rotations by outcome (refreshed, reuse_detected, refused, error)",
            self.refreshes.clone(),
        );
        registry.register(
            "refresh_token_reuses",
            "Rotated refresh tokens presented again (each revoked its session)",
            self.reuses.clone(),
        );
        registry.register(
            "console_sign_ins",
            "Console sign-ins by outcome",
            self.console_sign_ins.clone(),
        );
    }
}

/// The outcome of a refresh that presented an already-rotated token.
pub const REUSE_DETECTED: &str = "reuse_detected";

/// HTTP methods, with anything unusual folded (methods are caller-chosen bytes).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn scrape(metrics: &OpsMetrics) -> String {
        let mut registry = Registry::with_prefix("identity");
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        text
    }

    #[test]
    fn labels_come_from_closed_sets() {
        let app = AppId::parse("wx0000000000000001").expect("appid");
        let metrics = OpsMetrics::new([&app]);
        metrics.login("wx0000000000000001", Ok(()));
        metrics.login("wx00000000000000ff", Err("unknown_app"));
        metrics.login("<script>", Err("invalid_request"));
        metrics.http_request("BREW", None, 404, Duration::from_millis(3));
        metrics.token_refresh(REUSE_DETECTED);
        metrics.console_sign_in(ConsoleSignIn::SignedIn);
        let text = scrape(&metrics);
        assert!(text
            .contains(r#"identity_logins_total{appid="wx0000000000000001",outcome="success"} 1"#));
        assert!(text.contains(r#"identity_logins_total{appid="unknown",outcome="unknown_app"} 1"#));
        assert!(
            !text.contains("script") && !text.contains("wx00000000000000ff"),
            "{text}"
        );
        assert!(text.contains(
            r#"identity_http_request_duration_seconds_count{method="other",route="unmatched",status="404"} 1"#
        ));
        assert!(text.contains(r#"identity_token_refreshes_total{outcome="reuse_detected"} 1"#));
        assert!(text.contains("identity_refresh_token_reuses_total 1"));
        assert!(text.contains(r#"identity_console_sign_ins_total{outcome="signed_in"} 1"#));
    }
}
