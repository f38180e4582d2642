//! This instance's refused-login settings and counters (`/metrics`); the tallies themselves
//! are written by `rejections`.

use domain::AppId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    appid: String,
    reason: String,
}

/// The refused-login settings and this instance's counters.
pub struct Rejections {
    /// Days a tally (with its client IP) is kept (`IDENTITY_REJECTION_RETENTION_DAYS`).
    pub retention_days: u32,
    counters: Family<RejectionLabels, Counter>,
}

impl Rejections {
    pub fn new(retention_days: u32) -> Self {
        Self {
            retention_days: retention_days.max(1),
            counters: Family::default(),
        }
    }

    /// Counts one refused login of `appid`'s app for `reason` (as `reason_name` names it).
    pub fn count(&self, appid: &AppId, reason: &str) {
        self.counters
            .get_or_create(&RejectionLabels {
                appid: appid.to_string(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Adds `identity_login_rejections_total{appid, reason}` to a scrape.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "login_rejections",
            "Logins refused since this instance started, by app and reason",
            self.counters.clone(),
        );
    }
}
