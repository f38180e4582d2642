//! What a use case answers when it does not succeed: domain refusals, each one variant whatever
//! the command, and failures with their chain kept. `http::error` turns each into its one
//! problem+json answer.

use domain::{AppId, InvalidValue, SessionError, UserError};
use infra::wechat::user_data::UserDataError;
use infra::wechat::WeChatError;

#[derive(Debug, thiserror::Error)]
pub enum UseCaseError {
    /// The input breaks a rule; the text says which.
    #[error("{0}")]
    InvalidInput(String),
    /// The appid is well-formed but not configured here.
    #[error("this appid is not configured")]
    UnknownApp,
    #[error("not found")]
    NotFound,
    /// Not found, saying what is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// The user's personal data was erased: nothing more can be recorded about them.
    #[error("this user's personal data was erased")]
    Erased,
    /// An administrator blocked the user.
    #[error("this user is blocked")]
    Blocked,
    /// The command contradicts the record, or concurrent writers kept winning.
    #[error("{0}")]
    Conflict(String),
    /// Missing or bad credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The session is over (logged out, revoked, past a lifetime, its user blocked or erased):
    /// one answer for all, so a stolen token tells its holder nothing about the account.
    #[error("the session has ended")]
    SessionEnded,
    /// WeChat refused or failed a call made for `appid` (the source says how).
    #[error("WeChat refused or failed a {call:?} call for {appid}")]
    WeChat {
        appid: AppId,
        call: WeChatCall,
        #[source]
        error: WeChatError,
    },
    /// WeChat's encrypted user data failed a check.
    #[error("{0}")]
    UserData(UserDataError),
    /// WeChat's content check found this field (`nickname`) risky: nothing was stored.
    #[error("WeChat's content check rejected the {0}")]
    ContentRejected(&'static str),
    /// An upload is not a PNG, JPEG or WebP image that decodes within the limits.
    #[error("the file is not a PNG, JPEG or WebP image of at most 4096×4096 pixels that decodes")]
    UnsupportedImage,
    /// Too many attempts; try again after this many seconds.
    #[error("too many attempts: retry later")]
    RateLimited { retry_after_secs: u64 },
    /// Anything unexpected, with its chain.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Which WeChat code a call exchanged, so a refused code is named right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeChatCall {
    /// `code2Session`: a `wx.login()` code.
    Login,
    /// `getuserphonenumber`: a phone-number button code.
    PhoneNumber,
}

impl UseCaseError {
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }
}

impl From<UserError> for UseCaseError {
    fn from(err: UserError) -> Self {
        match err {
            UserError::NotRegistered => Self::NotFound,
            UserError::Erased => Self::Erased,
            UserError::Blocked => Self::Blocked,
            UserError::NotAuthorized => Self::Missing("nothing to withdraw: not authorized"),
            UserError::UnionIdMismatch => Self::Conflict(
                "WeChat names a unionid different from the one this user holds".into(),
            ),
            UserError::InvalidReason => Self::InvalidInput(err.to_string()),
        }
    }
}

impl From<SessionError> for UseCaseError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::NotFound | SessionError::Ended | SessionError::Expired => {
                Self::SessionEnded
            }
            SessionError::UnknownGeneration => Self::Unauthorized("invalid refresh token"),
            SessionError::AlreadyStarted => Self::Conflict(err.to_string()),
        }
    }
}

impl From<InvalidValue> for UseCaseError {
    fn from(err: InvalidValue) -> Self {
        Self::InvalidInput(err.to_string())
    }
}

impl From<infra::store::StoreError> for UseCaseError {
    fn from(err: infra::store::StoreError) -> Self {
        Self::internal(err)
    }
}

/// An append that could not be applied as decided. The command executor retries a
/// `VersionConflict` itself; what reaches here is a conflict for the caller to retry, or the
/// store's failure with its chain intact.
impl From<infra::store::AppendError> for UseCaseError {
    fn from(err: infra::store::AppendError) -> Self {
        use infra::store::AppendError;
        match err {
            AppendError::VersionConflict(_) => {
                Self::Conflict("the record changed concurrently; retry".into())
            }
            AppendError::ClaimTaken { kind } => {
                Self::Conflict(format!("{kind} already belongs to another user"))
            }
            AppendError::Store(err) => err.into(),
        }
    }
}

impl From<projections::ProjectionError> for UseCaseError {
    fn from(err: projections::ProjectionError) -> Self {
        match err {
            projections::ProjectionError::InvalidCursor => {
                Self::InvalidInput("the cursor is not one this API handed out".into())
            }
            other => Self::internal(other),
        }
    }
}
