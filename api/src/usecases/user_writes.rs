//! Commands on a user's stream: load the user, decide, append with the claims the events make
//! (releasing them on erasure) and a bound phone's look-up hash, through the one executor.

use domain::{AppId, AvatarId, Claim, User, UserEvent, UserId};
use infra::store::{AppendBatch, ExpectedVersion};

use super::avatar::forget_image;
use super::command::{Command, Decision};
use super::context::Context;
use super::error::UseCaseError;
use super::services::Services;
use super::streams::{load_user, to_new_events, LoadedUser};

/// What a command on the user's stream writes besides its events.
#[derive(Debug, Default)]
pub struct UserWrite<'a> {
    /// The app the command came from, for the events' metadata.
    pub appid: Option<&'a AppId>,
    /// A bound phone's keyed hash, for the phone look-up table (never the log).
    pub phone_index: Option<String>,
}

/// Runs `decide` on the user's current state and records its events. Returns whether any were
/// recorded, and the log position of the last one. An uploaded avatar the profile stops
/// showing (replaced, withdrawn, overwritten) has its image deleted once they are recorded:
/// a user keeps at most the one image their profile shows.
pub async fn record_on_user<E: Into<UseCaseError>>(
    state: &Services,
    command: Command,
    user_id: UserId,
    write: UserWrite<'_>,
    ctx: &Context,
    decide: impl Fn(&User) -> Result<Vec<UserEvent>, E>,
) -> Result<(bool, Option<i64>), UseCaseError> {
    let (appid, phone_index, decide) = (write.appid, write.phone_index.as_deref(), &decide);
    let ((recorded, dropped), position) = command
        .execute_recorded(state, move |_| async move {
            let LoadedUser { user, version, key } = load_user(state, user_id).await?;
            let events = decide(&user).map_err(Into::into)?;
            if events.is_empty() {
                return Ok(Decision::Unchanged((false, None)));
            }
            let dropped = dropped_avatar(&user, &events);
            let metadata = ctx.metadata(appid);
            let mut batch = AppendBatch::default().stream(
                user_id.stream(),
                ExpectedVersion::after(version),
                to_new_events(&events, &metadata, state.clock.now(), key.as_ref())?,
            );
            for claim in events.iter().filter_map(Claim::made_by) {
                batch = batch.claim(state.lookup_index.claim(&claim), user_id);
            }
            if events.iter().any(|e| matches!(e, UserEvent::UserErased {})) {
                batch = batch.release_claims_of(user_id);
            }
            if let Some(hash) = phone_index {
                batch = batch.phone_index(user_id, hash.to_owned());
            }
            Ok(Decision::Append(batch, (true, dropped)))
        })
        .await?;
    if let Some(avatar_id) = dropped {
        forget_image(state, avatar_id).await;
    }
    Ok((recorded, position))
}

/// The uploaded avatar the profile shows before `events` and no longer after them.
fn dropped_avatar(user: &User, events: &[UserEvent]) -> Option<AvatarId> {
    let before = user.avatar?;
    let after = events.iter().fold(user.clone(), User::evolve).avatar;
    (after != Some(before)).then_some(before)
}
