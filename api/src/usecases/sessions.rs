//! The session lifecycle after login: refresh-token rotation and logout, each decided by the
//! `Session` aggregate.

use domain::{Actor, AppId, Session, SessionEvent, SessionId, UserId};
use infra::personal_data::UserKey;
use infra::store::{AppendBatch, ExpectedVersion};
use infra::tokens::AccessClaims;

use super::command::{Command, Decision};
use super::context::Context;
use super::error::UseCaseError;
use super::ops_metrics::REUSE_DETECTED;
use super::services::Services;
use super::streams::{
    load_session, load_session_of_user_in_force, load_user, to_new_events, user_key, LoadedUser,
};
use super::views::{issue_tokens, TokenResponse};

/// What a presented refresh token did to its session.
enum Rotation {
    /// The next generation, for `user_id` in `appid`.
    Rotated {
        user_id: UserId,
        appid: AppId,
        generation: u32,
    },
    /// An already-rotated token: the session is revoked.
    Reused,
}

/// Rotates a refresh token. Presenting an already-rotated one revokes the session: whoever
/// holds the newer token loses it too, which is the point (the family is presumed stolen).
pub async fn refresh(
    state: &Services,
    refresh_token: &str,
    ctx: &Context,
) -> Result<TokenResponse, UseCaseError> {
    let rotated = rotate(state, refresh_token, ctx).await;
    state.metrics.token_refresh(match &rotated {
        Ok((_, Rotation::Rotated { .. })) => "refreshed",
        Ok((_, Rotation::Reused)) => REUSE_DETECTED,
        Err(UseCaseError::Internal(_)) => "error",
        Err(_) => "refused",
    });
    match rotated? {
        (
            session_id,
            Rotation::Rotated {
                user_id,
                appid,
                generation,
            },
        ) => issue_tokens(state, user_id, session_id, &appid, generation),
        (session_id, Rotation::Reused) => {
            tracing::warn!(%session_id, "rotated refresh token reused: session revoked");
            Err(UseCaseError::Unauthorized(
                "refresh token reuse detected: the session is revoked",
            ))
        }
    }
}

/// Decides and records what the presented token does to its session.
async fn rotate(
    state: &Services,
    refresh_token: &str,
    ctx: &Context,
) -> Result<(SessionId, Rotation), UseCaseError> {
    let (session_id, presented) = state
        .refresh_tokens
        .verify(refresh_token)
        .map_err(|_| UseCaseError::Unauthorized("invalid refresh token"))?;
    // A concurrent rotation makes the next decision see the reuse.
    let rotation = Command::new("refresh_session")
        .execute(state, move |_| async move {
            let (session, version) = load_session(state.store.as_ref(), session_id).await?;
            let owner = session.user_id().ok_or(UseCaseError::SessionEnded)?;
            let LoadedUser { user, key, .. } = load_user(state, owner).await?;
            let now = state.clock.now();
            // Ended, past a lifetime, its user blocked or erased, or older than the user's
            // last block or unblock: one answer for all (`SessionEnded`).
            if !session.in_force(&user, now, &state.session_lifetime) {
                return Err(UseCaseError::SessionEnded);
            }
            let events = session.decide_refresh(presented, now, &state.session_lifetime)?;
            let rotation = match (events.as_slice(), &session) {
                (
                    [SessionEvent::SessionRefreshed { generation }],
                    Session::Active { user_id, appid, .. },
                ) => Rotation::Rotated {
                    user_id: *user_id,
                    appid: appid.clone(),
                    generation: *generation,
                },
                _ => Rotation::Reused,
            };
            let ctx = ctx.acting_as(Actor::User(owner));
            let batch = session_batch(state, &session, version, &events, key.as_ref(), &ctx)?;
            Ok(Decision::Append(batch, rotation))
        })
        .await?;
    Ok((session_id, rotation))
}

/// Ends the caller's own session, as loaded when its access token was checked. Should
/// something else end it meanwhile, the logout is moot and succeeds.
pub async fn logout(
    state: &Services,
    session_id: SessionId,
    session: Session,
    version: usize,
    ctx: &Context,
) -> Result<(), UseCaseError> {
    let user_id = session.user_id().ok_or(UseCaseError::SessionEnded)?;
    let key = user_key(state, user_id).await?;
    let (first, key) = (&(session, version), key.as_ref());
    Command::new("logout")
        .execute(state, move |attempt| async move {
            let (session, version) = if attempt == 1 {
                first.clone()
            } else {
                let again = load_session(state.store.as_ref(), session_id).await?;
                if !again.0.is_active() {
                    return Ok(Decision::Unchanged(()));
                }
                again
            };
            let events = session.decide_logout()?;
            let batch = session_batch(state, &session, version, &events, key, ctx)?;
            Ok(Decision::Append(batch, ()))
        })
        .await
}

/// The claims of an access token that is genuine, unexpired and of a session still in force
/// (so a logout, revocation, block or session expiry shows at once); `None` otherwise.
pub async fn introspect(
    state: &Services,
    token: &str,
) -> Result<Option<AccessClaims>, UseCaseError> {
    let Ok(claims) = state.access_tokens.verify(token) else {
        return Ok(None);
    };
    let in_force = load_session_of_user_in_force(
        state,
        claims.sid,
        claims.sub,
        state.clock.now(),
        &state.session_lifetime,
    )
    .await?;
    Ok(in_force.map(|_| claims))
}

/// The append of `events`, decided by the active `session`, to its stream; the actor is the
/// context's, in the session's app.
pub fn session_batch(
    state: &Services,
    session: &Session,
    version: usize,
    events: &[SessionEvent],
    key: Option<&UserKey>,
    ctx: &Context,
) -> Result<AppendBatch, UseCaseError> {
    let Session::Active { id, appid, .. } = session else {
        return Err(UseCaseError::SessionEnded);
    };
    let metadata = ctx.metadata(Some(appid));
    Ok(AppendBatch::default().stream(
        id.stream(),
        ExpectedVersion::after(version),
        to_new_events(events, &metadata, state.clock.now(), key)?,
    ))
}
