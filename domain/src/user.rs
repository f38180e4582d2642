//! The `User` aggregate: a person's WeChat accounts and unionid.

use crate::events::{Authorization, SealedPersonalData, UnionIdSource, UserEvent};
use crate::ids::{AppId, AvatarId, OpenId, UnionId, UserId};
use crate::recorded::Recorded;

/// State rebuilt from a user's stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub id: Option<UserId>,
    pub accounts: Vec<(AppId, OpenId)>,
    pub unionid: Option<UnionId>,
    pub blocked: bool,
    /// The latest shared profile (legacy authorization or fill-in), unless withdrawn.
    pub profile: Option<SealedPersonalData>,
    pub phone: Option<SealedPersonalData>,
    /// The uploaded avatar the profile shows, if it is one of ours.
    pub avatar: Option<AvatarId>,
    /// Profile fields stored but flagged for review, until changed again.
    pub review: Vec<String>,
    /// The last avatar WeChat rejected: a retried verdict records nothing twice.
    pub last_rejected_avatar: Option<AvatarId>,
    pub erased: bool,
    /// The log position of the user's last block, unblock or erasure: every session that
    /// began at or before it is over (see `Session::in_force`). Known only to a state replayed
    /// from recorded events (`evolve_recorded`).
    pub session_cutoff: Option<i64>,
}

/// A successful `code2Session` for this user (or for a person not yet known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWeChatLogin {
    /// The id to register under when the stream is empty.
    pub new_user_id: UserId,
    pub appid: AppId,
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    /// Where the login's identity came from (code2Session or a cloud function's context).
    pub source: UnionIdSource,
}

/// A uniqueness claim written in the same transaction as the event that makes it: one WeChat
/// account, or one unionid, belongs to exactly one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Claim {
    WeChatAccount { appid: AppId, openid: OpenId },
    UnionId(UnionId),
}

impl Claim {
    pub const WECHAT_ACCOUNT: &'static str = "wechat_account";
    pub const UNIONID: &'static str = "unionid";

    /// The claim's kind and value, as the claims table keys them.
    pub fn key(&self) -> (&'static str, String) {
        match self {
            Self::WeChatAccount { appid, openid } => {
                (Self::WECHAT_ACCOUNT, format!("{appid}:{openid}"))
            }
            Self::UnionId(unionid) => (Self::UNIONID, unionid.to_string()),
        }
    }

    /// The claims an event makes, if any.
    pub fn made_by(event: &UserEvent) -> Option<Self> {
        match event {
            UserEvent::UserRegistered { appid, openid, .. }
            | UserEvent::WeChatAccountLinked { appid, openid } => Some(Self::WeChatAccount {
                appid: appid.clone(),
                openid: openid.clone(),
            }),
            UserEvent::UnionIdLinked { unionid, .. } => Some(Self::UnionId(unionid.clone())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// WeChat named a different unionid than the one this user already holds. Claims make this
    /// unreachable unless WeChat's data changed under us; refuse rather than merge people.
    #[error("the user already holds another unionid")]
    UnionIdMismatch,
    #[error("this user is blocked")]
    Blocked,
    #[error("no such user")]
    NotRegistered,
    #[error("the reason must be 1 to {MAX_REASON_CHARS} characters without control characters")]
    InvalidReason,
    #[error("this user's personal data was erased")]
    Erased,
    #[error("nothing to withdraw: this authorization is not held")]
    NotAuthorized,
}

/// An administrator's reason for blocking or unblocking, as shown in the audit log.
pub const MAX_REASON_CHARS: usize = 500;

fn valid_reason(reason: &str) -> bool {
    let chars = reason.chars().count();
    !reason.trim().is_empty()
        && chars <= MAX_REASON_CHARS
        && !reason.chars().any(|c| c.is_control() && c != '\n')
}

impl User {
    pub fn is_registered(&self) -> bool {
        self.id.is_some()
    }

    pub fn holds(&self, appid: &AppId, openid: &OpenId) -> bool {
        self.accounts.iter().any(|(a, o)| a == appid && o == openid)
    }

    pub fn openid_for(&self, appid: &AppId) -> Option<&OpenId> {
        self.accounts
            .iter()
            .find(|(a, _)| a == appid)
            .map(|(_, o)| o)
    }

    /// Folds one event into the state.
    pub fn evolve(mut self, event: &UserEvent) -> Self {
        match event {
            UserEvent::UserRegistered {
                user_id,
                appid,
                openid,
            } => {
                self.id = Some(*user_id);
                self.accounts.push((appid.clone(), openid.clone()));
            }
            UserEvent::WeChatAccountLinked { appid, openid } => {
                self.accounts.push((appid.clone(), openid.clone()));
            }
            UserEvent::UnionIdLinked { unionid, .. } => self.unionid = Some(unionid.clone()),
            UserEvent::UserBlocked { .. } => self.blocked = true,
            UserEvent::UserUnblocked { .. } => self.blocked = false,
            UserEvent::ProfileAuthorized { profile, .. } => {
                self.profile = Some(profile.clone());
                self.avatar = None;
                self.review.clear();
            }
            UserEvent::ProfileUpdated {
                profile,
                avatar_id,
                review,
                ..
            } => {
                self.profile = Some(profile.clone());
                self.avatar = *avatar_id;
                self.review = review.clone();
            }
            UserEvent::AvatarRejected {
                avatar_id, profile, ..
            } => {
                if self.avatar == Some(*avatar_id) {
                    self.avatar = None;
                    if let Some(profile) = profile {
                        self.profile = Some(profile.clone());
                    }
                }
                self.last_rejected_avatar = Some(*avatar_id);
            }
            UserEvent::PhoneNumberBound { phone } => self.phone = Some(phone.clone()),
            UserEvent::AuthorizationRevoked { authorization } => match authorization {
                Authorization::Profile => {
                    self.profile = None;
                    self.avatar = None;
                    self.review.clear();
                }
                Authorization::Phone => self.phone = None,
            },
            UserEvent::UserErased {} => {
                self.erased = true;
                self.profile = None;
                self.phone = None;
                self.avatar = None;
                self.review.clear();
            }
        }
        self
    }

    pub fn replay<'a>(events: impl IntoIterator<Item = &'a UserEvent>) -> Self {
        events.into_iter().fold(Self::default(), Self::evolve)
    }

    /// `evolve` for an event as the store recorded it: also remembers where the sessions'
    /// cut-off moved.
    pub fn evolve_recorded(mut self, at: Recorded, event: &UserEvent) -> Self {
        if matches!(
            event,
            UserEvent::UserBlocked { .. }
                | UserEvent::UserUnblocked { .. }
                | UserEvent::UserErased {}
        ) {
            self.session_cutoff = Some(at.position);
        }
        self.evolve(event)
    }

    pub fn replay_recorded<'a>(
        events: impl IntoIterator<Item = (Recorded, &'a UserEvent)>,
    ) -> Self {
        events
            .into_iter()
            .fold(Self::default(), |user, (at, event)| {
                user.evolve_recorded(at, event)
            })
    }

    /// Whether a session whose login was recorded at `position` may still work for this user.
    pub fn admits_session_started_at(&self, position: i64) -> bool {
        !self.blocked && !self.erased && self.session_cutoff.is_none_or(|cut| position > cut)
    }

    /// What a WeChat login means for this user: registration, a new linked account, a newly
    /// learned unionid, or nothing at all for a returning user.
    pub fn decide_login(&self, cmd: &RecordWeChatLogin) -> Result<Vec<UserEvent>, UserError> {
        if self.erased {
            return Err(UserError::Erased);
        }
        if self.blocked {
            return Err(UserError::Blocked);
        }
        let mut events = Vec::new();
        if !self.is_registered() {
            events.push(UserEvent::UserRegistered {
                user_id: cmd.new_user_id,
                appid: cmd.appid.clone(),
                openid: cmd.openid.clone(),
            });
        } else if !self.holds(&cmd.appid, &cmd.openid) {
            events.push(UserEvent::WeChatAccountLinked {
                appid: cmd.appid.clone(),
                openid: cmd.openid.clone(),
            });
        }
        match (&self.unionid, &cmd.unionid) {
            (None, Some(unionid)) => events.push(UserEvent::UnionIdLinked {
                unionid: unionid.clone(),
                source: cmd.source,
            }),
            (Some(held), Some(given)) if held != given => return Err(UserError::UnionIdMismatch),
            _ => {}
        }
        Ok(events)
    }
}

impl User {
    /// Blocking a blocked user changes nothing (no event): the admin's intent already holds.
    pub fn decide_block(&self, reason: &str) -> Result<Vec<UserEvent>, UserError> {
        self.decide_status(true, reason)
    }

    pub fn decide_unblock(&self, reason: &str) -> Result<Vec<UserEvent>, UserError> {
        self.decide_status(false, reason)
    }

    fn decide_status(&self, blocked: bool, reason: &str) -> Result<Vec<UserEvent>, UserError> {
        self.admit_reasoned(reason)?;
        if self.blocked == blocked {
            return Ok(Vec::new());
        }
        let reason = reason.trim().to_owned();
        Ok(vec![if blocked {
            UserEvent::UserBlocked { reason }
        } else {
            UserEvent::UserUnblocked { reason }
        }])
    }

    /// An administrator revokes every open session: the reason, trimmed, becomes each
    /// `SessionRevoked`'s note (the sessions themselves decide whether anything is left to end).
    pub fn decide_revoke_sessions(&self, reason: &str) -> Result<String, UserError> {
        self.admit_reasoned(reason)?;
        Ok(reason.trim().to_owned())
    }

    /// What every administrator's command with a reason needs first: a registered user not
    /// erased (erasure is final: there is nobody left to block, unblock or sign out), and a
    /// valid reason.
    fn admit_reasoned(&self, reason: &str) -> Result<(), UserError> {
        if !self.is_registered() {
            return Err(UserError::NotRegistered);
        }
        if self.erased {
            return Err(UserError::Erased);
        }
        if !valid_reason(reason) {
            return Err(UserError::InvalidReason);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn app(n: u8) -> AppId {
        AppId::parse(&format!("wx{n:016x}")).unwrap()
    }
    fn openid(s: &str) -> OpenId {
        OpenId::parse(s).unwrap()
    }
    fn unionid(s: &str) -> UnionId {
        UnionId::parse(s).unwrap()
    }
    fn uid() -> UserId {
        UserId::from_uuid(Uuid::from_u128(7))
    }
    fn login(appn: u8, o: &str, u: Option<&str>) -> RecordWeChatLogin {
        RecordWeChatLogin {
            new_user_id: uid(),
            appid: app(appn),
            openid: openid(o),
            unionid: u.map(unionid),
            source: UnionIdSource::Code2Session,
        }
    }

    fn given(events: &[UserEvent]) -> User {
        User::replay(events)
    }

    /// The history of a user registered by a first login in app 1 as `o1`.
    fn registered(unionid: Option<&str>) -> Vec<UserEvent> {
        given(&[]).decide_login(&login(1, "o1", unionid)).unwrap()
    }

    #[test]
    fn first_login_registers() {
        let then = given(&[]).decide_login(&login(1, "o1", None)).unwrap();
        assert_eq!(
            then,
            vec![UserEvent::UserRegistered {
                user_id: uid(),
                appid: app(1),
                openid: openid("o1")
            }]
        );
    }

    #[test]
    fn first_login_with_unionid_registers_and_links_it() {
        let then = given(&[])
            .decide_login(&login(1, "o1", Some("u1")))
            .unwrap();
        assert_eq!(then.len(), 2);
        assert_eq!(
            then[1],
            UserEvent::UnionIdLinked {
                unionid: unionid("u1"),
                source: UnionIdSource::Code2Session
            }
        );
    }

    #[test]
    fn returning_login_changes_nothing() {
        let history = registered(Some("u1"));
        let then = given(&history)
            .decide_login(&login(1, "o1", Some("u1")))
            .unwrap();
        assert!(then.is_empty());
    }

    #[test]
    fn another_apps_openid_links_the_account() {
        let history = registered(Some("u1"));
        let then = given(&history)
            .decide_login(&login(2, "o2", Some("u1")))
            .unwrap();
        assert_eq!(
            then,
            vec![UserEvent::WeChatAccountLinked {
                appid: app(2),
                openid: openid("o2")
            }]
        );
        let user = given(&[history, then].concat());
        assert_eq!(user.openid_for(&app(2)), Some(&openid("o2")));
    }

    #[test]
    fn unionid_learned_later_is_linked_once() {
        let history = registered(None);
        let then = given(&history)
            .decide_login(&login(1, "o1", Some("u1")))
            .unwrap();
        assert_eq!(then.len(), 1);
        let again = given(&[history, then].concat())
            .decide_login(&login(1, "o1", Some("u1")))
            .unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn a_blocked_user_cannot_log_in_until_unblocked() {
        let registered = registered(None);
        let block = given(&registered).decide_block("spam").unwrap();
        assert_eq!(
            block,
            vec![UserEvent::UserBlocked {
                reason: "spam".into()
            }]
        );
        let history = [registered, block].concat();
        assert_eq!(
            given(&history).decide_login(&login(1, "o1", None)),
            Err(UserError::Blocked)
        );
        assert!(given(&history).decide_block("again").unwrap().is_empty());
        let unblock = given(&history).decide_unblock("appeal granted").unwrap();
        let history = [history, unblock].concat();
        assert!(given(&history)
            .decide_login(&login(1, "o1", None))
            .unwrap()
            .is_empty());
    }

    /// A command that takes a reason, its answer reduced to success or the error.
    type Reasoned = fn(&User, &str) -> Result<(), UserError>;

    const REASONED: [(&str, Reasoned); 3] = [
        ("block", |user, reason| user.decide_block(reason).map(drop)),
        ("unblock", |user, reason| {
            user.decide_unblock(reason).map(drop)
        }),
        ("revoke sessions", |user, reason| {
            user.decide_revoke_sessions(reason).map(drop)
        }),
    ];

    #[test]
    fn every_reasoned_command_needs_a_live_user_and_a_reason() {
        let registered = registered(None);
        let erased = [registered.clone(), vec![UserEvent::UserErased {}]].concat();
        let too_long = "x".repeat(MAX_REASON_CHARS + 1);
        for (name, decide) in REASONED {
            let cases: [(&[UserEvent], &str, UserError); 5] = [
                (&[], "spam", UserError::NotRegistered),
                (&erased, "spam", UserError::Erased),
                (&registered, "  ", UserError::InvalidReason),
                (&registered, " \t", UserError::InvalidReason),
                (&registered, &too_long, UserError::InvalidReason),
            ];
            for (history, reason, expected) in cases {
                assert_eq!(
                    decide(&given(history), reason),
                    Err(expected.clone()),
                    "{name} {reason:?} after {} events",
                    history.len()
                );
            }
        }
    }

    #[test]
    fn revoking_sessions_keeps_the_trimmed_reason() {
        let registered = registered(None);
        assert_eq!(
            given(&registered).decide_revoke_sessions(" lost phone "),
            Ok("lost phone".into())
        );
    }

    #[test]
    fn blocks_unblocks_and_erasure_move_the_session_cutoff() {
        let at = |position| Recorded {
            position,
            occurred_at: chrono::DateTime::UNIX_EPOCH,
        };
        let registered = registered(None);
        let user = User::replay_recorded(registered.iter().map(|e| (at(1), e)));
        assert_eq!(user.session_cutoff, None);
        assert!(user.admits_session_started_at(2));
        let user = user.evolve_recorded(at(5), &UserEvent::UserBlocked { reason: "x".into() });
        assert!(!user.admits_session_started_at(6), "blocked");
        let user = user.evolve_recorded(at(8), &UserEvent::UserUnblocked { reason: "y".into() });
        assert_eq!(user.session_cutoff, Some(8));
        assert!(!user.admits_session_started_at(3), "began before the block");
        assert!(!user.admits_session_started_at(7), "appended while blocked");
        assert!(user.admits_session_started_at(9));
        let user = user.evolve_recorded(at(10), &UserEvent::UserErased {});
        assert!(!user.admits_session_started_at(11), "erased");
    }

    #[test]
    fn a_different_unionid_is_refused() {
        let history = registered(Some("u1"));
        assert_eq!(
            given(&history).decide_login(&login(1, "o1", Some("u2"))),
            Err(UserError::UnionIdMismatch)
        );
    }
}
