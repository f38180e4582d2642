//! Admin writes: each one is an event on the user's stream (or, for sessions, on each session's
//! stream) whose actor is the API key.

use domain::{Actor, RevocationReason, SessionId, UserError, UserId};
use infra::store::{AppendBatch, AppendError, ExpectedVersion};

use super::revocation::{revoke_open_sessions, Revocation};
use super::streams::{load_user, to_new_events, LoadedUser};
use crate::http::extract::RequestContext;
use crate::http::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Block,
    Unblock,
}

/// Blocks or unblocks a user. Returns whether anything changed (a repeated block is a no-op).
/// A block also revokes every open session (again on a repeated block, which finishes one cut
/// short), so an unblock later revives none.
pub async fn change_status(
    state: &AppState,
    user_id: UserId,
    change: StatusChange,
    reason: &str,
    key_id: &str,
    ctx: &RequestContext,
) -> Result<bool, ApiError> {
    let (changed, through) = record_status(state, user_id, change, reason, key_id, ctx).await?;
    if change == StatusChange::Block {
        let revocation = Revocation {
            reason: RevocationReason::UserBlocked,
            note: None,
            actor: Actor::Admin(key_id.to_owned()),
        };
        revoke_open_sessions(state, user_id, through, &revocation, ctx).await?;
    }
    Ok(changed)
}

/// Appends the status change; whether it changed anything, and the position it was recorded at.
async fn record_status(
    state: &AppState,
    user_id: UserId,
    change: StatusChange,
    reason: &str,
    key_id: &str,
    ctx: &RequestContext,
) -> Result<(bool, Option<i64>), ApiError> {
    // A concurrent login or admin action may append first: decide again on the new state.
    for _ in 0..3 {
        let LoadedUser { user, version, key } = load_user(state, user_id).await?;
        let decided = match change {
            StatusChange::Block => user.decide_block(reason),
            StatusChange::Unblock => user.decide_unblock(reason),
        };
        let events = decided.map_err(admin_error)?;
        if events.is_empty() {
            return Ok((false, None));
        }
        let metadata = ctx.metadata(Actor::Admin(key_id.to_owned()), None);
        let batch = AppendBatch::default().stream(
            user_id.stream(),
            ExpectedVersion::after(version),
            to_new_events(&events, &metadata, state.clock.now(), key.as_ref())?,
        );
        match state.store.append(batch).await {
            Ok(recorded) => return Ok((true, recorded.last().map(|e| e.position))),
            Err(AppendError::VersionConflict(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::Conflict(
        "the user changed concurrently; retry".into(),
    ))
}

fn admin_error(err: UserError) -> ApiError {
    match err {
        UserError::NotRegistered => ApiError::NotFound,
        UserError::Erased => ApiError::Conflict("this user's personal data was erased".into()),
        other => ApiError::InvalidRequest(other.to_string()),
    }
}

/// An administrator revokes every open session of the user; `reason` (1 to 500 characters)
/// goes into each `SessionRevoked` as its `note`. Returns the sessions ended.
pub async fn revoke_sessions(
    state: &AppState,
    user_id: UserId,
    reason: &str,
    key_id: &str,
    ctx: &RequestContext,
) -> Result<Vec<SessionId>, ApiError> {
    let LoadedUser { user, .. } = load_user(state, user_id).await?;
    let note = user.decide_revoke_sessions(reason).map_err(admin_error)?;
    let revocation = Revocation {
        reason: RevocationReason::AdminAction,
        note: Some(note),
        actor: Actor::Admin(key_id.to_owned()),
    };
    revoke_open_sessions(state, user_id, None, &revocation, ctx).await
}
