//! What can go wrong when asking WeChat, sorted by what the caller should do about it.

/// A failed WeChat call. Messages never carry the secret, a code, an access token, a
/// session_key or a phone number.
#[derive(Debug, thiserror::Error)]
pub enum WeChatError {
    /// The code (`wx.login()`'s, or the phone-number button's) is unknown, expired, of another
    /// app (40029) or already used (40163; the phone-number API says 40029 for that too).
    #[error("WeChat refused the code (errcode {errcode})")]
    InvalidCode { errcode: i64 },
    /// WeChat intercepted the login of a high-risk user (40226).
    #[error("WeChat refused a high-risk user (errcode 40226)")]
    HighRisk,
    /// WeChat's per-minute quota is reached (45011).
    #[error("WeChat rate limit reached (errcode 45011)")]
    RateLimited,
    /// WeChat could not answer: busy (-1) after every retry, a timeout, a connection failure,
    /// a 5xx or an answer we could not read. The reason is safe to log.
    #[error("WeChat unavailable: {0}")]
    Unavailable(String),
    /// WeChat refused our appid (40013) or secret (40125): a configuration error on our side.
    #[error("WeChat refused our app credentials (errcode {errcode})")]
    Misconfigured { errcode: i64 },
    /// WeChat refused our access token (40001, 40014, 42001) even after we fetched a new one:
    /// a problem on our side (clock, another process force-refreshing it in a loop) or WeChat's.
    #[error("WeChat refused the app's access token (errcode {errcode})")]
    AccessTokenRejected { errcode: i64 },
    /// The answer's `watermark.appid` names another app: it was not meant for us.
    #[error("WeChat's answer carries another app's watermark")]
    WatermarkMismatch,
    /// Any other errcode. `errmsg` is WeChat's own text (it never echoes our secret or code).
    #[error("WeChat rejected the call (errcode {errcode}: {errmsg})")]
    Rejected { errcode: i64, errmsg: String },
    /// The client itself could not be built (base URL not http(s), TLS setup).
    #[error("invalid WeChat client configuration: {0}")]
    InvalidConfig(String),
}

/// WeChat's "system busy": the only errcode worth retrying, as the code was not consumed.
pub(crate) const BUSY: i64 = -1;

impl WeChatError {
    /// Sorts a non-zero errcode (other than -1, which the client retries, and the access-token
    /// errcodes, which it answers by fetching a new token).
    pub(crate) fn from_errcode(errcode: i64, errmsg: String) -> Self {
        match errcode {
            40029 | 40163 => Self::InvalidCode { errcode },
            40226 => Self::HighRisk,
            45011 => Self::RateLimited,
            40013 | 40125 => Self::Misconfigured { errcode },
            BUSY => Self::Unavailable("WeChat busy (errcode -1)".into()),
            _ => Self::Rejected {
                errcode,
                // Bounded: it ends up in logs.
                errmsg: errmsg.chars().take(200).collect(),
            },
        }
    }
}
