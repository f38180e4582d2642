//! The user as the mini-program sees it, built from the user's stream (so a login or a profile
//! change shows at once, with no projection lag), personal data opened with the user's key as
//! it was loaded with the stream.

use domain::{AppId, UserId};
use serde_json::Value;

use super::profile::open_with;
use super::streams::LoadedUser;
use crate::http::routes::me::UserView;
use crate::http::ApiError;

/// The view of a user already loaded (for the session check) or just decided on.
pub fn view_of(
    user_id: UserId,
    loaded: &LoadedUser,
    appid: &AppId,
    is_new_user: bool,
) -> Result<UserView, ApiError> {
    let LoadedUser { user, key, .. } = loaded;
    let openid = user
        .openid_for(appid)
        .cloned()
        .ok_or(ApiError::Missing("the user has no account in this app"))?;
    let profile = match &user.profile {
        Some(sealed) => open_with(key.as_ref(), sealed)?,
        None => None,
    };
    let phone: Option<Value> = match &user.phone {
        Some(sealed) => open_with(key.as_ref(), sealed)?,
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
