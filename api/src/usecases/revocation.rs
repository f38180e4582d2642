//! Ending sessions other than by their own logout: one of the user's sessions from another
//! (`DELETE /v1/me/sessions/{id}`), or every open session of a user (block, erasure, an
//! administrator's revoke-all).
//!
//! "Every open session" comes from the `sessions` read model, which trails the log by a few
//! milliseconds; we wait for it to catch up first, and a session it still misses is over all
//! the same after a block or an erasure (`Session::in_force` compares log positions). So the
//! `SessionRevoked` events are the record; the rule does not depend on them.

use std::time::Duration;

use domain::{Actor, RevocationReason, Session, SessionError, SessionId, UserId};
use infra::store::{AppendBatch, AppendError, ExpectedVersion};

use infra::personal_data::UserKey;

use super::streams::{load_session, to_new_events, user_key};
use crate::http::extract::RequestContext;
use crate::http::ApiError;
use crate::state::AppState;

/// How long a revocation waits for the `sessions` read model to reach the log's head.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Why and by whom sessions are being revoked.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub reason: RevocationReason,
    /// An administrator's free-text reason (personal data: it goes into the event only).
    pub note: Option<String>,
    pub actor: Actor,
}

/// Revokes the session `session_id` of `user_id` (reason `user_action`). Another user's
/// session, or one that never was, is `NotFound` alike; an ended one is left as it is.
pub async fn revoke_own_session(
    state: &AppState,
    user_id: UserId,
    session_id: SessionId,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    let (session, _) = load_session(state.store.as_ref(), session_id).await?;
    if session.user_id() != Some(user_id) {
        return Err(ApiError::NotFound);
    }
    let revocation = Revocation {
        reason: RevocationReason::UserAction,
        note: None,
        actor: Actor::User(user_id),
    };
    let key = user_key(state, user_id).await?;
    revoke(state, session_id, &revocation, key.as_ref(), ctx).await?;
    Ok(())
}

/// Revokes every session of the user the read model holds as open, once it has applied the
/// log up to `through` (a position; the log's head when `None`). Returns the sessions that
/// were ended by this call.
pub async fn revoke_open_sessions(
    state: &AppState,
    user_id: UserId,
    through: Option<i64>,
    revocation: &Revocation,
    ctx: &RequestContext,
) -> Result<Vec<SessionId>, ApiError> {
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

/// After `UserErased`: every open session, reason `user_erased` (none of them worked since the
/// erasure anyway: the record says why they ended).
pub async fn revoke_after_erasure(
    state: &AppState,
    user_id: UserId,
    actor: Actor,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    let revocation = Revocation {
        reason: RevocationReason::UserErased,
        note: None,
        actor,
    };
    revoke_open_sessions(state, user_id, None, &revocation, ctx).await?;
    Ok(())
}

/// Appends `SessionRevoked` unless the session has ended already; true if it did.
async fn revoke(
    state: &AppState,
    session_id: SessionId,
    revocation: &Revocation,
    key: Option<&UserKey>,
    ctx: &RequestContext,
) -> Result<bool, ApiError> {
    // A concurrent refresh may append first: decide again on the new state.
    for _ in 0..3 {
        let (session, version) = load_session(state.store.as_ref(), session_id).await?;
        let events = session
            .decide_revoke(revocation.reason, revocation.note.clone())
            .map_err(|err| match err {
                SessionError::NotFound => ApiError::NotFound,
                other => ApiError::internal(other),
            })?;
        let Session::Active { appid, .. } = &session else {
            return Ok(false);
        };
        let metadata = ctx.metadata(revocation.actor.clone(), Some(appid));
        let batch = AppendBatch::default().stream(
            session_id.stream(),
            ExpectedVersion::after(version),
            to_new_events(&events, &metadata, state.clock.now(), key)?,
        );
        match state.store.append(batch).await {
            Ok(_) => return Ok(true),
            Err(AppendError::VersionConflict(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::Conflict(
        "the session changed concurrently; retry".into(),
    ))
}
