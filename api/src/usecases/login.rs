//! Login with a `wx.login()` code: exchange it with WeChat, find or register the user, start a
//! session. Concurrent first logins of one person (on any number of instances) meet at the
//! claims table: exactly one registers, the others retry and find that user.

use domain::{
    Actor, AppId, Claim, Device, OpenId, RecordWeChatLogin, RejectionReason, Session, SessionEvent,
    SessionId, UnionId, UnionIdSource, User, UserError, UserId, WeChatCode,
};
use infra::personal_data::AccountKey;
use infra::store::{AppendBatch, Claimant, ExpectedVersion};
use infra::wechat::WeChatError;
use uuid::Uuid;

use super::command::{Command, Decision};
use super::context::Context;
use super::error::{UseCaseError, WeChatCall};
use super::rejections;
use super::services::Services;
use super::streams::{session_key_context, to_new_events, user_from_stored, LoadedUser};
use super::views::{issue_tokens, view_of, LoginResponse};

/// A successful login, before tokens are issued.
#[derive(Debug)]
struct LoggedIn {
    user_id: UserId,
    session_id: SessionId,
    is_new_user: bool,
    /// The user as the login left them (their stream's state at the append), with their key.
    user: LoadedUser,
}

/// Logs in with a `wx.login()` code: tokens for the new session and the user.
pub async fn login(
    state: &Services,
    appid: &AppId,
    code: &WeChatCode,
    ctx: &Context,
) -> Result<LoginResponse, UseCaseError> {
    let app = state.apps.get(appid).ok_or(UseCaseError::UnknownApp)?;
    let wx = match state.wechat.code_to_session(app, code).await {
        Ok(wx) => wx,
        Err(err) => return Err(rejected(state, appid, ctx, err).await),
    };

    let identity = WeChatIdentity {
        openid: wx.openid.clone(),
        unionid: wx.unionid.clone(),
        source: UnionIdSource::Code2Session,
    };
    let account = state.lookup_index.account(appid, &wx.openid);
    let sealed_session_key = state.session_key_sealer.seal(
        wx.session_key.expose().as_bytes(),
        session_key_context(appid, &account).as_bytes(),
    );
    let session_key = SealedSessionKey {
        account,
        sealed: sealed_session_key,
    };
    record_login(state, appid, &identity, Some(session_key), ctx).await
}

/// Logs in a user a WeChat cloud function vouches for (`getWXContext()`, already
/// authenticated by WeChat, the request's signature checked by the caller).
pub async fn cloud_login(
    state: &Services,
    appid: &AppId,
    identity: &WeChatIdentity,
    ctx: &Context,
) -> Result<LoginResponse, UseCaseError> {
    record_login(state, appid, identity, None, ctx).await
}

/// A `session_key` from `code2Session`, sealed, and the account row it is stored under (its
/// keyed hash is computed once, for the seal's binding and the row alike).
struct SealedSessionKey {
    account: AccountKey,
    sealed: Vec<u8>,
}

/// Who WeChat says is logging in: from `code2Session`, or from a cloud function's
/// `getWXContext()` (already authenticated by WeChat).
pub struct WeChatIdentity {
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    pub source: UnionIdSource,
}

/// Finds or registers the user and starts a session; a sealed `session_key` (from
/// `code2Session`) is stored in the same transaction. Answers the session's tokens and the
/// user as the login left them.
async fn record_login(
    state: &Services,
    appid: &AppId,
    wx: &WeChatIdentity,
    session_key: Option<SealedSessionKey>,
    ctx: &Context,
) -> Result<LoginResponse, UseCaseError> {
    // Concurrent first logins of one person meet at the claims: the loser decides again and
    // finds the winner's user.
    let command = Command::new("login").retrying_taken_claims();
    let session_key = session_key.as_ref();
    // Chosen once: a retry after a lost race for the claims finds the winner (the loser's
    // data key went with its refused append).
    let new_user_id = UserId::from_uuid(Uuid::now_v7());
    let logged_in = command
        .execute(state, |_| {
            decide_login(state, appid, wx, new_user_id, session_key, ctx)
        })
        .await?;
    tracing::info!(%appid, user_id = %logged_in.user_id, new_user = logged_in.is_new_user, "login");
    let LoggedIn {
        user_id,
        session_id,
        is_new_user,
        user,
    } = logged_in;
    Ok(LoginResponse {
        tokens: issue_tokens(state, user_id, session_id, appid, 0)?,
        user: view_of(user_id, &user, appid, is_new_user)?,
    })
}

/// One attempt: the user's events and the new session's, in one append.
async fn decide_login(
    state: &Services,
    appid: &AppId,
    wx: &WeChatIdentity,
    new_user_id: UserId,
    session_key: Option<&SealedSessionKey>,
    ctx: &Context,
) -> Result<Decision<LoggedIn>, UseCaseError> {
    let (user_id, LoadedUser { user, version, key }) =
        resolve_user(state, appid, &wx.openid, wx.unionid.as_ref(), new_user_id).await?;
    let user_events = match user.decide_login(&RecordWeChatLogin {
        new_user_id: user_id,
        appid: appid.clone(),
        openid: wx.openid.clone(),
        unionid: wx.unionid.clone(),
        source: wx.source,
    }) {
        Ok(events) => events,
        Err(UserError::Blocked) => {
            let recorded =
                rejections::record(state, appid, RejectionReason::Blocked, Some(user_id), ctx)
                    .await;
            if let Err(err) = recorded {
                tracing::error!(error = %err, "could not record a refused login");
            }
            return Err(UseCaseError::Blocked);
        }
        Err(err) => return Err(err.into()),
    };
    let is_new_user = !user.is_registered();
    let session_id = SessionId::from_uuid(Uuid::now_v7());
    let session_events = Session::default().decide_start(SessionEvent::UserLoggedIn {
        session_id,
        user_id,
        appid: appid.clone(),
        openid: wx.openid.clone(),
        is_new_user,
        client_ip: ctx.client_ip.map(|ip| ip.to_string()),
        device: ctx.user_agent.as_deref().map(Device::from_user_agent),
    })?;

    // A returning user's key was read with their stream. A new user's is made now and stored
    // by the login's own append, so it commits with the registration or not at all. (A
    // registered user without a key, which no login makes, gets one stored as before.)
    let mut new_key = None;
    let key = match key {
        Some(key) => key,
        None if is_new_user => {
            let (key, sealed) = state.personal_data.new_key(user_id);
            new_key = Some(sealed);
            key
        }
        None => state
            .personal_data
            .create_key(state.store.as_ref(), user_id)
            .await
            .map_err(UseCaseError::internal)?,
    };
    let now = state.clock.now();
    let metadata = ctx.acting_as(Actor::User(user_id)).metadata(Some(appid));
    let mut batch = AppendBatch::default()
        .stream(
            user_id.stream(),
            ExpectedVersion::after(version),
            to_new_events(&user_events, &metadata, now, Some(&key))?,
        )
        .stream(
            session_id.stream(),
            ExpectedVersion::NoStream,
            to_new_events(&session_events, &metadata, now, Some(&key))?,
        );
    for claim in user_events.iter().filter_map(Claim::made_by) {
        batch = batch.claim(state.lookup_index.claim(&claim), user_id);
    }
    if let Some(SealedSessionKey { account, sealed }) = session_key {
        batch = batch.session_key(appid.as_str(), account, sealed.clone());
    }
    if let Some(sealed) = new_key {
        batch = batch.data_key(user_id, sealed);
    }
    let logged_in = LoggedIn {
        user_id,
        session_id,
        is_new_user,
        user: LoadedUser {
            version: version + user_events.len(),
            user: user_events.iter().fold(user, User::evolve),
            key: Some(key),
        },
    };
    Ok(Decision::Append(batch, logged_in))
}

/// The user this WeChat account belongs to: by `(appid, openid)`, else by unionid (another app
/// of the same Open Platform account), else `new_user_id`. Claims are found by keyed hash; a
/// known user comes with their data key and their personal data opened.
async fn resolve_user(
    state: &Services,
    appid: &AppId,
    openid: &OpenId,
    unionid: Option<&UnionId>,
    new_user_id: UserId,
) -> Result<(UserId, LoadedUser), UseCaseError> {
    let account = state.lookup_index.claim(&Claim::WeChatAccount {
        appid: appid.clone(),
        openid: openid.clone(),
    });
    // Known by this account, else by their UnionID (their first login in this app): one read.
    let union = unionid.map(|unionid| state.lookup_index.claim(&Claim::UnionId(unionid.clone())));
    let claimant = state.store.load_claimant(&account, union.as_ref()).await?;
    match claimant {
        Some(Claimant {
            user: user_id,
            events,
            sealed_key,
        }) => {
            let key = state
                .personal_data
                .open_key(user_id, sealed_key.as_deref())
                .map_err(UseCaseError::internal)?;
            let (user, version) = user_from_stored(&events, key.as_ref())?;
            Ok((user_id, LoadedUser { user, version, key }))
        }
        None => Ok((
            new_user_id,
            LoadedUser {
                user: User::default(),
                version: 0,
                key: None,
            },
        )),
    }
}

/// Records a WeChat refusal (not as an event: see `rejections`) where it is the user's (not
/// our) problem, and answers it.
async fn rejected(
    state: &Services,
    appid: &AppId,
    ctx: &Context,
    err: WeChatError,
) -> UseCaseError {
    let reason = match err {
        WeChatError::InvalidCode { .. } => Some(RejectionReason::InvalidCode),
        WeChatError::HighRisk => Some(RejectionReason::HighRisk),
        WeChatError::RateLimited => Some(RejectionReason::RateLimited),
        _ => None,
    };
    if let Some(reason) = reason {
        if let Err(err) = rejections::record(state, appid, reason, None, ctx).await {
            // The caller still gets the real reason; the lost tally is logged.
            tracing::error!(error = %err, "could not record a refused login");
        }
    }
    UseCaseError::WeChat {
        appid: appid.clone(),
        call: WeChatCall::Login,
        error: err,
    }
}
