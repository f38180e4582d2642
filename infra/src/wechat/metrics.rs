//! WeChat calls on `/metrics`: `identity_wechat_call_duration_seconds{api, errcode}`, one
//! observation per attempt (a retried call counts each try), timed from send to answer.
//!
//! `errcode` is WeChat's for the codes we know and act on, `other` for the rest, and ours for
//! answers without one: `unreachable` (no connection, timeout, HTTP error), `bad_answer` (an
//! answer we could not read). An errcode is chosen by whoever answers the call, so it is
//! never a label as is: a hostile or broken endpoint could otherwise grow the scrape.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::client::{Failure, BUSY_REASON};
use super::error::WeChatError;

/// The errcodes labelled as themselves (`shared/WECHAT.md`).
const KNOWN_ERRCODES: &[(i64, &str)] = &[
    (-1, "-1"),
    (40001, "40001"),
    (40013, "40013"),
    (40014, "40014"),
    (40029, "40029"),
    (40125, "40125"),
    (40163, "40163"),
    (40226, "40226"),
    (42001, "42001"),
    (45011, "45011"),
    (61010, "61010"),
    (87009, "87009"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    api: &'static str,
    errcode: &'static str,
}

/// WeChat's latency: 10 ms to about 20 s (the client's timeout is 5 s).
fn wechat_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

/// The WeChat client's calls. Shared by the client's clones.
#[derive(Debug)]
pub struct WeChatCalls {
    calls: Family<CallLabels, Histogram, fn() -> Histogram>,
}

impl Default for WeChatCalls {
    fn default() -> Self {
        Self {
            calls: Family::new_with_constructor(wechat_histogram),
        }
    }
}

impl WeChatCalls {
    /// One attempt of `api` and how it ended.
    pub(super) fn observe<T>(
        &self,
        api: &'static str,
        outcome: &Result<T, Failure>,
        took: Duration,
    ) {
        let errcode = match outcome {
            Ok(_) => "0",
            Err(failure) => failure_label(failure),
        };
        self.calls
            .get_or_create(&CallLabels { api, errcode })
            .observe(took.as_secs_f64());
    }

    /// Adds the calls to a scrape (under the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "wechat_call_duration_seconds",
            "WeChat API call attempts by API and errcode (0: success; other: an errcode we do \
             not act on; unreachable, bad_answer: no usable answer), and their latency",
            self.calls.clone(),
        );
    }
}

fn failure_label(failure: &Failure) -> &'static str {
    match failure {
        Failure::Retry(why) if why == BUSY_REASON => "-1",
        Failure::Retry(_) => "unreachable",
        Failure::TokenRejected(errcode) => errcode_label(*errcode),
        Failure::Final(err) => match err {
            WeChatError::InvalidCode { errcode }
            | WeChatError::Misconfigured { errcode }
            | WeChatError::AccessTokenRejected { errcode }
            | WeChatError::Rejected { errcode, .. } => errcode_label(*errcode),
            WeChatError::HighRisk => "40226",
            WeChatError::RateLimited => "45011",
            WeChatError::WatermarkMismatch => "bad_answer",
            WeChatError::Unavailable(why) if why == MALFORMED => "bad_answer",
            WeChatError::Unavailable(_) | WeChatError::InvalidConfig(_) => "unreachable",
        },
    }
}

/// The reason of an answer that could not be read.
pub(super) const MALFORMED: &str = "malformed response";

fn errcode_label(errcode: i64) -> &'static str {
    KNOWN_ERRCODES
        .iter()
        .find(|(code, _)| *code == errcode)
        .map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_are_bucketed() {
        assert_eq!(errcode_label(40029), "40029");
        assert_eq!(errcode_label(-1), "-1");
        assert_eq!(errcode_label(12345), "other");
        assert_eq!(errcode_label(i64::MIN), "other");
        let busy = Failure::Retry(BUSY_REASON.into());
        assert_eq!(failure_label(&busy), "-1");
        assert_eq!(
            failure_label(&Failure::Retry("could not connect".into())),
            "unreachable"
        );
        let odd = Failure::Final(WeChatError::Rejected {
            errcode: 99_999_999,
            errmsg: "x".into(),
        });
        assert_eq!(failure_label(&odd), "other");
        let malformed = Failure::Final(WeChatError::Unavailable(MALFORMED.into()));
        assert_eq!(failure_label(&malformed), "bad_answer");
    }
}
