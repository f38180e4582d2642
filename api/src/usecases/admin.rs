//! Admin writes: each one is an event on the user's stream (or, for sessions, on each session's
//! stream) whose actor is the API key (the context's).

use domain::{RevocationReason, SessionId, UserId};

use super::command::Command;
use super::context::Context;
use super::error::UseCaseError;
use super::revocation::{revoke_open_sessions, Revocation};
use super::services::Services;
use super::streams::{load_user, LoadedUser};
use super::user_writes::{record_on_user, UserWrite};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Block,
    Unblock,
}

/// Blocks or unblocks a user. Returns whether anything changed (a repeated block is a no-op).
/// A block also revokes every open session (again on a repeated block, which finishes one cut
/// short), so an unblock later revives none.
pub async fn change_status(
    state: &Services,
    user_id: UserId,
    change: StatusChange,
    reason: &str,
    ctx: &Context,
) -> Result<bool, UseCaseError> {
    let (name, revoking) = match change {
        StatusChange::Block => ("block_user", Some(RevocationReason::UserBlocked)),
        StatusChange::Unblock => ("unblock_user", None),
    };
    let write = UserWrite::default();
    let (changed, through) = record_on_user(
        state,
        Command::new(name),
        user_id,
        write,
        ctx,
        |user| match change {
            StatusChange::Block => user.decide_block(reason),
            StatusChange::Unblock => user.decide_unblock(reason),
        },
    )
    .await?;
    if let Some(reason) = revoking {
        let revocation = Revocation { reason, note: None };
        revoke_open_sessions(state, user_id, through, &revocation, ctx).await?;
    }
    Ok(changed)
}

/// An administrator revokes every open session of the user; `reason` (1 to 500 characters)
/// goes into each `SessionRevoked` as its `note`. Returns the sessions ended.
pub async fn revoke_sessions(
    state: &Services,
    user_id: UserId,
    reason: &str,
    ctx: &Context,
) -> Result<Vec<SessionId>, UseCaseError> {
    let LoadedUser { user, .. } = load_user(state, user_id).await?;
    let revocation = Revocation {
        reason: RevocationReason::AdminAction,
        note: Some(user.decide_revoke_sessions(reason)?),
    };
    revoke_open_sessions(state, user_id, None, &revocation, ctx).await
}
