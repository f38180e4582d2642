//! Side writes: side-table rows an append writes in its own transaction (see `SideWrite`),
//! with the statements that write the same rows alone.

use chrono::Utc;

use super::Arg;
use crate::store::SideWrite;

/// Stores a sealed `session_key` (`$1` appid, `$2` account, `$3` sealed, `$4` now), replacing
/// the account's previous one.
pub(in crate::store) const PUT_SESSION_KEY: &str =
    "INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (appid, openid) DO UPDATE \
     SET sealed = excluded.sealed, updated_at = excluded.updated_at";

/// Stores a user's (`$1`) phone look-up hash (`$2`), replacing their previous one.
pub(in crate::store) const PUT_PHONE_INDEX: &str =
    "INSERT INTO phone_lookup (user_id, phone_index) VALUES ($1, $2) \
     ON CONFLICT (user_id) DO UPDATE SET phone_index = excluded.phone_index";

/// Stores a new user's (`$1`) sealed data key (`$2`, `$3` now); fails if they have one.
pub(in crate::store) const INSERT_DATA_KEY: &str =
    "INSERT INTO user_data_keys (user_id, sealed_key, created_at) VALUES ($1, $2, $3)";

impl SideWrite {
    /// The statement that writes it, with its arguments.
    pub(in crate::store) fn statement(&self) -> (&'static str, Vec<Arg<'_>>) {
        match self {
            Self::SessionKey {
                appid,
                account,
                sealed,
            } => (
                PUT_SESSION_KEY,
                vec![
                    Arg::Text(appid),
                    Arg::Text(account.as_str()),
                    Arg::Bytes(sealed),
                    Arg::time(Utc::now()),
                ],
            ),
            Self::PhoneIndex { user, hash } => {
                (PUT_PHONE_INDEX, vec![Arg::user(*user), Arg::Text(hash)])
            }
            Self::DataKey { user, sealed } => (
                INSERT_DATA_KEY,
                vec![Arg::user(*user), Arg::Bytes(sealed), Arg::time(Utc::now())],
            ),
        }
    }
}
