//! What admins see of the read models: they keep openids, unionids, client IPs, devices and
//! reasons sealed under each user's data key, and hold WeChat identifiers only as keyed
//! hashes (the claims). This opens the sealed fields of a page, reading each user's key once
//! per request; an erased user's fields come out null.

use domain::{AppId, Claim, OpenId, UnionId, UserId};
use infra::personal_data::PersonalKeys;
use projections::{AuditRecord, LoginRecord, UserRecord};
use serde_json::Value;
use uuid::Uuid;

use super::error::UseCaseError;
use super::services::Services;

pub struct Reveal<'a> {
    keys: PersonalKeys<'a>,
}

impl<'a> Reveal<'a> {
    pub fn new(state: &'a Services) -> Self {
        Self {
            keys: PersonalKeys::new(&state.personal_data, state.store.as_ref()),
        }
    }

    async fn open(
        &mut self,
        user: Uuid,
        text: Option<&str>,
    ) -> Result<Option<Value>, UseCaseError> {
        self.keys
            .open_text(UserId::from_uuid(user), text)
            .await
            .map_err(UseCaseError::internal)
    }

    async fn text(
        &mut self,
        user: Uuid,
        text: Option<String>,
    ) -> Result<Option<String>, UseCaseError> {
        Ok(match self.open(user, text.as_deref()).await? {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
    }

    pub async fn user(&mut self, mut record: UserRecord) -> Result<UserRecord, UseCaseError> {
        let id = record.user_id;
        record.unionid = self.text(id, record.unionid.take()).await?;
        for account in &mut record.accounts {
            account.openid = self.text(id, account.openid.take()).await?;
        }
        Ok(record)
    }

    /// The detail view: the sealed profile too. The read model keeps it as `{sealed, fields}`;
    /// this opens it (lists show only which fields were shared).
    pub async fn user_in_detail(
        &mut self,
        mut record: UserRecord,
    ) -> Result<UserRecord, UseCaseError> {
        let stored = record.profile.take();
        let sealed = stored
            .as_ref()
            .and_then(|p| p.get("sealed").and_then(Value::as_str).map(str::to_owned));
        record.profile = match sealed {
            Some(sealed) => self.open(record.user_id, Some(&sealed)).await?,
            None => None,
        };
        // Fields WeChat's content check did not clear, flagged beside the opened profile.
        let review = stored.as_ref().and_then(|p| p.get("review")).cloned();
        if let (Some(Value::Object(profile)), Some(review)) = (&mut record.profile, review) {
            profile.insert("review".into(), review);
        }
        self.user(record).await
    }

    pub async fn login(&mut self, mut record: LoginRecord) -> Result<LoginRecord, UseCaseError> {
        let id = record.user_id;
        record.openid = self.text(id, record.openid.take()).await?;
        record.client_ip = self.text(id, record.client_ip.take()).await?;
        // Sealed whole since `UserLoggedIn` v3: the admin view shows its user agent.
        record.device = match self.open(id, record.device.as_deref()).await? {
            Some(Value::String(ua)) => Some(ua),
            Some(device) => device
                .get("user_agent")
                .and_then(Value::as_str)
                .map(str::to_owned),
            None => None,
        };
        Ok(record)
    }

    /// The entry's sealed client IP and the sealed values among its kept details (a block
    /// reason), opened with the key of the user it is about.
    pub async fn audit(&mut self, mut record: AuditRecord) -> Result<AuditRecord, UseCaseError> {
        let Ok(user) = Uuid::try_parse(&record.target) else {
            // Not about a user: nothing of it was sealed.
            return Ok(record);
        };
        record.client_ip = self.text(user, record.client_ip.take()).await?;
        if let Value::Object(details) = &mut record.details {
            for value in details.values_mut() {
                if let Value::String(text) = value {
                    *value = self
                        .open(user, Some(text.as_str()))
                        .await?
                        .unwrap_or(Value::Null);
                }
            }
        }
        Ok(record)
    }
}

/// The users an admin search names by openid or unionid, through the claims' keyed hashes
/// (live, as logins see them; an erased user's claims are gone). `None`: no such criterion.
/// An openid without an appid is looked up in every configured app.
pub async fn users_named(
    state: &Services,
    appid: Option<&str>,
    openid: Option<&str>,
    unionid: Option<&str>,
) -> Result<Option<Vec<Uuid>>, UseCaseError> {
    let mut found: Option<Vec<Uuid>> = None;
    if let Some(openid) = openid {
        let mut owners = Vec::new();
        if let Ok(openid) = OpenId::parse(openid) {
            let apps: Vec<AppId> = match appid.map(AppId::parse) {
                Some(Ok(appid)) => vec![appid],
                Some(Err(_)) => Vec::new(),
                None => state.apps.keys().cloned().collect(),
            };
            for appid in apps {
                let claim = Claim::WeChatAccount {
                    appid,
                    openid: openid.clone(),
                };
                owners.extend(claimant(state, &claim).await?);
            }
        }
        found = Some(owners);
    }
    if let Some(unionid) = unionid {
        let owner = match UnionId::parse(unionid) {
            Ok(unionid) => claimant(state, &Claim::UnionId(unionid)).await?,
            Err(_) => None,
        };
        let owners: Vec<Uuid> = owner.into_iter().collect();
        found = Some(match found {
            Some(before) => before.into_iter().filter(|u| owners.contains(u)).collect(),
            None => owners,
        });
    }
    Ok(found)
}

async fn claimant(state: &Services, claim: &Claim) -> Result<Option<Uuid>, UseCaseError> {
    Ok(state
        .store
        .find_claim(&state.lookup_index.claim(claim))
        .await?
        .map(|u| u.as_uuid()))
}
