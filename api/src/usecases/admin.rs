//! Admin writes: each one is an event on the user's stream whose actor is the API key.

use domain::{Actor, UserError, UserId};
use infra::store::{AppendBatch, AppendError, ExpectedVersion};

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
pub async fn change_status(
    state: &AppState,
    user_id: UserId,
    change: StatusChange,
    reason: &str,
    key_id: &str,
    ctx: &RequestContext,
) -> Result<bool, ApiError> {
    // A concurrent login or admin action may append first: decide again on the new state.
    for _ in 0..3 {
        let LoadedUser { user, version, key } = load_user(state, user_id).await?;
        let decided = match change {
            StatusChange::Block => user.decide_block(reason),
            StatusChange::Unblock => user.decide_unblock(reason),
        };
        let events = decided.map_err(|err| match err {
            UserError::NotRegistered => ApiError::NotFound,
            other => ApiError::InvalidRequest(other.to_string()),
        })?;
        if events.is_empty() {
            return Ok(false);
        }
        let metadata = ctx.metadata(Actor::Admin(key_id.to_owned()), None);
        let batch = AppendBatch::default().stream(
            user_id.stream(),
            ExpectedVersion::after(version),
            to_new_events(&events, &metadata, state.clock.now(), key.as_ref())?,
        );
        match state.store.append(batch).await {
            Ok(_) => return Ok(true),
            Err(AppendError::VersionConflict(_)) => continue,
            Err(err) => return Err(ApiError::internal(anyhow::anyhow!("{err}"))),
        }
    }
    Err(ApiError::Conflict(
        "the user changed concurrently; retry".into(),
    ))
}
