//! `media_check_async`'s second half, as WeChat does it: fetch the image, decide, wait, then
//! push the `wxa_media_check` event to the app's message-push URL, signed with its token, and
//! retry when the app does not answer `success`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use domain::AppId;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokio::sync::OwnedSemaphorePermit;

use super::content::{Suggest, Verdict, LABEL_NORMAL};
use super::{people, SimError, Simulator};

/// What the simulator reads of a `media_url`: beyond it the check fails, as WeChat refuses
/// images over its size limit.
const MAX_MEDIA_BYTES: usize = 5 * 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// WeChat waits 5 seconds for an answer, then retries, 3 times.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
const PUSH_ATTEMPTS: u32 = 4;
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// Enough of the app's answer to tell `success`.
const MAX_ANSWER_BYTES: usize = 1024;
pub(super) const DEFAULT_DELAY: Duration = Duration::from_millis(500);
pub(super) const MAX_DELAY: Duration = Duration::from_secs(600);
const MAX_URL_LEN: usize = 2048;
/// Recent media checks kept for `GET /sim/push` and tests.
const MAX_REPORTS: usize = 100;

/// The errcodes of a check that could not look at the image: too big (WeChat's "invalid image
/// size"), or not fetched at all (unreachable, not 2xx, too slow: "system error").
const ERR_TOO_BIG: i64 = 40009;
const ERR_FETCH: i64 = -1;

/// An app's message-push settings, as set in WeChat's console.
#[derive(Clone)]
pub(super) struct PushTarget {
    pub url: reqwest::Url,
    pub token: String,
    pub delay: Duration,
}

/// What became of a media check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PushOutcome {
    /// The app answered `success` (or nothing) with a 2xx at this attempt.
    Delivered { attempts: u32 },
    /// Every attempt failed.
    Failed { attempts: u32 },
    /// The app has no push URL: the verdict was dropped.
    NoPushUrl,
}

/// One finished media check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaCheckReport {
    pub trace_id: String,
    pub appid: AppId,
    /// The event's errcode: 0 when the image was fetched and judged.
    pub errcode: i64,
    pub suggest: Suggest,
    #[serde(flatten)]
    pub outcome: PushOutcome,
}

/// Push targets per app and the last few reports.
#[derive(Default)]
pub(super) struct Pushes {
    targets: HashMap<AppId, PushTarget>,
    reports: VecDeque<MediaCheckReport>,
}

impl Pushes {
    pub fn set(&mut self, appid: AppId, target: PushTarget) {
        self.targets.insert(appid, target);
    }

    pub fn target(&self, appid: &AppId) -> Option<PushTarget> {
        self.targets.get(appid).cloned()
    }

    /// (appid, url, delay) of each target; tokens stay in.
    pub fn summary(&self) -> Vec<Value> {
        self.targets
            .iter()
            .map(|(appid, target)| {
                json!({
                    "appid": appid.as_str(),
                    "url": target.url.as_str(),
                    "delay_ms": u64::try_from(target.delay.as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect()
    }

    pub fn report(&mut self, report: MediaCheckReport) {
        if self.reports.len() >= MAX_REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back(report);
    }

    pub fn reports(&self) -> Vec<MediaCheckReport> {
        self.reports.iter().cloned().collect()
    }
}

impl PushTarget {
    /// A target as WeChat's console accepts it: an http(s) URL, a token of 3 to 32 letters or
    /// digits.
    pub fn new(url: &str, token: &str, delay: Duration) -> Result<Self, SimError> {
        let invalid = |why: &str| SimError::InvalidSetting(why.to_owned());
        let url = parse_url(url).ok_or_else(|| invalid("url: an http(s) URL"))?;
        if !(3..=32).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid("token: 3 to 32 letters or digits"));
        }
        if delay > MAX_DELAY {
            return Err(invalid("delay_ms: at most 600000"));
        }
        Ok(Self {
            url,
            token: token.to_owned(),
            delay,
        })
    }
}

/// An absolute http(s) URL of reasonable length.
pub(super) fn parse_url(raw: &str) -> Option<reqwest::Url> {
    if raw.len() > MAX_URL_LEN {
        return None;
    }
    reqwest::Url::parse(raw)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

/// WeChat's message-push signature: `hex(sha1(concat(sort([token, timestamp, nonce]))))`.
pub(super) fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat()))
}

/// A media check accepted by `media_check_async`.
pub(super) struct MediaCheck {
    pub appid: AppId,
    pub openid: String,
    pub media_url: reqwest::Url,
    pub trace_id: String,
}

/// Runs `check` to its end; `_slot` is its place among the bounded pending checks.
pub(super) async fn run(sim: Arc<Simulator>, check: MediaCheck, _slot: OwnedSemaphorePermit) {
    let (errcode, verdict) = match fetch(&sim.http, &check.media_url).await {
        Ok(()) => (0, sim.state().content.check_image()),
        Err(errcode) => {
            let unjudged = Verdict {
                suggest: Suggest::Review,
                label: LABEL_NORMAL,
                keyword: None,
            };
            (errcode, unjudged)
        }
    };
    let target = sim.state().pushes.target(&check.appid);
    let outcome = match target {
        None => {
            tracing::info!(
                appid = %check.appid,
                trace_id = %check.trace_id,
                "media check verdict dropped: the app has no push URL (POST /sim/push)"
            );
            PushOutcome::NoPushUrl
        }
        Some(target) => {
            tokio::time::sleep(target.delay).await;
            let event = event(&sim, &check, errcode, &verdict);
            deliver(&sim, &check, &target, &event).await
        }
    };
    sim.state().pushes.report(MediaCheckReport {
        trace_id: check.trace_id,
        appid: check.appid,
        errcode,
        suggest: verdict.suggest,
        outcome,
    });
}

/// Fetches `url` as WeChat would, up to `MAX_MEDIA_BYTES`: Ok, or the event's errcode.
async fn fetch(http: &reqwest::Client, url: &reqwest::Url) -> Result<(), i64> {
    let fetched = async {
        let response = http.get(url.clone()).send().await.map_err(|_| ERR_FETCH)?;
        if !response.status().is_success() {
            return Err(ERR_FETCH);
        }
        match read_capped(response, MAX_MEDIA_BYTES, false).await {
            Ok(_) => Ok(()),
            Err(Unread::TooBig) => Err(ERR_TOO_BIG),
            Err(Unread::BrokenOff) => Err(ERR_FETCH),
        }
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetched)
        .await
        .unwrap_or(Err(ERR_FETCH))
}

/// Why a body was not read whole.
enum Unread {
    TooBig,
    BrokenOff,
}

/// Reads the body, at most `cap` bytes of it, and returns it when `keep`: media is only
/// counted, so the pending checks hold no images.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    keep: bool,
) -> Result<Vec<u8>, Unread> {
    let (mut body, mut read) = (Vec::new(), 0);
    while let Some(chunk) = response.chunk().await.map_err(|_| Unread::BrokenOff)? {
        read += chunk.len();
        if read > cap {
            return Err(Unread::TooBig);
        }
        if keep {
            body.extend_from_slice(&chunk);
        }
    }
    Ok(body)
}

/// The `wxa_media_check` event, in plain-mode JSON.
fn event(sim: &Simulator, check: &MediaCheck, errcode: i64, verdict: &Verdict) -> Value {
    let suggest = verdict.suggest.as_str();
    let errmsg = if errcode == 0 {
        "ok"
    } else {
        "media check failed"
    };
    json!({
        "ToUserName": people::original_id(check.appid.as_str()),
        "FromUserName": check.openid,
        "CreateTime": sim.state().unix_now(),
        "MsgType": "event",
        "Event": "wxa_media_check",
        "appid": check.appid.as_str(),
        "trace_id": check.trace_id,
        "version": 2,
        "detail": [{
            "strategy": "content_model",
            "errcode": errcode,
            "suggest": suggest,
            "label": verdict.label,
            "prob": 90,
        }],
        "errcode": errcode,
        "errmsg": errmsg,
        "result": { "suggest": suggest, "label": verdict.label },
    })
}

/// POSTs `event` to the app, signed afresh at each attempt, until it answers `success`.
async fn deliver(
    sim: &Simulator,
    check: &MediaCheck,
    target: &PushTarget,
    event: &Value,
) -> PushOutcome {
    let body = event.to_string();
    for attempt in 1..=PUSH_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(RETRY_INTERVAL).await;
        }
        // Real time, not the simulator's (movable) clock: the receiving service checks the
        // timestamp against its own clock, as it must against WeChat's.
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let nonce = people::nonce();
        let signature = signature(&target.token, &timestamp, &nonce);
        let sent = sim
            .http
            .post(target.url.clone())
            .query(&[
                ("signature", signature.as_str()),
                ("timestamp", timestamp.as_str()),
                ("nonce", nonce.as_str()),
            ])
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .timeout(PUSH_TIMEOUT)
            .send()
            .await;
        let status = match sent {
            Ok(response) if response.status().is_success() => {
                match read_capped(response, MAX_ANSWER_BYTES, true).await {
                    Ok(answer) if answer.is_empty() || answer == b"success" => {
                        return PushOutcome::Delivered { attempts: attempt };
                    }
                    _ => "2xx without `success`".to_owned(),
                }
            }
            Ok(response) => response.status().to_string(),
            Err(err) if err.is_timeout() => "timeout".to_owned(),
            Err(_) => "unreachable".to_owned(),
        };
        tracing::info!(
            appid = %check.appid,
            trace_id = %check.trace_id,
            attempt,
            status = %status,
            "media check push not accepted"
        );
    }
    PushOutcome::Failed {
        attempts: PUSH_ATTEMPTS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_sorts_then_hashes() {
        // sha1("1409735669" + "414243" + "token"), sorted as strings.
        let expected = hex::encode(Sha1::digest("1409735669414243token"));
        assert_eq!(signature("token", "1409735669", "414243"), expected);
        assert_eq!(signature("token", "414243", "1409735669"), expected);
    }

    #[test]
    fn only_the_last_reports_are_kept() {
        let mut pushes = Pushes::default();
        let appid = AppId::parse("wx00000000000000a1").expect("appid");
        for i in 0..=MAX_REPORTS {
            pushes.report(MediaCheckReport {
                trace_id: i.to_string(),
                appid: appid.clone(),
                errcode: 0,
                suggest: Suggest::Pass,
                outcome: PushOutcome::NoPushUrl,
            });
        }
        let reports = pushes.reports();
        assert_eq!(reports.len(), MAX_REPORTS);
        assert_eq!(reports[0].trace_id, "1");
    }

    #[test]
    fn targets_are_checked_like_wechat_console() {
        let ok = PushTarget::new("http://127.0.0.1:8080/push", "abc123", DEFAULT_DELAY);
        assert!(ok.is_ok());
        for (url, token) in [
            ("ftp://host/x", "abc123"),
            ("not a url", "abc123"),
            ("http://127.0.0.1/push", "ab"),
            ("http://127.0.0.1/push", "with space"),
            ("http://127.0.0.1/push", &"a".repeat(33)),
        ] {
            assert!(PushTarget::new(url, token, DEFAULT_DELAY).is_err(), "{url}");
        }
        assert!(
            PushTarget::new("http://h/p", "abc", MAX_DELAY + Duration::from_millis(1)).is_err()
        );
    }
}
