//! WeChat's content security around what users type and upload: the nickname checked before
//! it is stored (`msg_sec_check`), an uploaded avatar submitted for the asynchronous image
//! check (`media_check_async`), and WeChat's pushed verdict acted on (a risky avatar removed
//! with `AvatarRejected`). Errors from WeChat never block the user: a nickname that cannot be
//! checked is stored and flagged for review; an avatar whose check fails or asks for review is
//! kept and logged (its verdict has no one to flag it to but the logs).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use domain::profile::SharedProfileFields;
use domain::{AppId, AvatarId, OpenId, UserId};
use infra::store::{AppendBatch, ExpectedVersion, PendingMediaCheck};
use infra::wechat::push::{parse_push, MediaCheck, PushEvent};
use infra::wechat::{AppCredentials, TraceId, Verdict, WeChatError};
use secrecy::SecretString;

use super::command::{Command, Decision};
use super::context::Context;
use super::error::UseCaseError;
use super::profile::edited_profile;
use super::services::Services;
use super::streams::{load_user, to_new_events, LoadedUser};

/// A pending image check older than this is forgotten: WeChat answers within about 30
/// minutes, so a week leaves room for its retries and our outages.
const MEDIA_CHECK_HORIZON_DAYS: i64 = 7;

/// Per-app settings: `IDENTITY_PUSH_TOKENS`, `IDENTITY_CONTENT_CHECKS_DISABLED`.
#[derive(Debug, Default)]
pub struct ContentChecks {
    push_tokens: BTreeMap<AppId, SecretString>,
    disabled: BTreeSet<AppId>,
}

impl ContentChecks {
    /// Refuses a push token or a switch for an app not configured (`IDENTITY_APPS`): a typo
    /// there would silently leave an app unchecked or its pushes unanswered.
    pub fn new(
        apps: &BTreeMap<AppId, AppCredentials>,
        push_tokens: BTreeMap<AppId, SecretString>,
        disabled: BTreeSet<AppId>,
    ) -> anyhow::Result<Self> {
        for (appid, variable) in push_tokens
            .keys()
            .map(|a| (a, "IDENTITY_PUSH_TOKENS"))
            .chain(
                disabled
                    .iter()
                    .map(|a| (a, "IDENTITY_CONTENT_CHECKS_DISABLED")),
            )
        {
            anyhow::ensure!(
                apps.contains_key(appid),
                "{variable} names {appid}, which is not in IDENTITY_APPS"
            );
        }
        for appid in apps.keys() {
            if !disabled.contains(appid) && !push_tokens.contains_key(appid) {
                tracing::warn!(%appid, "content checks are on but the app has no push token \
                    (IDENTITY_PUSH_TOKENS): its nicknames are checked, its avatars are not");
            }
        }
        Ok(Self {
            push_tokens,
            disabled,
        })
    }

    /// Whether the app's nicknames and avatars go to WeChat's checks.
    pub fn enabled_for(&self, appid: &AppId) -> bool {
        !self.disabled.contains(appid)
    }

    /// The app's message-push token, if it has one.
    pub fn push_token(&self, appid: &AppId) -> Option<&SecretString> {
        self.push_tokens.get(appid)
    }
}

/// What the nickname check decided about a nickname that may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicknameCheck {
    Clear,
    /// Stored, and flagged for a person to look at.
    Review,
}

/// Checks a nickname `openid` typed in `appid`'s mini-program. `risky` refuses it
/// (`ContentRejected`); `review`, or WeChat failing to answer, lets it be stored flagged.
pub async fn check_nickname(
    state: &Services,
    appid: &AppId,
    openid: &OpenId,
    nickname: &str,
) -> Result<NicknameCheck, UseCaseError> {
    if !state.content.enabled_for(appid) {
        return Ok(NicknameCheck::Clear);
    }
    let app = state.apps.get(appid).ok_or(UseCaseError::UnknownApp)?;
    match state.wechat.msg_sec_check(app, openid, nickname).await {
        Ok(Verdict::Pass { .. }) => Ok(NicknameCheck::Clear),
        Ok(Verdict::Review { label }) => {
            tracing::info!(%appid, label, "WeChat asks for a review of a nickname");
            Ok(NicknameCheck::Review)
        }
        Ok(Verdict::Risky { label }) => {
            tracing::info!(%appid, label, "WeChat rejected a nickname");
            Err(UseCaseError::ContentRejected("nickname"))
        }
        Err(error) => {
            log_failure(appid, "msg_sec_check", &error);
            Ok(NicknameCheck::Review)
        }
    }
}

/// Submits an uploaded avatar to WeChat's asynchronous image check and remembers its trace
/// id for the verdict. Never fails the caller: an error is logged and the avatar stays.
/// `media_url` must be the image's public URL (WeChat fetches it).
pub async fn submit_avatar(
    state: &Services,
    appid: &AppId,
    openid: &OpenId,
    user_id: UserId,
    avatar_id: AvatarId,
    media_url: &str,
) {
    if !state.content.enabled_for(appid) {
        return;
    }
    // Without a push token WeChat's verdict could not reach us: submitting would spend the
    // app's quota for nothing (startup warns about such apps).
    if state.content.push_token(appid).is_none() {
        return;
    }
    let Some(app) = state.apps.get(appid) else {
        tracing::warn!(%appid, "no credentials to submit an avatar for checking");
        return;
    };
    let trace_id = match state.wechat.media_check_async(app, openid, media_url).await {
        Ok(trace_id) => trace_id,
        Err(error) => {
            log_failure(appid, "media_check_async", &error);
            return;
        }
    };
    let now = state.clock.now();
    let check = PendingMediaCheck {
        appid: appid.to_string(),
        user_id,
        avatar_id,
        created_at: now,
    };
    let purge_before = now - Duration::days(MEDIA_CHECK_HORIZON_DAYS);
    if let Err(error) = state
        .store
        .record_media_check(trace_id.as_str(), &check, purge_before)
        .await
    {
        tracing::error!(%appid, error = %error, "could not remember a submitted image check");
    }
}

/// Logs a failed check with WeChat's errcode (never the content or the openid).
fn log_failure(appid: &AppId, api: &'static str, error: &WeChatError) {
    let errcode = match error {
        WeChatError::Rejected { errcode, .. }
        | WeChatError::InvalidCode { errcode }
        | WeChatError::Misconfigured { errcode }
        | WeChatError::AccessTokenRejected { errcode } => Some(*errcode),
        WeChatError::RateLimited => Some(45011),
        _ => None,
    };
    tracing::warn!(%appid, api, errcode, error = %error, "WeChat content check failed; flagged for review");
}

/// A push from WeChat, its signature already verified: acts on a `wxa_media_check` verdict
/// for a trace we submitted; acknowledges anything else. Safe to repeat (WeChat retries).
pub async fn handle_push(
    state: &Services,
    appid: &AppId,
    body: &[u8],
    ctx: &Context,
) -> Result<(), UseCaseError> {
    let check = match parse_push(body) {
        Ok(PushEvent::MediaCheck(check)) => check,
        Ok(PushEvent::Other) => return Ok(()),
        Err(error) => return Err(UseCaseError::InvalidInput(error.to_string())),
    };
    let MediaCheck {
        appid: named,
        trace_id,
        outcome,
    } = check;
    if named != appid.as_str() {
        tracing::warn!(%appid, "a media check verdict names another app; ignored");
        return Ok(());
    }
    let Some(pending) = state
        .store
        .media_check(appid.as_str(), trace_id.as_str())
        .await?
    else {
        tracing::debug!(%appid, %trace_id, "a verdict for no pending check (handled or forgotten)");
        return Ok(());
    };
    match outcome {
        Ok(Verdict::Risky { label }) => {
            reject_avatar(state, &pending, label, ctx).await?;
            // Gone even when the profile had moved on from it (`AvatarRejected` then changes
            // nothing else): a rejected image is never served again.
            state.store.delete_avatar(pending.avatar_id).await?;
            tracing::info!(%appid, user_id = %pending.user_id, label, "WeChat rejected an avatar; removed");
        }
        Ok(Verdict::Review { label }) => {
            tracing::warn!(%appid, user_id = %pending.user_id,
                label, "WeChat asks for a review of an avatar");
        }
        Ok(Verdict::Pass { .. }) => {}
        Err(errcode) => {
            tracing::warn!(%appid, user_id = %pending.user_id,
                errcode, "WeChat could not check an avatar");
        }
    }
    forget(state, &trace_id).await
}

async fn forget(state: &Services, trace_id: &TraceId) -> Result<(), UseCaseError> {
    Ok(state.store.forget_media_check(trace_id.as_str()).await?)
}

/// Records `AvatarRejected` on the user's stream (actor: system), the profile without the
/// avatar sealed on the state each attempt loads.
async fn reject_avatar(
    state: &Services,
    pending: &PendingMediaCheck,
    label: u32,
    ctx: &Context,
) -> Result<(), UseCaseError> {
    let (user_id, avatar_id) = (pending.user_id, pending.avatar_id);
    let appid = AppId::parse(&pending.appid).ok();
    Command::new("reject_avatar")
        .execute(state, |_| {
            let appid = appid.clone();
            async move {
                let LoadedUser { user, version, key } = load_user(state, user_id).await?;
                let without_it = match &key {
                    Some(key) if user.profile.is_some() && user.avatar == Some(avatar_id) => {
                        let (sealed, fields) = edited_profile(key, &user, |profile| {
                            profile.remove("avatar_url");
                        })?;
                        Some(SharedProfileFields { sealed, fields })
                    }
                    _ => None,
                };
                let events = match user.decide_reject_avatar(avatar_id, label, without_it) {
                    Ok(events) => events,
                    // The user is gone from the log's point of view: nothing to clear.
                    Err(domain::UserError::NotRegistered) => Vec::new(),
                    Err(err) => return Err(err.into()),
                };
                if events.is_empty() {
                    return Ok(Decision::Unchanged(()));
                }
                let metadata = ctx.metadata(appid.as_ref());
                let batch = AppendBatch::default().stream(
                    user_id.stream(),
                    ExpectedVersion::after(version),
                    to_new_events(&events, &metadata, state.clock.now(), key.as_ref())?,
                );
                Ok(Decision::Append(batch, ()))
            }
        })
        .await
}
