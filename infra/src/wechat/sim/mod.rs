//! A WeChat simulator: the server APIs with WeChat's field names, errcodes and single-use
//! codes, plus `/sim/*` endpoints that play the phone's part and inject faults.
//!
//! A product feature (`identityd dev`, `identityd wechat-sim`) as much as a test tool: it must
//! behave like WeChat where our service can tell, and never panic on what a developer sends.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /sns/jscode2session` | code2Session |
//! | `POST /sim/wx.login` `{appid, user?}` → `{code}` | the phone's `wx.login()` |
//! | `POST /sim/faults` `{api, errcode?, times?, latency_ms?}`, `DELETE /sim/faults` | fault injection |
//! | `POST /sim/clock` `{advance_secs}` | move the simulator's time forward |
//! | `GET /sim/health` | liveness |

mod people;
mod routes;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use domain::AppId;

use state::State;

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
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Self::Jscode2Session => "jscode2session",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Jscode2Session]
            .into_iter()
            .find(|api| api.name() == name)
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
}

/// Shared by every request; cheap to clone as an `Arc`. The state sits behind a std `Mutex`
/// that is never held across an await.
pub struct Simulator {
    state: Mutex<State>,
}

impl std::fmt::Debug for Simulator {
    // The state holds secrets and session keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Simulator {
    pub fn new(config: SimConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::new(config.apps)),
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

    /// Requests `api` has received so far, faulted ones included.
    pub fn calls(&self, api: Api) -> u64 {
        self.state().calls(api)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the maps half-updated in a way that matters here.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
