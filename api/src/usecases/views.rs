//! The user as the mini-program sees it, built from the user's stream (so a login or a profile
//! change shows at once, with no projection lag), personal data opened with the user's key.

use domain::{AppId, UserId};
use serde_json::Value;

use super::profile::open_one;
use super::streams::load_user;
use crate::http::routes::me::UserView;
use crate::http::ApiError;
use crate::state::AppState;

pub async fn user_view(
    state: &AppState,
    user_id: UserId,
    appid: &AppId,
    is_new_user: bool,
) -> Result<UserView, ApiError> {
    let (user, _) = load_user(state.store.as_ref(), user_id).await?;
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
        unionid: user.unionid,
        is_new_user,
        profile,
        phone,
    })
}
