//! A WeChat simulator: the server APIs with WeChat's field names, errcodes and single-use
//! codes, plus `/sim/*` endpoints that play the phone's part and inject faults.
//!
//! A product feature (`identityd dev`, `identityd wechat-sim`) as much as a test tool: it must
//! behave like WeChat where our service can tell, and never panic on what a developer sends.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /sns/jscode2session` | code2Session |
//! | `POST /cgi-bin/stable_token` | the app's access token (7200 s; `force_refresh` replaces it at once) |
//! | `POST /wxa/business/getuserphonenumber?access_token=` `{code, openid?}` | phone number by button code |
//! | `GET /wxa/checksession?access_token=&openid=&signature=&sig_method=hmac_sha256` | checkSessionKey |
//! | `POST /wxa/msg_sec_check?access_token=` `{content, version: 2, scene, openid}` | text check: `risky` / `review` by word list, else `pass` |
//! | `POST /wxa/media_check_async?access_token=` `{media_url, media_type, version: 2, scene, openid}` → `{trace_id}` | image check: fetches `media_url` (≤ 5 MiB, 10 s), then pushes the `wxa_media_check` event, signed, to the app's push URL after its delay; 3 retries |
//! | `POST /sim/wx.login` `{appid, user?}` → `{code}` | the phone's `wx.login()` |
//! | `POST /sim/getPhoneNumber` `{appid, user}` → `{code}` | the phone-number button |
//! | `POST /sim/getUserProfile` `{appid, user, profile?}` → `{userInfo, rawData, signature, encryptedData, iv}` | the phone's `wx.getUserProfile()`, sealed with the current session_key |
//! | `POST /sim/content` `{risky_words?, review_words?, images?}`, `GET /sim/content` | what the content checks find risky (default: `risky`, `违规`; review: `review`; images `pass`) |
//! | `POST /sim/push` `{appid, url, token, delay_ms?}`, `GET /sim/push` | the app's message-push URL and token (delay default 500 ms); the GET also lists the last 100 media checks' outcomes |
//! | `POST /sim/faults` `{api, errcode?, times?, latency_ms?}`, `DELETE /sim/faults` | fault injection; `api`: `jscode2session`, `stable_token`, `getuserphonenumber`, `checksession`, `msg_sec_check`, `media_check_async` |
//! | `POST /sim/clock` `{advance_secs}` | move the simulator's time forward |
//! | `GET /sim/health` | liveness |
//!
//! A person is a `user` name: the same name is the same person in every app (same unionid within
//! an Open Platform account, same phone number everywhere, see [`Simulator::phone_number_of`]).
//! The content-security APIs accept only the openid of someone who logged in to the app.

mod codes;
mod content;
mod content_routes;
mod people;
mod push;
mod routes;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use domain::AppId;
use tokio::sync::Semaphore;

pub use people::{openid, unionid};
use state::State;

/// The simulator's state while its lock is held.
type LockedState<'a> = MutexGuard<'a, State>;

pub use content::{ContentSettings, ContentUpdate, Suggest};
pub use push::{MediaCheckReport, PushOutcome};

/// Media checks waiting to be pushed, at most: past it `media_check_async` answers 45011
/// (quota), so a developer's tight loop cannot pile up tasks.
const MAX_PENDING_MEDIA_CHECKS: usize = 1000;

/// One mini-program the simulator knows.
#[derive(Debug, Clone)]
pub struct SimApp {
    pub appid: AppId,
    pub secret: String,
    /// Apps sharing this id give the same unionid to the same person; `None`: no unionid.
    pub open_platform: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    pub apps: Vec<SimApp>,
}

/// The simulated WeChat server APIs, by the name used in `/sim/faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Jscode2Session,
    StableToken,
    GetUserPhoneNumber,
    CheckSession,
    MsgSecCheck,
    MediaCheckAsync,
}

impl Api {
    pub const ALL: [Self; 6] = [
        Self::Jscode2Session,
        Self::StableToken,
        Self::GetUserPhoneNumber,
        Self::CheckSession,
        Self::MsgSecCheck,
        Self::MediaCheckAsync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Jscode2Session => "jscode2session",
            Self::StableToken => "stable_token",
            Self::GetUserPhoneNumber => "getuserphonenumber",
            Self::CheckSession => "checksession",
            Self::MsgSecCheck => "msg_sec_check",
            Self::MediaCheckAsync => "media_check_async",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|api| api.name() == name)
    }
}

/// A queued misbehaviour: the next `times` calls of `api` wait `latency`, then answer
/// `errcode` (without consuming anything) or, without an errcode, answer normally.
#[derive(Debug, Clone)]
pub struct Fault {
    pub api: Api,
    pub errcode: Option<i64>,
    /// 0: until cleared.
    pub times: u32,
    pub latency: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("unknown appid")]
    UnknownApp,
    #[error("the clock cannot move that far")]
    ClockOverflow,
    #[error("this user has not logged in (wx.login) in this app")]
    NotLoggedIn,
    #[error("{0}")]
    InvalidSetting(String),
}

/// Shared by every request; cheap to clone as an `Arc`. The state sits behind a std `Mutex`
/// that is never held across an await.
pub struct Simulator {
    state: Mutex<State>,
    /// Fetches media and pushes verdicts, as WeChat's servers do.
    http: reqwest::Client,
    /// One permit per media check not yet pushed.
    pending_media_checks: Arc<Semaphore>,
}

impl std::fmt::Debug for Simulator {
    // The state holds secrets and session keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Simulator {
    pub fn new(config: SimConfig) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            // Only a broken TLS setup fails here; the plain client is as good for a simulator.
            .unwrap_or_default();
        Arc::new(Self {
            state: Mutex::new(State::new(config.apps)),
            http,
            pending_media_checks: Arc::new(Semaphore::new(MAX_PENDING_MEDIA_CHECKS)),
        })
    }

    /// The simulator's HTTP API, ready to serve.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(Arc::clone(self))
    }

    /// The phone's `wx.login()`: a fresh code for `user` (a fresh person when `None`), and a
    /// fresh session_key for that person in that app, replacing the previous one.
    pub fn wx_login(&self, appid: &AppId, user: Option<&str>) -> Result<String, SimError> {
        self.state().wx_login(appid, user)
    }

    /// The phone-number button: a single-use code (5 minutes) for `user`'s number, for
    /// `getuserphonenumber`.
    pub fn phone_code(&self, appid: &AppId, user: &str) -> Result<String, SimError> {
        self.state().phone_code(appid, user)
    }

    /// The number `getuserphonenumber` gives for `user` (11 digits, country code 86), the same
    /// in every app.
    pub fn phone_number_of(user: &str) -> String {
        people::phone_number(user)
    }

    /// The session_key WeChat currently holds for this person in this app. Plain strings: tests
    /// take them from JSON answers.
    pub fn current_session_key(&self, appid: &str, openid: &str) -> Option<String> {
        let appid = AppId::parse(appid).ok()?;
        self.state().current_session_key(&appid, openid)
    }

    pub fn inject(&self, fault: Fault) {
        self.state().inject(fault);
    }

    pub fn clear_faults(&self) {
        self.state().clear_faults();
    }

    /// Moves the simulator's time forward, e.g. past a code's 5 minutes, without sleeping.
    pub fn advance_clock(&self, by: Duration) -> Result<(), SimError> {
        self.state().advance_clock(by)
    }

    /// Sets what the content checks find risky; what `update` leaves out stays. All or nothing.
    pub fn set_content(&self, update: ContentUpdate) -> Result<(), SimError> {
        self.state().content.apply(update)
    }

    pub fn content(&self) -> ContentSettings {
        self.state().content.clone()
    }

    /// The app's message push (WeChat's console): where media-check verdicts go, signed with
    /// `token`, 500 ms after the image was fetched.
    pub fn set_push(&self, appid: &AppId, url: &str, token: &str) -> Result<(), SimError> {
        self.set_push_with_delay(appid, url, token, push::DEFAULT_DELAY)
    }

    /// [`Self::set_push`], the verdicts pushed `delay` (at most 10 minutes) after the fetch.
    pub fn set_push_with_delay(
        &self,
        appid: &AppId,
        url: &str,
        token: &str,
        delay: Duration,
    ) -> Result<(), SimError> {
        let target = push::PushTarget::new(url, token, delay)?;
        let mut state = self.state();
        state.app(appid)?;
        state.pushes.set(appid.clone(), target);
        Ok(())
    }

    /// The last 100 finished media checks, oldest first.
    pub fn media_check_reports(&self) -> Vec<MediaCheckReport> {
        self.state().pushes.reports()
    }

    /// Requests `api` has received so far, faulted ones included.
    pub fn calls(&self, api: Api) -> u64 {
        self.state().calls(api)
    }

    fn state(&self) -> LockedState<'_> {
        // A panic elsewhere cannot leave the maps half-updated in a way that matters here.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
