//! The session lifecycle after login: refresh-token rotation and logout.

use domain::{Actor, Session, SessionError, SessionEvent, SessionId, UserId};
use infra::store::{AppendBatch, AppendError, ExpectedVersion};

use super::streams::{load_session, load_user, to_new_events, user_key, LoadedUser};
use crate::http::extract::RequestContext;
use crate::http::ApiError;
use crate::state::AppState;

/// Tokens minted for an active session.
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
}

pub fn issue_tokens(
    state: &AppState,
    user_id: UserId,
    session_id: SessionId,
    appid: &domain::AppId,
    generation: u32,
) -> Result<IssuedTokens, ApiError> {
    let access_token = state
        .access_tokens
        .issue(user_id, session_id, appid, state.clock.now())
        .map_err(ApiError::internal)?;
    Ok(IssuedTokens {
        access_token,
        expires_in: state.access_tokens.ttl().as_secs(),
        refresh_token: state.refresh_tokens.issue(session_id, generation),
    })
}

/// Rotates a refresh token. Presenting an already-rotated one revokes the session: whoever
/// holds the newer token loses it too, which is the point (the family is presumed stolen).
pub async fn refresh(
    state: &AppState,
    refresh_token: &str,
    ctx: &RequestContext,
) -> Result<IssuedTokens, ApiError> {
    let (session_id, presented) = state
        .refresh_tokens
        .verify(refresh_token)
        .map_err(|_| ApiError::Unauthorized("invalid refresh token"))?;
    // One retry absorbs a concurrent rotation; the second decision then sees the reuse.
    for _ in 0..3 {
        let (session, version) = load_session(state.store.as_ref(), session_id).await?;
        let Some(owner) = session.user_id() else {
            return Err(ApiError::Unauthorized("the session has ended"));
        };
        let LoadedUser { user, key, .. } = load_user(state, owner).await?;
        let now = state.clock.now();
        // Ended, past a lifetime, its user blocked or erased, or older than the user's last
        // block or unblock: one answer for all, so a stolen refresh token tells its holder
        // nothing about the account (a blocked user's app learns it at the next login).
        if !session.in_force(&user, now, &state.session_lifetime) {
            return Err(ApiError::Unauthorized("the session has ended"));
        }
        let Session::Active { user_id, appid, .. } = &session else {
            return Err(ApiError::Unauthorized("the session has ended"));
        };
        let events = session
            .decide_refresh(presented, now, &state.session_lifetime)
            .map_err(|err| match err {
                SessionError::Ended | SessionError::NotFound | SessionError::Expired => {
                    ApiError::Unauthorized("the session has ended")
                }
                _ => ApiError::Unauthorized("invalid refresh token"),
            })?;
        let metadata = ctx.metadata(Actor::User(*user_id), Some(appid));
        let batch = AppendBatch::default().stream(
            session_id.stream(),
            ExpectedVersion::after(version),
            to_new_events(&events, &metadata, state.clock.now(), key.as_ref())?,
        );
        match state.store.append(batch).await {
            Ok(_) => {}
            Err(AppendError::VersionConflict(_)) => continue,
            Err(err) => return Err(err.into()),
        }
        return match events.as_slice() {
            [SessionEvent::SessionRefreshed { generation }] => {
                issue_tokens(state, *user_id, session_id, appid, *generation)
            }
            _ => {
                tracing::warn!(%session_id, "rotated refresh token reused: session revoked");
                Err(ApiError::Unauthorized(
                    "refresh token reuse detected: the session is revoked",
                ))
            }
        };
    }
    Err(ApiError::Conflict(
        "the session changed concurrently; retry".into(),
    ))
}

pub async fn logout(
    state: &AppState,
    session_id: SessionId,
    session: &Session,
    version: usize,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    let events = session
        .decide_logout()
        .map_err(|_| ApiError::Unauthorized("the session has ended"))?;
    let (Some(user_id), Session::Active { appid, .. }) = (session.user_id(), session) else {
        return Err(ApiError::Unauthorized("the session has ended"));
    };
    let metadata = ctx.metadata(Actor::User(user_id), Some(appid));
    let key = user_key(state, user_id).await?;
    let batch = AppendBatch::default().stream(
        session_id.stream(),
        ExpectedVersion::after(version),
        to_new_events(&events, &metadata, state.clock.now(), key.as_ref())?,
    );
    match state.store.append(batch).await {
        Ok(_) => Ok(()),
        // Something else ended or rotated the session meanwhile; logging out again is moot
        // only if it ended, so look once more.
        Err(AppendError::VersionConflict(_)) => {
            let (session, version) = load_session(state.store.as_ref(), session_id).await?;
            if !session.is_active() {
                return Ok(());
            }
            Box::pin(logout(state, session_id, &session, version, ctx)).await
        }
        Err(err) => Err(err.into()),
    }
}
