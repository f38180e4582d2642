//! API keys from the console: create and revoke through the same `infra::api_keys` and store
//! methods as `identityd admin create-key` / `revoke-key`. A session can only hand out scopes
//! it holds itself, so a console session never escalates.

use std::collections::BTreeSet;

use infra::api_keys::{self, NewApiKey, Scope, StoredApiKey};
use infra::store::Store;

use crate::http::ApiError;

/// The longest key name (it names the key in lists and logs, nothing more).
pub const MAX_NAME_CHARS: usize = 100;

/// The scopes a new key asks for, each one the session's own.
pub fn granted_scopes(
    session: &BTreeSet<Scope>,
    requested: &[String],
) -> Result<BTreeSet<Scope>, ApiError> {
    let mut scopes = BTreeSet::new();
    for name in requested {
        let scope: Scope = name
            .parse()
            .map_err(|e: api_keys::UnknownScope| ApiError::InvalidRequest(e.to_string()))?;
        if !session.contains(&scope) {
            return Err(ApiError::Forbidden(
                "a key can only be given scopes the signed-in key holds",
            ));
        }
        scopes.insert(scope);
    }
    if scopes.is_empty() {
        return Err(ApiError::InvalidRequest("choose at least one scope".into()));
    }
    Ok(scopes)
}

/// A key may be revoked only by a session holding every scope it holds: revoking is as strong
/// as creating, so a narrower key cannot cut off a wider one.
pub fn may_revoke(session: &BTreeSet<Scope>, target: &StoredApiKey) -> Result<(), ApiError> {
    if target.scopes.is_subset(session) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "a key can only be revoked by a key holding all of its scopes",
        ))
    }
}

/// A key's name: 1 to [`MAX_NAME_CHARS`] characters, no control characters, trimmed.
pub fn key_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidRequest(format!(
            "the name must be 1 to {MAX_NAME_CHARS} characters, without control characters"
        )));
    }
    Ok(name.to_owned())
}

/// Mints and stores a key, `by` the session's key; its token is in the answer and nowhere else.
pub async fn create(
    store: &dyn Store,
    by: &str,
    name: &str,
    scopes: BTreeSet<Scope>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NewApiKey, ApiError> {
    let key = api_keys::generate(name, scopes, now);
    store.insert_api_key(&key.stored).await?;
    tracing::info!(
        key_id = %key.stored.key_id,
        scopes = %key.stored.scopes_text(),
        %by,
        "API key created from the console"
    );
    Ok(key)
}

/// Revokes a key, `by` the session's key (already revoked: unchanged); 404 when there is no
/// such key.
pub async fn revoke(
    store: &dyn Store,
    by: &str,
    key_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StoredApiKey, ApiError> {
    let key = store
        .revoke_api_key(key_id, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(%key_id, %by, "API key revoked from the console");
    Ok(key)
}

/// One key of the list, newest first, without its hash.
pub async fn list(store: &dyn Store) -> Result<Vec<StoredApiKey>, ApiError> {
    let mut keys = store.api_keys().await?;
    keys.sort_by_key(|key| std::cmp::Reverse(key.created_at));
    for key in &mut keys {
        key.secret_hash.clear();
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_gets_only_scopes_the_session_holds() {
        let session: BTreeSet<Scope> = [Scope::AdminRead, Scope::AdminWrite].into();
        let granted = granted_scopes(&session, &["admin:read".into()]).expect("held");
        assert_eq!(granted, [Scope::AdminRead].into());
        assert!(matches!(
            granted_scopes(&session, &["events:read".into()]),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            granted_scopes(&session, &["root".into()]),
            Err(ApiError::InvalidRequest(_))
        ));
        assert!(matches!(
            granted_scopes(&session, &[]),
            Err(ApiError::InvalidRequest(_))
        ));
    }

    #[test]
    fn a_key_is_revoked_only_by_a_session_holding_its_scopes() {
        let key = |scopes: &[Scope]| StoredApiKey {
            key_id: "0123456789abcdef".into(),
            secret_hash: vec![],
            scopes: scopes.iter().copied().collect(),
            name: "k".into(),
            created_at: chrono::Utc::now(),
            revoked_at: None,
        };
        let session: BTreeSet<Scope> = [Scope::AdminRead, Scope::AdminWrite].into();
        assert!(may_revoke(&session, &key(&[Scope::AdminRead])).is_ok());
        assert!(may_revoke(&session, &key(&[Scope::AdminRead, Scope::AdminWrite])).is_ok());
        assert!(matches!(
            may_revoke(&session, &key(&[Scope::AdminRead, Scope::EventsRead])),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(key_name("  ops  ").expect("fine"), "ops");
        for bad in ["", "   ", "a\nb", &"x".repeat(MAX_NAME_CHARS + 1)] {
            assert!(key_name(bad).is_err(), "{bad:?}");
        }
        assert!(key_name(&"运".repeat(MAX_NAME_CHARS)).is_ok());
    }
}
