//! The four admin actions on a user (block, unblock, revoke sessions, erase): a confirmation
//! page naming the user, then a post that runs the same use case as the admin API, with the
//! console session's key as the actor (audited as `admin:{key id}`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use domain::Actor;
use infra::api_keys::Scope;
use serde::Deserialize;

use super::csrf::Posted;
use super::i18n::Lang;
use super::render::{page, Chrome};
use super::session::ConsoleSession;
use super::users::UserRow;
use crate::http::extract::RequestContext;
use crate::http::state::AppState;
use crate::http::ApiError;
use crate::usecases::admin::{self, StatusChange};
use crate::usecases::{lookup, profile};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Block,
    Unblock,
    RevokeSessions,
    Erase,
}

impl Action {
    fn parse(segment: &str) -> Result<Self, ApiError> {
        match segment {
            "block" => Ok(Self::Block),
            "unblock" => Ok(Self::Unblock),
            "revoke-sessions" => Ok(Self::RevokeSessions),
            "erase" => Ok(Self::Erase),
            _ => Err(ApiError::NotFound),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ActionPath {
    id: String,
    action: String,
}

impl ActionPath {
    fn parse(&self) -> Result<(domain::UserId, Action), ApiError> {
        let action = Action::parse(&self.action)?;
        let id = domain::UserId::parse(&self.id)
            .map_err(|_| ApiError::InvalidRequest("the user id must be a UUID".into()))?;
        Ok((id, action))
    }
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    user: UserRow,
    question: &'static str,
    warning: Option<&'static str>,
    button: &'static str,
    danger: bool,
    /// Whether the form asks for a reason (erase records none).
    asks_reason: bool,
    action_url: String,
}

/// `GET /console/users/{id}/{action}`: what is about to happen, to whom.
pub async fn confirm(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
    Path(path): Path<ActionPath>,
) -> Result<Response, ApiError> {
    let (id, action) = path.parse()?;
    session.require(Scope::AdminWrite)?;
    let user = UserRow::from(lookup::user(&state, id).await?);
    let t = lang.messages();
    let (question, warning, button, danger) = match action {
        Action::Block => (t.confirm_block, None, t.action_block, true),
        Action::Unblock => (t.confirm_unblock, None, t.action_unblock, false),
        Action::RevokeSessions => (
            t.confirm_revoke_sessions,
            None,
            t.action_revoke_sessions,
            false,
        ),
        Action::Erase => (t.confirm_erase, Some(t.erase_warning), t.action_erase, true),
    };
    page(&ConfirmPage {
        chrome: Chrome::of(&session, lang, "users"),
        action_url: format!("/console/users/{}/{}", user.user_id, path.action),
        user,
        question,
        warning,
        button,
        danger,
        asks_reason: action != Action::Erase,
    })
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    reason: Option<String>,
}

/// The reason recorded when the form gives none (the admin API requires one).
const NO_REASON: &str = "by an administrator in the console";

/// `POST /console/users/{id}/{action}`: done, then back to the user's page.
pub async fn perform(
    State(state): State<AppState>,
    Path(path): Path<ActionPath>,
    request: RequestContext,
    posted: Posted<ActionForm>,
) -> Result<Response, ApiError> {
    let Posted { session, form } = posted;
    session.require(Scope::AdminWrite)?;
    let (id, action) = path.parse()?;
    let ctx = request.acting_as(Actor::Admin(session.key_id.clone()));
    let reason = form
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(NO_REASON);
    match action {
        Action::Block => {
            admin::change_status(&state, id, StatusChange::Block, reason, &ctx).await?;
        }
        Action::Unblock => {
            admin::change_status(&state, id, StatusChange::Unblock, reason, &ctx).await?;
        }
        Action::RevokeSessions => {
            admin::revoke_sessions(&state, id, reason, &ctx).await?;
        }
        Action::Erase => profile::erase(&state, id, &ctx).await?,
    }
    tracing::info!(key_id = %session.key_id, action = ?action, "console admin action");
    Ok(Redirect::to(&format!("/console/users/{id}")).into_response())
}
