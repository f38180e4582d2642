//! Ending sessions other than by their own logout: one of the user's sessions from another
//! (`DELETE /v1/me/sessions/{id}`), or every open session of a user (block, erasure, an
//! administrator's revoke-all).
//!
//! "Every open session" comes from the `sessions` read model, which trails the log by a few
//! milliseconds; we wait for it to catch up first, and a session it still misses is over all
//! the same after a block or an erasure (`Session::in_force` compares log positions). So the
//! `SessionRevoked` events are the record; the rule does not depend on them.

use std::time::Duration;

use domain::{RevocationReason, SessionId, UserId};
use infra::personal_data::UserKey;

use super::command::{Command, Decision};
use super::context::Context;
use super::error::UseCaseError;
use super::services::Services;
use super::sessions::session_batch;
use super::streams::{load_session, user_key};

/// How long a revocation waits for the `sessions` read model to reach the log's head.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Why sessions are being revoked (by the context's actor).
#[derive(Debug, Clone)]
pub struct Revocation {
    pub reason: RevocationReason,
    /// An administrator's free-text reason (personal data: it goes into the event only).
    pub note: Option<String>,
}

/// Revokes the session `session_id` of `user_id` (reason `user_action`). Another user's
/// session, or one that never was, is `NotFound` alike; an ended one is left as it is.
pub async fn revoke_own_session(
    state: &Services,
    user_id: UserId,
    session_id: SessionId,
    ctx: &Context,
) -> Result<(), UseCaseError> {
    let (session, _) = load_session(state.store.as_ref(), session_id).await?;
    if session.user_id() != Some(user_id) {
        return Err(UseCaseError::NotFound);
    }
    let revocation = Revocation {
        reason: RevocationReason::UserAction,
        note: None,
    };
    let key = user_key(state, user_id).await?;
    revoke(state, session_id, &revocation, key.as_ref(), ctx).await?;
    Ok(())
}

/// Revokes every session of the user the read model holds as open, once it has applied the
/// log up to `through` (a position; the log's head when `None`). Returns the sessions that
/// were ended by this call.
pub async fn revoke_open_sessions(
    state: &Services,
    user_id: UserId,
    through: Option<i64>,
    revocation: &Revocation,
    ctx: &Context,
) -> Result<Vec<SessionId>, UseCaseError> {
    let through = match through {
        Some(position) => position,
        None => state.read_models.head().await?,
    };
    if !state
        .read_models
        .wait_for_sessions(through, CATCH_UP)
        .await?
    {
        // The rule holds without the events (see the module's comment); the record may miss
        // a session or two.
        tracing::warn!(%user_id, through, "sessions read model behind: revoking what it lists");
    }
    // Sealed under the user's data key (`None` once erased: the note is then left out).
    let key = user_key(state, user_id).await?;
    let mut revoked = Vec::new();
    for id in state.read_models.session_ids_of(user_id.as_uuid()).await? {
        let session_id = SessionId::from_uuid(id);
        if revoke(state, session_id, revocation, key.as_ref(), ctx).await? {
            revoked.push(session_id);
        }
    }
    Ok(revoked)
}

/// Appends `SessionRevoked` unless the session has ended already; true if it did.
async fn revoke(
    state: &Services,
    session_id: SessionId,
    revocation: &Revocation,
    key: Option<&UserKey>,
    ctx: &Context,
) -> Result<bool, UseCaseError> {
    // A concurrent refresh may append first: the executor decides again on the new state.
    Command::new("revoke_session")
        .execute(state, move |_| async move {
            let (session, version) = load_session(state.store.as_ref(), session_id).await?;
            let events = session.decide_revoke(revocation.reason, revocation.note.clone())?;
            if events.is_empty() {
                return Ok(Decision::Unchanged(false));
            }
            let batch = session_batch(state, &session, version, &events, key, ctx)?;
            Ok(Decision::Append(batch, true))
        })
        .await
}
