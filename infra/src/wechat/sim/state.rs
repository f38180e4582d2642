//! The simulator's memory: apps, issued codes and access tokens, current session keys, queued
//! faults, content-security settings and push targets, its clock. Plain synchronous logic; the routes add HTTP and latency around it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use domain::AppId;

use super::codes::{CodeBook, Refused};
use super::content::ContentSettings;
use super::push::Pushes;
use super::{people, Api, Fault, SimApp, SimError};
use crate::wechat::check_session;

/// Anonymous logins create a person each; past this many (app, person) pairs an arbitrary old
/// session is forgotten so a long-running simulator stays bounded.
const MAX_SESSIONS: usize = 100_000;
/// Bounds `advance_clock` so `Instant` arithmetic cannot overflow.
const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// `stable_token`'s lifetime.
const TOKEN_TTL: Duration = Duration::from_secs(7200);
/// Expired tokens are remembered this long, to answer 42001 (expired) rather than 40001.
const EXPIRED_TOKEN_MEMORY: Duration = Duration::from_secs(24 * 3600);

pub(super) struct State {
    apps: HashMap<AppId, SimApp>,
    /// Added to the real clock: lets tests expire codes and tokens without sleeping.
    offset: Duration,
    login_codes: CodeBook<LoginCodeOwner>,
    phone_codes: CodeBook<PhoneCodeOwner>,
    /// The current session_key per (appid, openid): WeChat keeps one, replaced at each login.
    sessions: HashMap<(AppId, String), String>,
    /// Every access token issued and not long expired.
    tokens: HashMap<String, IssuedToken>,
    /// The token `stable_token` currently hands out, per app.
    current_tokens: HashMap<AppId, String>,
    faults: VecDeque<Fault>,
    calls: HashMap<Api, u64>,
    pub content: ContentSettings,
    pub pushes: Pushes,
}

struct LoginCodeOwner {
    appid: AppId,
    openid: String,
    unionid: Option<String>,
}

struct PhoneCodeOwner {
    appid: AppId,
    user: String,
}

struct IssuedToken {
    appid: AppId,
    expires_at: Instant,
}

/// code2Session's success answer.
pub(super) struct Session {
    pub openid: String,
    pub session_key: String,
    pub unionid: Option<String>,
}

/// What `getUserProfile` needs to seal a profile for a logged-in person.
pub(super) struct ProfileContext {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: String,
    pub timestamp: u64,
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
            login_codes: CodeBook::new(),
            phone_codes: CodeBook::new(),
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            current_tokens: HashMap::new(),
            faults: VecDeque::new(),
            calls: HashMap::new(),
            content: ContentSettings::default(),
            pushes: Pushes::default(),
        }
    }

    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    /// Unix seconds on the simulator's clock, for watermarks.
    pub fn unix_now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (real + self.offset).as_secs()
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

    pub fn app(&self, appid: &AppId) -> Result<&SimApp, SimError> {
        self.apps.get(appid).ok_or(SimError::UnknownApp)
    }

    pub fn wx_login(&mut self, appid: &AppId, user: Option<&str>) -> Result<String, SimError> {
        let app = self.app(appid)?;
        let user = user.map_or_else(people::anonymous_user, str::to_owned);
        let openid = people::openid(appid.as_str(), &user);
        let unionid = app
            .open_platform
            .as_deref()
            .map(|platform| people::unionid(platform, &user));

        let now = self.now();
        let owner = LoginCodeOwner {
            appid: appid.clone(),
            openid: openid.clone(),
            unionid,
        };
        let code = self.login_codes.issue(now, owner);

        let person = (appid.clone(), openid);
        if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&person) {
            if let Some(old) = self.sessions.keys().next().cloned() {
                self.sessions.remove(&old);
            }
        }
        self.sessions.insert(person, people::new_session_key());
        Ok(code)
    }

    /// The phone-number button: a code for `user`'s number, for this app.
    pub fn phone_code(&mut self, appid: &AppId, user: &str) -> Result<String, SimError> {
        self.app(appid)?;
        let now = self.now();
        let owner = PhoneCodeOwner {
            appid: appid.clone(),
            user: user.to_owned(),
        };
        Ok(self.phone_codes.issue(now, owner))
    }

    /// What `getUserProfile` seals its payload with: the person's current session in the app.
    pub fn profile_context(&self, appid: &AppId, user: &str) -> Result<ProfileContext, SimError> {
        let app = self.app(appid)?;
        let openid = people::openid(appid.as_str(), user);
        let session_key = self
            .current_session_key(appid, &openid)
            .ok_or(SimError::NotLoggedIn)?;
        Ok(ProfileContext {
            unionid: app
                .open_platform
                .as_deref()
                .map(|platform| people::unionid(platform, user)),
            openid,
            session_key,
            timestamp: self.unix_now(),
        })
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
        let owner = self
            .login_codes
            .redeem(now, code, |owner| &owner.appid == appid)
            .map_err(|refused| match refused {
                Refused::Invalid => 40029,
                Refused::Used => 40163,
            })?;
        let (openid, unionid) = (owner.openid.clone(), owner.unionid.clone());
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

    /// `stable_token` for an authenticated app: the current token and its remaining seconds,
    /// or a new one when there is none, it expired, or `force_refresh` is set. A forced
    /// refresh invalidates the previous token at once, as WeChat's documentation says.
    pub fn stable_token(&mut self, appid: &AppId, force_refresh: bool) -> (String, u64) {
        let now = self.now();
        if let Some(current) = self.current_tokens.get(appid) {
            match self.tokens.get(current) {
                Some(issued) if !force_refresh && issued.expires_at > now => {
                    let remaining = issued.expires_at.duration_since(now);
                    return (current.clone(), remaining.as_secs().max(1));
                }
                _ if force_refresh => {
                    self.tokens.remove(current);
                }
                _ => {}
            }
        }
        self.tokens
            .retain(|_, issued| now < issued.expires_at + EXPIRED_TOKEN_MEMORY);
        let token = people::new_access_token();
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                appid: appid.clone(),
                expires_at: now + TOKEN_TTL,
            },
        );
        self.current_tokens.insert(appid.clone(), token.clone());
        (token, TOKEN_TTL.as_secs())
    }

    /// The app an access token was issued to. 41001 missing, 40001 unknown or invalidated,
    /// 42001 expired.
    pub fn authorize(&self, token: Option<&str>) -> Result<AppId, i64> {
        let token = token.filter(|t| !t.is_empty()).ok_or(41001)?;
        let issued = self.tokens.get(token).ok_or(40001)?;
        if issued.expires_at <= self.now() {
            return Err(42001);
        }
        Ok(issued.appid.clone())
    }

    /// `getuserphonenumber` for an authorized app: the person's number. 40029 for a code that
    /// is unknown, expired, used, of another app, or (with `openid`) of another person.
    pub fn redeem_phone_code(
        &mut self,
        appid: &AppId,
        code: &str,
        openid: Option<&str>,
    ) -> Result<String, i64> {
        let now = self.now();
        let owner = self
            .phone_codes
            .redeem(now, code, |owner| {
                &owner.appid == appid
                    && openid.is_none_or(|o| o == people::openid(appid.as_str(), &owner.user))
            })
            .map_err(|_| 40029)?;
        Ok(people::phone_number(&owner.user))
    }

    /// `checksession`: 87009 unless `signature` is the HMAC of the person's current key.
    pub fn check_session(&self, appid: &AppId, openid: &str, signature: &str) -> Result<(), i64> {
        let current = self.current_session_key(appid, openid).ok_or(87009)?;
        if check_session::signature(&current).eq_ignore_ascii_case(signature) {
            Ok(())
        } else {
            Err(87009)
        }
    }

    /// The content-security APIs' openid check: 40003 when it is not an openid, 61010 when
    /// that person has not logged in to the app (WeChat: not in the last 2 hours; here: the
    /// simulator holds no session for them).
    pub fn logged_in(&self, appid: &AppId, openid: Option<&str>) -> Result<String, i64> {
        let openid = openid
            .filter(|o| domain::OpenId::parse(o).is_ok())
            .ok_or(40003)?;
        self.current_session_key(appid, openid).ok_or(61010)?;
        Ok(openid.to_owned())
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
