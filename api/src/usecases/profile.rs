//! What a logged-in user shares and withdraws: the legacy encrypted profile, the fill-in
//! profile, the phone number; and erasure. Personal data is sealed under the user's data key
//! before it becomes an event.

use domain::profile::{AvatarChange, SharedProfile};
use domain::{
    AppId, Authorization, Claim, OpenId, RevocationReason, SealedPersonalData, UnionId, User,
    UserEvent, UserId, WeChatCode,
};
use infra::personal_data::UserKey;
use infra::wechat::user_data::EncryptedData;
use infra::wechat::SessionKey;
use serde_json::{json, Map, Value};

use super::avatar::avatars_base;
use super::command::Command;
use super::content_check::{check_nickname, NicknameCheck};
use super::context::Context;
use super::encrypted_data::DecryptAttempt;
use super::error::{UseCaseError, WeChatCall};
use super::revocation::{revoke_open_sessions, Revocation};
use super::services::Services;
use super::streams::{load_user, open_with, session_key_context, LoadedUser};
use super::user_writes::{record_on_user, UserWrite};

/// The legacy `getUserProfile` / `getUserInfo` answer, as the mini-program forwards it.
pub struct EncryptedProfile {
    pub raw_data: String,
    pub signature: String,
    pub encrypted_data: String,
    pub iv: String,
}

/// Profile fields we keep, WeChat's names → ours.
const PROFILE_FIELDS: [(&str, &str); 7] = [
    ("nickName", "nickname"),
    ("avatarUrl", "avatar_url"),
    ("gender", "gender"),
    ("country", "country"),
    ("province", "province"),
    ("city", "city"),
    ("language", "language"),
];

/// The user's current `session_key` for this app, as WeChat gave it at the last login.
async fn current_session_key(
    state: &Services,
    appid: &AppId,
    openid: &OpenId,
) -> Result<SessionKey, UseCaseError> {
    let account = state.lookup_index.account(appid, openid);
    let sealed = state
        .store
        .session_key(appid.as_str(), &account)
        .await?
        .ok_or_else(|| {
            UseCaseError::InvalidInput("no WeChat session for this user: log in again".into())
        })?;
    let plain = state
        .session_key_sealer
        .open(&sealed, session_key_context(appid, &account).as_bytes())
        .map_err(UseCaseError::internal)?;
    let text = String::from_utf8(plain).map_err(UseCaseError::internal)?;
    SessionKey::parse(&text).map_err(UseCaseError::internal)
}

/// Verifies, decrypts and records a legacy encrypted profile. Everything after the signature
/// check, the content checks included, fails with one answer (see `encrypted_data`).
pub async fn authorize_profile(
    state: &Services,
    user_id: UserId,
    appid: &AppId,
    payload: &EncryptedProfile,
    ctx: &Context,
) -> Result<(), UseCaseError> {
    let LoadedUser { user, key, .. } = load_user(state, user_id).await?;
    let openid = user
        .openid_for(appid)
        .cloned()
        .ok_or(UseCaseError::NotFound)?;
    let encrypted = EncryptedData::parse(&payload.encrypted_data, &payload.iv)
        .map_err(UseCaseError::UserData)?;
    // No key (never logged in, or retired after too many failures): nothing to attempt, so
    // nothing is counted; the answer asks for a new login.
    let session_key = current_session_key(state, appid, &openid).await?;
    let attempt = DecryptAttempt::begin(state, user_id).await?;
    let (data, unionid) = attempt
        .open(
            &session_key,
            appid,
            &openid,
            (&payload.raw_data, &payload.signature),
            &encrypted,
            async |data| acceptable(state, user_id, &user, &openid, data).await,
        )
        .await?;
    let (profile, fields) = profile_of(&data);
    let sealed = seal(key.as_ref(), &profile)?;
    let shared = SharedProfile {
        sealed,
        fields,
        unionid,
    };
    record(state, "authorize_profile", user_id, appid, ctx, |user| {
        user.decide_authorize_profile(shared.clone())
    })
    .await
}

/// Decrypted data this user may share, with the unionid it names; `None` for data that must
/// be refused. Payloads from before April 2021 still name the person (`openId`, `unionId`):
/// the openid must be this user's, a unionid must come with it (present and this user's), be
/// well-formed, not another user's and not different from one this user already holds (so a forged `unionId` can never move a
/// person's accounts, even if forging were possible).
async fn acceptable(
    state: &Services,
    user_id: UserId,
    user: &User,
    openid: &OpenId,
    data: Value,
) -> Result<Option<(Value, Option<UnionId>)>, UseCaseError> {
    if data
        .get("openId")
        .is_some_and(|named| named.as_str() != Some(openid.as_str()))
    {
        return Ok(None);
    }
    let unionid = match data.get("unionId") {
        None => None,
        Some(raw) => match raw.as_str().map(UnionId::parse) {
            Some(Ok(unionid)) => Some(unionid),
            _ => return Ok(None),
        },
    };
    if let Some(unionid) = &unionid {
        // A unionId only with the caller's own openId: the genuine tail of a pre-2021 payload
        // holds both, and without the key no one can make a tail decrypt to chosen text.
        if data.get("openId").and_then(Value::as_str) != Some(openid.as_str()) {
            return Ok(None);
        }
        if user.unionid.as_ref().is_some_and(|held| held != unionid) {
            return Ok(None);
        }
        let owner = state
            .store
            .find_claim(&state.lookup_index.claim(&Claim::UnionId(unionid.clone())))
            .await?;
        if owner.is_some_and(|owner| owner != user_id) {
            return Ok(None);
        }
    }
    Ok(Some((data, unionid)))
}

/// Our profile object from WeChat's decrypted fields, and the names it holds.
fn profile_of(data: &Value) -> (Value, Vec<String>) {
    let mut profile = Map::new();
    for (theirs, ours) in PROFILE_FIELDS {
        match data.get(theirs) {
            Some(Value::String(s)) if !s.is_empty() => {
                profile.insert(ours.to_owned(), json!(s));
            }
            Some(Value::Number(n)) => {
                profile.insert(ours.to_owned(), json!(n));
            }
            _ => {}
        }
    }
    let fields = profile.keys().cloned().collect();
    (Value::Object(profile), fields)
}

/// Validated fill-in fields.
pub struct ProfileUpdate {
    pub nickname: Option<String>,
    pub avatar_url: Option<String>,
}

pub const MAX_NICKNAME_CHARS: usize = 64;
pub const MAX_AVATAR_URL_CHARS: usize = 1024;

impl ProfileUpdate {
    pub fn parse(
        nickname: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<Self, UseCaseError> {
        if nickname.is_none() && avatar_url.is_none() {
            return Err(UseCaseError::InvalidInput(
                "give nickname, avatar_url or both".into(),
            ));
        }
        let nickname = nickname
            .map(|n| {
                let n = n.trim().to_owned();
                let chars = n.chars().count();
                if chars == 0 || chars > MAX_NICKNAME_CHARS || n.chars().any(char::is_control) {
                    Err(UseCaseError::InvalidInput(format!(
                        "nickname must be 1 to {MAX_NICKNAME_CHARS} characters without control characters"
                    )))
                } else {
                    Ok(n)
                }
            })
            .transpose()?;
        let avatar_url = avatar_url
            .map(|u| {
                let ok = u.chars().count() <= MAX_AVATAR_URL_CHARS
                    && url::Url::parse(&u).is_ok_and(|parsed| {
                        matches!(parsed.scheme(), "https" | "http") && parsed.host().is_some()
                    })
                    && !u.chars().any(|c| c.is_control() || c.is_whitespace());
                if ok {
                    Ok(u)
                } else {
                    Err(UseCaseError::InvalidInput(format!(
                        "avatar_url must be an http(s) URL of at most {MAX_AVATAR_URL_CHARS} characters"
                    )))
                }
            })
            .transpose()?;
        Ok(Self {
            nickname,
            avatar_url,
        })
    }
}

/// The fill-in: merges the given fields into the current profile. A nickname goes to WeChat's
/// content check first (unless the app's checks are off): `risky` stores nothing, `review` or
/// a failed check stores it flagged (`review: ["nickname"]`).
pub async fn update_profile(
    state: &Services,
    user_id: UserId,
    appid: &AppId,
    update: ProfileUpdate,
    ctx: &Context,
) -> Result<(), UseCaseError> {
    let LoadedUser { user, key, .. } = load_user(state, user_id).await?;
    let mut flagged = Vec::new();
    if let Some(nickname) = &update.nickname {
        let check = match user.openid_for(appid) {
            Some(openid) => check_nickname(state, appid, openid, nickname).await?,
            // Not the app's user (the session check makes this unreachable): the decision
            // refuses them below anyway.
            None => NicknameCheck::Review,
        };
        if check == NicknameCheck::Review {
            flagged.push("nickname".to_owned());
        }
    }
    let key = key.ok_or(UseCaseError::Erased)?;
    // Merged into the profile as each attempt loads it, so a concurrent change (an upload, a
    // withdrawal, a rejected avatar) is never undone by a stale copy.
    record(state, "update_profile", user_id, appid, ctx, |user| {
        // Our avatar URLs come from uploads only: one sent back (a client saving the whole
        // form, perhaps from before a newer upload or under an older public URL) keeps the
        // profile's avatar as it is rather than naming an image that may be gone.
        let ours = avatars_base(state);
        let mut changed = Vec::new();
        let mut avatar = AvatarChange::Keep;
        let (sealed, fields) = edited_profile(&key, user, |profile| {
            if let Some(nickname) = &update.nickname {
                profile.insert("nickname".into(), json!(nickname));
                changed.push("nickname".to_owned());
            }
            let current = profile.get("avatar_url").and_then(Value::as_str);
            if let Some(url) = update
                .avatar_url
                .as_ref()
                .filter(|url| Some(url.as_str()) != current && !url.starts_with(&ours))
            {
                profile.insert("avatar_url".into(), json!(url));
                changed.push("avatar_url".to_owned());
                avatar = AvatarChange::Elsewhere;
            }
        })?;
        if changed.is_empty() {
            // Nothing but what the profile already says: nothing to record.
            return Ok(Vec::new());
        }
        let update = domain::profile::ProfileUpdate {
            sealed,
            fields,
            avatar,
            changed,
            flagged: flagged.clone(),
        };
        Ok::<_, UseCaseError>(user.decide_update_profile_checked(update)?)
    })
    .await
}

/// The profile as `user` holds it (the state an attempt loaded), opened, edited and sealed
/// again, with the names of its fields.
pub(super) fn edited_profile(
    key: &UserKey,
    user: &User,
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Result<(SealedPersonalData, Vec<String>), UseCaseError> {
    let mut profile = match &user.profile {
        Some(sealed) => match open_with(Some(key), sealed)? {
            Some(Value::Object(profile)) => profile,
            _ => Map::new(),
        },
        None => Map::new(),
    };
    edit(&mut profile);
    let fields = profile.keys().cloned().collect();
    Ok((key.seal(&Value::Object(profile)), fields))
}

/// Exchanges a phone-number button code with WeChat and records the number, sealed, with its
/// blind index (of the E.164 form, `+8613800138000`).
pub async fn bind_phone(
    state: &Services,
    user_id: UserId,
    appid: &AppId,
    code: &WeChatCode,
    ctx: &Context,
) -> Result<(), UseCaseError> {
    let app = state.apps.get(appid).ok_or(UseCaseError::UnknownApp)?;
    let LoadedUser { user, key, .. } = load_user(state, user_id).await?;
    let openid = user
        .openid_for(appid)
        .cloned()
        .ok_or(UseCaseError::NotFound)?;
    let info = state
        .wechat
        .get_user_phone_number(app, code, Some(&openid))
        .await
        .map_err(|error| UseCaseError::WeChat {
            appid: appid.clone(),
            call: WeChatCall::PhoneNumber,
            error,
        })?;
    let e164 = format!("+{}{}", info.country_code, info.pure_phone_number);
    let phone = json!({
        "phone_number": info.phone_number,
        "pure_phone_number": info.pure_phone_number,
        "country_code": info.country_code,
    });
    let sealed = seal(key.as_ref(), &phone)?;
    // The look-up hash goes to the phone look-up table in the same append, never the log.
    let index = state.phone_index.of(&e164);
    let write = UserWrite {
        appid: Some(appid),
        phone_index: Some(index),
    };
    let command = Command::new("bind_phone");
    record_on_user(state, command, user_id, write, ctx, |user| {
        user.decide_bind_phone(sealed.clone())
    })
    .await?;
    Ok(())
}

pub async fn withdraw(
    state: &Services,
    user_id: UserId,
    appid: &AppId,
    authorization: Authorization,
    ctx: &Context,
) -> Result<(), UseCaseError> {
    record(
        state,
        "withdraw_authorization",
        user_id,
        appid,
        ctx,
        |user| user.decide_withdraw(authorization),
    )
    .await
}

/// Erasure. `UserErased`'s append frees the person's claims and, in the same transaction
/// (triggers on the events table), deletes their data key and their refused-login tallies: no
/// crash can leave an erased user's sealed fields readable. The WeChat session keys (addressed
/// by the account's keyed hash, which only the openid computes, so it is taken from the user
/// loaded before) are deleted before the append and again after it, so one written meanwhile
/// by a login in flight does not outlive the erasure. The avatar images go with the key (the
/// same transaction deletes their rows), and again after it. Every open session is revoked
/// (`user_erased`; none of them works after the append anyway), and last, the database's files
/// are purged of the deleted rows' old copies (SQLite's WAL); the next start does it again,
/// should this step not run. Safe to repeat.
pub async fn erase(state: &Services, user_id: UserId, ctx: &Context) -> Result<(), UseCaseError> {
    let before = load_user(state, user_id).await?.user;
    let session_keys: Vec<_> = if before.is_registered() && !before.erased {
        before
            .accounts
            .iter()
            .map(|(appid, openid)| (appid.clone(), state.lookup_index.account(appid, openid)))
            .collect()
    } else {
        Vec::new()
    };
    for (appid, account) in &session_keys {
        state
            .store
            .delete_session_key(appid.as_str(), account)
            .await?;
    }
    let command = Command::new("erase_user");
    record_on_user(state, command, user_id, UserWrite::default(), ctx, |user| {
        user.decide_erase()
    })
    .await?;
    for (appid, account) in &session_keys {
        state
            .store
            .delete_session_key(appid.as_str(), account)
            .await?;
    }
    // A refused login recorded after the append's trigger ran.
    state.store.forget_rejections_of(user_id).await?;
    // Likewise an avatar stored by an upload in flight (sealed under the destroyed key, so
    // unreadable already; the upload's own append fails and deletes it too).
    state.store.delete_avatars_of(user_id).await?;
    // Every open session, reason `user_erased` (none of them works since the append anyway:
    // the record says why they ended).
    let revocation = Revocation {
        reason: RevocationReason::UserErased,
        note: None,
    };
    revoke_open_sessions(state, user_id, None, &revocation, ctx).await?;
    if let Err(err) = state.store.purge_deleted().await {
        tracing::warn!(error = %err, "purging the database files after an erasure failed");
    }
    Ok(())
}

/// Seals personal data under the user's data key. Every user gets one at registration (or
/// from the migration), so a missing key means an erased user: nothing is sealed for them.
fn seal(key: Option<&UserKey>, data: &Value) -> Result<SealedPersonalData, UseCaseError> {
    let key = key.ok_or(UseCaseError::Erased)?;
    Ok(key.seal(data))
}

/// A command on the user's stream from `appid`'s app.
async fn record<E: Into<UseCaseError>>(
    state: &Services,
    name: &'static str,
    user_id: UserId,
    appid: &AppId,
    ctx: &Context,
    decide: impl Fn(&User) -> Result<Vec<UserEvent>, E>,
) -> Result<(), UseCaseError> {
    let write = UserWrite {
        appid: Some(appid),
        phone_index: None,
    };
    record_on_user(state, Command::new(name), user_id, write, ctx, decide).await?;
    Ok(())
}
