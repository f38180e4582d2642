//! Sessions of the admin console (migration 0018): an API key exchanged once for a cookie.
//! The store keeps a hash of the session token, never the token.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::api_keys::Scope;

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsoleSession {
    /// SHA-256 of the session token (the cookie's value).
    pub token_hash: Vec<u8>,
    /// The API key signed in with (`bootstrap` for `IDENTITY_ADMIN_TOKEN`).
    pub key_id: String,
    /// The key's scopes at sign-in.
    pub scopes: BTreeSet<Scope>,
    /// Sessions of the bootstrap token: an HMAC of that token under the session token, to
    /// tell whether `IDENTITY_ADMIN_TOKEN` is still the token signed in with.
    pub bootstrap_check: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// What bounds the table when a session is added.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleSessionBounds {
    /// Sessions last seen before this are over (idle expiry), and deleted.
    pub idle_before: DateTime<Utc>,
    /// Sessions created before this are over (absolute expiry), and deleted.
    pub created_before: DateTime<Utc>,
    /// A key keeps at most this many sessions: the oldest go first.
    pub max_per_key: u32,
}

#[async_trait]
pub trait ConsoleSessionStore: Send + Sync {
    /// Adds the session, in one transaction with deleting every expired session and this key's
    /// oldest beyond `bounds.max_per_key`.
    async fn insert_console_session(
        &self,
        session: &StoredConsoleSession,
        bounds: ConsoleSessionBounds,
    ) -> Result<(), StoreError>;
    async fn console_session(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<StoredConsoleSession>, StoreError>;
    /// Records that the session was used at `at`.
    async fn touch_console_session(
        &self,
        token_hash: &[u8],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Ends the session (sign-out, expiry, a revoked key); whether it existed.
    async fn delete_console_session(&self, token_hash: &[u8]) -> Result<bool, StoreError>;
}
