//! Infrastructure: the event store, the WeChat client and simulator, crypto and tokens, the
//! analytics view of events and the NATS relay.

pub mod analytics;
pub mod api_keys;
pub mod backoff;
pub mod crypto;
pub mod database_url;
pub mod failure_log;
pub mod keyring;
pub mod personal_data;
pub mod redact;
pub mod relay;
pub mod signed_request;
pub mod sql;
pub mod store;
pub mod tokens;
pub mod wechat;
