//! What the use cases answer the mini-program: the user as it sees them (built from the user's
//! stream, so a login or a profile change shows at once, with no projection lag, personal data
//! opened with the user's key as it was loaded with the stream) and the tokens of a session.

use domain::{AppId, OpenId, SessionId, UnionId, UserId};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::UseCaseError;
use super::services::Services;
use super::streams::{open_with, LoadedUser};

/// The user as the mini-program sees it: the same object in the login answer and `/v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// The openid in the app the token was issued for.
    #[schema(value_type = String)]
    pub openid: OpenId,
    /// Shared by every app of one Open Platform account; null when WeChat gives none.
    #[schema(value_type = Option<String>)]
    pub unionid: Option<UnionId>,
    /// Whether this session's login registered the user.
    pub is_new_user: bool,
    /// Shared profile data (nickname, avatar_url, gender, country, province, city, language);
    /// null until the user shares it, and again after withdrawing it.
    #[schema(value_type = Option<Object>)]
    pub profile: Option<Value>,
    /// The bound phone number (phone_number, pure_phone_number, country_code); null unless
    /// bound.
    #[schema(value_type = Option<Object>)]
    pub phone: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (EdDSA) with `sub` = user id, `sid` = session id, `appid`, `iss`, `iat`, `exp`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; rotates on every refresh. Presenting a used one revokes the session.
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    #[serde(flatten)]
    pub tokens: TokenResponse,
    pub user: UserView,
}

/// The view of a user already loaded (for the session check) or just decided on.
pub fn view_of(
    user_id: UserId,
    loaded: &LoadedUser,
    appid: &AppId,
    is_new_user: bool,
) -> Result<UserView, UseCaseError> {
    let LoadedUser { user, key, .. } = loaded;
    let openid = user
        .openid_for(appid)
        .cloned()
        .ok_or(UseCaseError::Missing("the user has no account in this app"))?;
    let open = |sealed| open_with(key.as_ref(), sealed);
    Ok(UserView {
        user_id,
        openid,
        unionid: user.unionid.clone(),
        is_new_user,
        profile: user.profile.as_ref().map(open).transpose()?.flatten(),
        phone: user.phone.as_ref().map(open).transpose()?.flatten(),
    })
}

/// Tokens for a session in force, at refresh-token `generation`.
pub fn issue_tokens(
    state: &Services,
    user_id: UserId,
    session_id: SessionId,
    appid: &AppId,
    generation: u32,
) -> Result<TokenResponse, UseCaseError> {
    let access_token = state
        .access_tokens
        .issue(user_id, session_id, appid, state.clock.now())
        .map_err(UseCaseError::internal)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.access_tokens.ttl().as_secs(),
        refresh_token: state.refresh_tokens.issue(session_id, generation),
    })
}
