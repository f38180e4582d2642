//! The WeChat server API client: `code2Session` for now.

use std::time::Duration;

use domain::{AppId, OpenId, UnionId, WeChatCode};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::error::{WeChatError, BUSY};
use super::SessionKey;

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

/// Cheap to clone: the connection pool is shared.
#[derive(Debug, Clone)]
pub struct WeChatClient {
    http: reqwest::Client,
    jscode2session: Url,
    config: WeChatClientConfig,
}

/// WeChat's answer, success and failure alike (it uses HTTP 200 for both).
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

/// Why one attempt failed: worth another try, or final.
enum Failure {
    Retry(String),
    Final(WeChatError),
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
        let jscode2session = base
            .join("sns/jscode2session")
            .map_err(|e| invalid(&e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| WeChatError::InvalidConfig(e.without_url().to_string()))?;
        Ok(Self {
            http,
            jscode2session,
            config,
        })
    }

    /// Exchanges a `wx.login()` code for the user's openid, session_key and unionid.
    #[tracing::instrument(name = "wechat.code2session", skip_all, fields(appid = %app.appid))]
    pub async fn code_to_session(
        &self,
        app: &AppCredentials,
        code: &WeChatCode,
    ) -> Result<Code2Session, WeChatError> {
        let attempts = self.config.max_attempts.max(1);
        let mut delay = self.config.backoff;
        let mut attempt = 1;
        loop {
            match self.code_to_session_once(app, code).await {
                Ok(session) => return Ok(session),
                Err(Failure::Final(err)) => return Err(err),
                Err(Failure::Retry(why)) if attempt < attempts => {
                    tracing::warn!(attempt, reason = %why, "code2Session failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                Err(Failure::Retry(why)) => {
                    tracing::warn!(attempt, reason = %why, "code2Session failed; giving up");
                    return Err(WeChatError::Unavailable(why));
                }
            }
        }
    }

    async fn code_to_session_once(
        &self,
        app: &AppCredentials,
        code: &WeChatCode,
    ) -> Result<Code2Session, Failure> {
        let request = self.http.get(self.jscode2session.clone()).query(&[
            ("appid", app.appid.as_str()),
            ("secret", app.secret.expose_secret()),
            ("js_code", code.as_str()),
            ("grant_type", "authorization_code"),
        ]);
        let answer: Answer = read_json(request).await?;
        match answer.errcode {
            0 => {}
            BUSY => return Err(Failure::Retry("WeChat busy (errcode -1)".into())),
            errcode => {
                let err = WeChatError::from_errcode(errcode, answer.errmsg);
                if matches!(err, WeChatError::Misconfigured { .. }) {
                    tracing::error!(errcode, "WeChat refused our appid or secret");
                } else {
                    tracing::info!(errcode, "code2Session refused");
                }
                return Err(Failure::Final(err));
            }
        }
        parse_session(answer).ok_or_else(|| {
            tracing::warn!("code2Session answer lacks a valid openid or session_key");
            Failure::Final(WeChatError::Unavailable("malformed response".into()))
        })
    }
}

/// Sends and reads a JSON body whatever its content-type (WeChat often says text/plain).
async fn read_json<T: for<'de> Deserialize<'de>>(
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
    let body = response
        .bytes()
        .await
        .map_err(|err| Failure::Final(WeChatError::Unavailable(describe(err))))?;
    // The body is not quoted in the error: it may hold a session_key.
    serde_json::from_slice(&body)
        .map_err(|_| Failure::Final(WeChatError::Unavailable("malformed response".into())))
}

fn parse_session(answer: Answer) -> Option<Code2Session> {
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

/// reqwest's own text names the URL, whose query holds the secret and the code: drop it.
fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else {
        err.without_url().to_string()
    }
}
