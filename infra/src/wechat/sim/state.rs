//! The simulator's memory: apps, issued codes, current session keys, queued faults, its clock.
//! Plain synchronous logic; the routes add HTTP and latency around it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use domain::AppId;

use super::{people, Api, Fault, SimApp, SimError};

/// WeChat's `wx.login()` codes live 5 minutes.
const CODE_TTL: Duration = Duration::from_secs(300);
/// Anonymous logins create a person each; past this many (app, person) pairs an arbitrary old
/// session is forgotten so a long-running simulator stays bounded.
const MAX_SESSIONS: usize = 100_000;
/// Bounds `advance_clock` so `Instant` arithmetic cannot overflow.
const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

pub(super) struct State {
    apps: HashMap<AppId, SimApp>,
    /// Added to the real clock: lets tests expire codes without sleeping.
    offset: Duration,
    codes: HashMap<String, IssuedCode>,
    /// Codes by issue time (the clock only moves forward), to purge expired ones cheaply.
    issued: VecDeque<(Instant, String)>,
    /// The current session_key per (appid, openid): WeChat keeps one, replaced at each login.
    sessions: HashMap<(AppId, String), String>,
    faults: VecDeque<Fault>,
    calls: HashMap<Api, u64>,
}

struct IssuedCode {
    appid: AppId,
    openid: String,
    unionid: Option<String>,
    issued_at: Instant,
    used: bool,
}

/// code2Session's success answer.
pub(super) struct Session {
    pub openid: String,
    pub session_key: String,
    pub unionid: Option<String>,
}

/// What a call meets from the fault queue.
#[derive(Default)]
pub(super) struct FaultHit {
    pub errcode: Option<i64>,
    pub latency: Option<Duration>,
}

impl State {
    pub fn new(apps: Vec<SimApp>) -> Self {
        Self {
            apps: apps.into_iter().map(|a| (a.appid.clone(), a)).collect(),
            offset: Duration::ZERO,
            codes: HashMap::new(),
            issued: VecDeque::new(),
            sessions: HashMap::new(),
            faults: VecDeque::new(),
            calls: HashMap::new(),
        }
    }

    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    pub fn advance_clock(&mut self, by: Duration) -> Result<(), SimError> {
        match self.offset.checked_add(by) {
            Some(offset) if offset <= MAX_CLOCK_OFFSET => {
                self.offset = offset;
                Ok(())
            }
            _ => Err(SimError::ClockOverflow),
        }
    }

    pub fn wx_login(&mut self, appid: &AppId, user: Option<&str>) -> Result<String, SimError> {
        let app = self.apps.get(appid).ok_or(SimError::UnknownApp)?;
        let user = user.map_or_else(people::anonymous_user, str::to_owned);
        let openid = people::openid(appid.as_str(), &user);
        let unionid = app
            .open_platform
            .as_deref()
            .map(|platform| people::unionid(platform, &user));

        let now = self.now();
        self.purge_expired_codes(now);
        let code = people::new_code();
        self.codes.insert(
            code.clone(),
            IssuedCode {
                appid: appid.clone(),
                openid: openid.clone(),
                unionid,
                issued_at: now,
                used: false,
            },
        );
        self.issued.push_back((now, code.clone()));

        let person = (appid.clone(), openid);
        if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&person) {
            if let Some(old) = self.sessions.keys().next().cloned() {
                self.sessions.remove(&old);
            }
        }
        self.sessions.insert(person, people::new_session_key());
        Ok(code)
    }

    fn purge_expired_codes(&mut self, now: Instant) {
        while let Some((issued_at, _)) = self.issued.front() {
            if now.duration_since(*issued_at) < CODE_TTL {
                break;
            }
            if let Some((_, code)) = self.issued.pop_front() {
                self.codes.remove(&code);
            }
        }
    }

    pub fn current_session_key(&self, appid: &AppId, openid: &str) -> Option<String> {
        self.sessions
            .get(&(appid.clone(), openid.to_owned()))
            .cloned()
    }

    /// Checks the app's credentials as WeChat does: appid, then secret. Errcodes: 41002 appid
    /// missing, 40013 invalid appid, 41004 secret missing, 40125 invalid secret.
    pub fn authenticate(&self, appid: Option<&str>, secret: Option<&str>) -> Result<&SimApp, i64> {
        let appid = appid.filter(|a| !a.is_empty()).ok_or(41002)?;
        let app = AppId::parse(appid)
            .ok()
            .and_then(|appid| self.apps.get(&appid))
            .ok_or(40013)?;
        match secret {
            None | Some("") => Err(41004),
            Some(secret) if secret != app.secret => Err(40125),
            Some(_) => Ok(app),
        }
    }

    /// code2Session for an authenticated app. 40029 for a code that is unknown, expired or of
    /// another app; 40163 for one already used. A success consumes the code.
    pub fn code_to_session(&mut self, appid: &AppId, code: &str) -> Result<Session, i64> {
        let now = self.now();
        let issued = self
            .codes
            .get_mut(code)
            .filter(|c| &c.appid == appid && now.duration_since(c.issued_at) < CODE_TTL)
            .ok_or(40029)?;
        if issued.used {
            return Err(40163);
        }
        issued.used = true;
        let (openid, unionid) = (issued.openid.clone(), issued.unionid.clone());
        let session_key = self
            .current_session_key(appid, &openid)
            // Only when MAX_SESSIONS evicted it: WeChat would hand out a key all the same.
            .unwrap_or_else(people::new_session_key);
        Ok(Session {
            openid,
            session_key,
            unionid,
        })
    }

    pub fn inject(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Counts a call of `api` and takes the first fault queued for it, if any.
    pub fn begin_call(&mut self, api: Api) -> FaultHit {
        *self.calls.entry(api).or_default() += 1;
        let Some(index) = self.faults.iter().position(|f| f.api == api) else {
            return FaultHit::default();
        };
        let fault = &mut self.faults[index];
        let hit = FaultHit {
            errcode: fault.errcode,
            latency: fault.latency,
        };
        match fault.times {
            0 => {} // until cleared
            1 => {
                self.faults.remove(index);
            }
            _ => fault.times -= 1,
        }
        hit
    }

    pub fn calls(&self, api: Api) -> u64 {
        self.calls.get(&api).copied().unwrap_or(0)
    }
}
