//! The user as the mini-program sees it, built from the user's stream (so a login or a profile
//! change shows at once, with no projection lag), personal data opened with the user's key.

use domain::{AppId, User, UserId};
use serde_json::Value;

use super::profile::open_one;
use crate::http::routes::me::UserView;
use crate::http::ApiError;
use crate::state::AppState;

/// The view of a user already loaded (for the session check) or just decided on.
pub async fn view_of(
    state: &AppState,
    user_id: UserId,
    user: &User,
    appid: &AppId,
    is_new_user: bool,
) -> Result<UserView, ApiError> {
    let openid = user
        .openid_for(appid)
        .cloned()
        .ok_or(ApiError::Missing("the user has no account in this app"))?;
    let profile = match &user.profile {
        Some(sealed) => open_one(state, user_id, sealed).await?,
        None => None,
    };
    let phone: Option<Value> = match &user.phone {
        Some(sealed) => open_one(state, user_id, sealed).await?,
        None => None,
    };
    Ok(UserView {
        user_id,
        openid,
        unionid: user.unionid.clone(),
        is_new_user,
        profile,
        phone,
    })
}
