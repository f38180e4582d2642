//! The WeChat server API client: endpoints, retries and `code2Session`. The calls that need an
//! access token live next door (`phone`, `check_session`), the token cache in `access_token`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{AppId, OpenId, UnionId, WeChatCode};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::access_token::{AccessToken, AccessTokenCache};
use super::clock::{Clock, SystemClock};
use super::error::{WeChatError, BUSY};
use super::metrics::WeChatCalls;
use super::SessionKey;

/// Idle connections to WeChat kept for reuse, at most. The client speaks HTTP/1.1, so each call
/// in flight holds a connection of its own: a burst (a stall upstream, a database pause) opens
/// one per call, and without a cap every one of them stays pooled, with its buffers and TLS
/// state, long after the burst. Calls in flight ≈ logins per second × WeChat's latency: 64
/// covers some 600 logins/s at 100 ms without new handshakes; calls beyond it still run, on
/// connections closed when they are done.
pub const IDLE_CONNECTIONS: usize = 64;
/// An idle connection to WeChat is closed after this long: before the server's keep-alive
/// closes it from its side, since a request written onto a connection the server has just
/// closed fails as a sent request, which is not retried.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One configured mini-program.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub appid: AppId,
    pub secret: SecretString,
}

#[derive(Debug, Clone, Copy)]
pub struct WeChatClientConfig {
    /// For the whole call: connect, send, and read the answer.
    pub timeout: Duration,
    /// Calls per request, first included. Retries happen only where WeChat cannot have
    /// consumed the code: errcode -1 and connection failures.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles at each further one.
    pub backoff: Duration,
}

impl Default for WeChatClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            backoff: Duration::from_millis(100),
        }
    }
}

/// What `code2Session` tells us about the person behind a `wx.login()` code.
#[derive(Debug)]
pub struct Code2Session {
    pub openid: OpenId,
    pub session_key: SessionKey,
    /// Only when the app is bound to an Open Platform account.
    pub unionid: Option<UnionId>,
}

/// Cheap to clone: the connection pool and the access-token cache are shared.
#[derive(Debug, Clone)]
pub struct WeChatClient {
    pub(super) http: reqwest::Client,
    pub(super) endpoints: Arc<Endpoints>,
    pub(super) config: WeChatClientConfig,
    pub(super) tokens: Arc<AccessTokenCache>,
    /// Every attempt, for `/metrics`.
    pub(super) calls: Arc<WeChatCalls>,
}

/// WeChat's URLs under the configured base.
#[derive(Debug)]
pub(super) struct Endpoints {
    pub jscode2session: Url,
    pub stable_token: Url,
    pub phone_number: Url,
    pub check_session: Url,
    pub msg_sec_check: Url,
    pub media_check_async: Url,
}

/// Every WeChat answer, success and failure alike (WeChat uses HTTP 200 for both): `errcode`
/// and `errmsg`, absent on success, beside the API's own fields.
#[derive(Deserialize)]
pub(super) struct Answer<T> {
    #[serde(default)]
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
    #[serde(flatten)]
    pub body: T,
}

/// For an answer that is only `errcode` and `errmsg`.
#[derive(Deserialize)]
pub(super) struct NoFields {}

impl<T> Answer<T> {
    /// The body of an API called with the app's secret (no access token): -1 is worth
    /// another try, any other non-zero errcode is a refusal.
    pub(super) fn accepted(self) -> Result<T, Failure> {
        match self.errcode {
            0 => Ok(self.body),
            BUSY => Err(Failure::Retry(BUSY_REASON.into())),
            errcode => Err(Failure::Final(refused(errcode, self.errmsg))),
        }
    }
}

/// code2Session's own fields.
#[derive(Deserialize)]
struct Session {
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

/// The reason of a `Retry` for errcode -1.
pub(super) const BUSY_REASON: &str = "WeChat busy (errcode -1)";

/// Why one attempt failed.
pub(super) enum Failure {
    /// Worth another try: WeChat cannot have acted on the request (errcode -1, no connection).
    Retry(String),
    /// WeChat refused our access token (40001, 40014, 42001).
    TokenRejected(i64),
    Final(WeChatError),
}

impl Failure {
    /// Sorts a non-zero errcode of an API called with an access token.
    pub(super) fn from_token_api_errcode(errcode: i64, errmsg: String) -> Self {
        match errcode {
            BUSY => Self::Retry(BUSY_REASON.into()),
            40001 | 40014 | 42001 => Self::TokenRejected(errcode),
            _ => Self::Final(WeChatError::from_errcode(errcode, errmsg)),
        }
    }

    pub(super) fn into_error(self) -> WeChatError {
        match self {
            Self::Retry(why) => WeChatError::Unavailable(why),
            Self::TokenRejected(errcode) => WeChatError::AccessTokenRejected { errcode },
            Self::Final(err) => err,
        }
    }
}

impl WeChatClient {
    /// `base_url` is WeChat's (`https://api.weixin.qq.com`) or a simulator's; a path prefix is
    /// kept.
    pub fn new(base_url: &str, config: WeChatClientConfig) -> Result<Self, WeChatError> {
        let invalid = |why: &str| WeChatError::InvalidConfig(format!("base URL: {why}"));
        let mut base = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(invalid("must be an http(s) URL with a host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        // `join` replaces the last path segment unless the path ends with '/'.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let join = |path: &str| base.join(path).map_err(|e| invalid(&e.to_string()));
        let endpoints = Endpoints {
            jscode2session: join("sns/jscode2session")?,
            stable_token: join("cgi-bin/stable_token")?,
            phone_number: join("wxa/business/getuserphonenumber")?,
            check_session: join("wxa/checksession")?,
            msg_sec_check: join("wxa/msg_sec_check")?,
            media_check_async: join("wxa/media_check_async")?,
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build()
            .map_err(|e| WeChatError::InvalidConfig(e.without_url().to_string()))?;
        Ok(Self {
            http,
            endpoints: Arc::new(endpoints),
            config,
            tokens: Arc::new(AccessTokenCache::new(Arc::new(SystemClock))),
            calls: Arc::default(),
        })
    }

    /// The calls made so far, by API and errcode, for `/metrics`.
    pub fn metrics(&self) -> &WeChatCalls {
        &self.calls
    }

    /// The same client with the access-token cache on `clock` (and emptied): for tests that
    /// expire tokens without sleeping.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.tokens = Arc::new(AccessTokenCache::new(clock));
        self
    }

    /// Exchanges a `wx.login()` code for the user's openid, session_key and unionid.
    #[tracing::instrument(name = "wechat.code2session", skip_all, fields(appid = %app.appid))]
    pub async fn code_to_session(
        &self,
        app: &AppCredentials,
        code: &WeChatCode,
    ) -> Result<Code2Session, WeChatError> {
        self.retrying("code2Session", || self.code_to_session_once(app, code))
            .await
            .map_err(Failure::into_error)
    }

    async fn code_to_session_once(
        &self,
        app: &AppCredentials,
        code: &WeChatCode,
    ) -> Result<Code2Session, Failure> {
        let request = self
            .http
            .get(self.endpoints.jscode2session.clone())
            .query(&[
                ("appid", app.appid.as_str()),
                ("secret", app.secret.expose_secret()),
                ("js_code", code.as_str()),
                ("grant_type", "authorization_code"),
            ]);
        let answer: Answer<Session> = read_json(request).await?;
        parse_session(answer.accepted()?).ok_or_else(|| {
            tracing::warn!("code2Session answer lacks a valid openid or session_key");
            Failure::Final(WeChatError::Unavailable(super::metrics::MALFORMED.into()))
        })
    }

    /// Runs `once` until it succeeds, fails for good, or `max_attempts` retryable failures
    /// (then `Unavailable`), doubling the delay between attempts.
    pub(super) async fn retrying<T, Fut>(
        &self,
        api: &'static str,
        mut once: impl FnMut() -> Fut,
    ) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempts = self.config.max_attempts.max(1);
        let mut delay = self.config.backoff;
        let mut attempt = 1;
        loop {
            // Every call to WeChat is an attempt here: the one place to time them.
            let started = Instant::now();
            let outcome = once().await;
            self.calls.observe(api, &outcome, started.elapsed());
            match outcome {
                Err(Failure::Retry(why)) if attempt < attempts => {
                    tracing::warn!(api, attempt, reason = %why, "WeChat call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                Err(Failure::Retry(why)) => {
                    tracing::warn!(api, attempt, reason = %why, "WeChat call failed; giving up");
                    return Err(Failure::Final(WeChatError::Unavailable(why)));
                }
                other => return other,
            }
        }
    }

    /// Calls an API that needs the app's access token (with `retrying`). If WeChat refuses the
    /// token, drops it, fetches a new one and calls once more; a second refusal is final.
    pub(super) async fn with_access_token<T, Fut>(
        &self,
        app: &AppCredentials,
        api: &'static str,
        call: impl Fn(AccessToken) -> Fut,
    ) -> Result<T, WeChatError>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let token = self.access_token(app).await?;
        match self.retrying(api, || call(token.clone())).await {
            Err(Failure::TokenRejected(errcode)) => {
                tracing::warn!(
                    api,
                    errcode,
                    "WeChat refused our access token; fetching another"
                );
                let token = self.replace_rejected_token(app, &token).await?;
                self.retrying(api, || call(token.clone()))
                    .await
                    .map_err(|failure| {
                        if let Failure::TokenRejected(errcode) = failure {
                            tracing::error!(api, errcode, "WeChat refused a fresh access token");
                        }
                        failure.into_error()
                    })
            }
            other => other.map_err(Failure::into_error),
        }
    }

    /// POSTs `body` as JSON to an API that takes the app's access token in its query (with
    /// `with_access_token`'s retries and one new token), and hands the answer's own fields to
    /// `read` once WeChat accepted the call (errcode 0).
    pub(super) async fn post_with_access_token<T: DeserializeOwned, R>(
        &self,
        app: &AppCredentials,
        api: &'static str,
        url: &Url,
        body: &(impl Serialize + Sync),
        read: impl Fn(T) -> Result<R, Failure>,
    ) -> Result<R, WeChatError> {
        let read = &read;
        self.with_access_token(app, api, |token| async move {
            let request = self
                .http
                .post(url.clone())
                .query(&[("access_token", token.expose())])
                .json(body);
            let answer: Answer<T> = read_json(request).await?;
            if answer.errcode != 0 {
                return Err(Failure::from_token_api_errcode(
                    answer.errcode,
                    answer.errmsg,
                ));
            }
            read(answer.body)
        })
        .await
    }
}

/// Sorts and logs a refusal (a non-zero errcode other than -1).
pub(super) fn refused(errcode: i64, errmsg: String) -> WeChatError {
    let err = WeChatError::from_errcode(errcode, errmsg);
    if matches!(err, WeChatError::Misconfigured { .. }) {
        tracing::error!(errcode, "WeChat refused our appid or secret");
    } else {
        tracing::info!(errcode, "WeChat refused the call");
    }
    err
}

/// Sends and reads a JSON body whatever its content-type (WeChat often says text/plain).
pub(super) async fn read_json<T: for<'de> Deserialize<'de>>(
    request: reqwest::RequestBuilder,
) -> Result<T, Failure> {
    let response = request.send().await.map_err(|err| {
        // A failed connection never reached WeChat: safe to retry. Anything later may have.
        if err.is_connect() {
            Failure::Retry(describe(err))
        } else {
            Failure::Final(WeChatError::Unavailable(describe(err)))
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::Final(WeChatError::Unavailable(format!(
            "HTTP status {}",
            status.as_u16()
        ))));
    }
    let malformed = || Failure::Final(WeChatError::Unavailable(super::metrics::MALFORMED.into()));
    // Read in pieces and stop at the bound: a body past it is not one of WeChat's answers (a
    // misconfigured base URL, a proxy's error page), and is not taken into memory whole.
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| Failure::Final(WeChatError::Unavailable(describe(err))))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(malformed());
        }
        body.extend_from_slice(&chunk);
    }
    // The body is not quoted in the error: it may hold a session_key, a token or a number.
    serde_json::from_slice(&body).map_err(|_| malformed())
}

/// The most of an answer read. WeChat's JSON answers are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

fn parse_session(answer: Session) -> Option<Code2Session> {
    let unionid = match answer.unionid.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(UnionId::parse(raw).ok()?),
    };
    Some(Code2Session {
        openid: OpenId::parse(answer.openid.as_deref()?).ok()?,
        session_key: SessionKey::parse(answer.session_key.as_deref()?).ok()?,
        unionid,
    })
}

/// reqwest's own text names the URL, whose query holds the secret, the code or the access
/// token: drop it.
fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else {
        err.without_url().to_string()
    }
}
