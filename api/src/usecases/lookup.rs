//! What administrators look up: users, logins, the audit log and daily statistics, from the
//! read models, with the sealed personal data opened (`reveal`).

use std::future::Future;

use chrono::{Duration, NaiveDate};
use domain::UserId;
use projections::{
    AuditFilter, AuditRecord, DailyStatsRecord, LoginFilter, LoginRecord, Page, PageRequest,
    UserFilter, UserRecord,
};
use uuid::Uuid;

use super::error::UseCaseError;
use super::reveal::{self, Reveal};
use super::services::Services;

/// The widest daily-stats range one request may ask for.
pub const MAX_STATS_DAYS: i64 = 366;

/// A user search; every criterion given must hold.
#[derive(Debug, Default)]
pub struct UserSearch {
    pub appid: Option<String>,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    pub phone: Option<String>,
    pub status: Option<String>,
}

pub async fn find_users(
    state: &Services,
    search: UserSearch,
    page: &PageRequest,
) -> Result<Page<UserRecord>, UseCaseError> {
    let mut user_ids = reveal::users_named(
        state,
        search.appid.as_deref(),
        search.openid.as_deref(),
        search.unionid.as_deref(),
    )
    .await?;
    if let Some(phone) = &search.phone {
        // Through the phone look-up table (emptied on erasure), not the log or a read model.
        let owners: Vec<Uuid> = state
            .store
            .users_by_phone(&state.phone_index.of(phone))
            .await?
            .into_iter()
            .map(|u| u.as_uuid())
            .collect();
        user_ids = Some(match user_ids {
            Some(before) => before.into_iter().filter(|u| owners.contains(u)).collect(),
            None => owners,
        });
    }
    let filter = UserFilter {
        appid: search.appid,
        user_ids,
        phone_index: None,
        status: search.status,
    };
    let page = state.read_models.find_users(&filter, page).await?;
    revealed(state, page).await
}

/// One user in detail (the profile opened, where lists show only which fields were shared).
pub async fn user(state: &Services, id: UserId) -> Result<UserRecord, UseCaseError> {
    let record = state
        .read_models
        .user(id.as_uuid())
        .await?
        .ok_or(UseCaseError::NotFound)?;
    Reveal::new(state).user_in_detail(record).await
}

/// Logins, newest first: of one user, or of everyone.
pub async fn logins(
    state: &Services,
    user: Option<UserId>,
    filter: &LoginFilter,
    page: &PageRequest,
) -> Result<Page<LoginRecord>, UseCaseError> {
    let page = match user {
        Some(id) => {
            state
                .read_models
                .user_logins(id.as_uuid(), filter, page)
                .await?
        }
        None => state.read_models.logins(filter, page).await?,
    };
    revealed(state, page).await
}

pub async fn audit(
    state: &Services,
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Page<AuditRecord>, UseCaseError> {
    let page = state.read_models.audit(filter, page).await?;
    revealed(state, page).await
}

/// Days `from` to `to` (in `IDENTITY_STATS_TIMEZONE`, both given or defaulting to the 30 days up to today), at most
/// [`MAX_STATS_DAYS`].
pub async fn daily_stats(
    state: &Services,
    appid: Option<&str>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<DailyStatsRecord>, UseCaseError> {
    let to = to.unwrap_or_else(|| state.stats_day(state.clock.now()));
    let from = from.unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(UseCaseError::InvalidInput(
            "from must not be after to".into(),
        ));
    }
    if (to - from).num_days() >= MAX_STATS_DAYS {
        return Err(UseCaseError::InvalidInput(format!(
            "ask for at most {MAX_STATS_DAYS} days at a time"
        )));
    }
    Ok(state.read_models.daily_stats(appid, from, to).await?)
}

/// A read-model record whose sealed fields an administrator sees opened.
trait Revealable: Sized {
    fn reveal(
        self,
        with: &mut Reveal<'_>,
    ) -> impl Future<Output = Result<Self, UseCaseError>> + Send;
}

impl Revealable for UserRecord {
    async fn reveal(self, with: &mut Reveal<'_>) -> Result<Self, UseCaseError> {
        let mut record = with.user(self).await?;
        // Lists show which profile fields were shared, not the sealed profile.
        if let Some(serde_json::Value::Object(profile)) = &mut record.profile {
            profile.remove("sealed");
        }
        Ok(record)
    }
}

impl Revealable for LoginRecord {
    async fn reveal(self, with: &mut Reveal<'_>) -> Result<Self, UseCaseError> {
        with.login(self).await
    }
}

impl Revealable for AuditRecord {
    async fn reveal(self, with: &mut Reveal<'_>) -> Result<Self, UseCaseError> {
        with.audit(self).await
    }
}

/// The page with each record's sealed fields opened, each user's key read once.
async fn revealed<R: Revealable + Send>(
    state: &Services,
    page: Page<R>,
) -> Result<Page<R>, UseCaseError> {
    let mut with = Reveal::new(state);
    let mut items = Vec::with_capacity(page.items.len());
    for record in page.items {
        items.push(record.reveal(&mut with).await?);
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}
