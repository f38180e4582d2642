//! `/console/keys`: the API keys (never a secret), creating one (its token shown once) and
//! revoking one behind a confirmation. Writes need `admin:write`; a new key gets only scopes
//! the signed-in key holds, and only a key holding all of a key's scopes revokes it
//! (`key_admin`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use infra::api_keys::{Scope, StoredApiKey};

use super::csrf::Posted;
use super::i18n::Lang;
use super::key_admin;
use super::render::{page, Chrome};
use super::session::ConsoleSession;
use crate::http::state::AppState;
use crate::http::ApiError;

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<StoredApiKey>,
    /// The scopes a new key may get: the session's own.
    grantable: Vec<&'static str>,
    max_name: usize,
    own_key: String,
}

/// `GET /console/keys`
pub async fn list(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
) -> Result<Response, ApiError> {
    page(&KeysPage {
        keys: key_admin::list(state.store.as_ref()).await?,
        grantable: session.scopes.iter().map(|s| s.as_str()).collect(),
        max_name: key_admin::MAX_NAME_CHARS,
        own_key: session.key_id.clone(),
        chrome: Chrome::of(&session, lang, "keys"),
    })
}

#[derive(Template)]
#[template(path = "console/key_created.html")]
struct KeyCreatedPage {
    chrome: Chrome,
    key: StoredApiKey,
    token: String,
}

/// `POST /console/keys` (`name`, one `scope` field per scope, `csrf`): the new key's token,
/// on this page only.
pub async fn create(
    State(state): State<AppState>,
    lang: Lang,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let session = posted.session;
    session.require(Scope::AdminWrite)?;
    let form = &posted.form;
    let name = form
        .iter()
        .find(|(k, _)| k == "name")
        .map_or("", |(_, v)| v.as_str());
    let name = key_admin::key_name(name)?;
    let requested: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .take(Scope::ALL.len() + 1)
        .map(|(_, v)| v.clone())
        .collect();
    let scopes = key_admin::granted_scopes(&session.scopes, &requested)?;
    let key = key_admin::create(
        state.store.as_ref(),
        &session.key_id,
        &name,
        scopes,
        state.clock.now(),
    )
    .await?;
    page(&KeyCreatedPage {
        chrome: Chrome::of(&session, lang, "keys"),
        key: key.stored.clone(),
        token: key.token.clone(),
    })
}

#[derive(Template)]
#[template(path = "console/key_revoke.html")]
struct RevokePage {
    chrome: Chrome,
    key: StoredApiKey,
    own: bool,
}

/// `GET /console/keys/{key_id}/revoke`: which key, and what revoking it ends.
pub async fn confirm_revoke(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    session.require(Scope::AdminWrite)?;
    let mut key = stored(&state, &key_id).await?;
    key_admin::may_revoke(&session.scopes, &key)?;
    key.secret_hash.clear();
    page(&RevokePage {
        own: key.key_id == session.key_id,
        key,
        chrome: Chrome::of(&session, lang, "keys"),
    })
}

/// `POST /console/keys/{key_id}/revoke`: revokes it; revoking the session's own key signs out.
pub async fn revoke(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let session = posted.session;
    session.require(Scope::AdminWrite)?;
    let key = stored(&state, &key_id).await?;
    key_admin::may_revoke(&session.scopes, &key)?;
    key_admin::revoke(
        state.store.as_ref(),
        &session.key_id,
        &key.key_id,
        state.clock.now(),
    )
    .await?;
    if key.key_id != session.key_id {
        return Ok(Redirect::to("/console/keys").into_response());
    }
    session.sign_out(&state).await
}

/// The stored key `key_id` names (16 hex digits, as lists show it), else 404.
async fn stored(state: &AppState, key_id: &str) -> Result<StoredApiKey, ApiError> {
    if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::NotFound);
    }
    state.store.api_key(key_id).await?.ok_or(ApiError::NotFound)
}
