//! WeChat's server APIs: a client for the real service (or anything speaking its protocol) and
//! a simulator of it for local development and tests.
//!
//! Facts about WeChat's endpoints, fields and errcodes live in `shared/WECHAT.md`.

mod access_token;
mod check_session;
mod client;
mod clock;
pub mod content;
mod error;
mod metrics;
mod phone;
pub mod push;
mod session_key;
pub mod sim;
pub mod user_data;

pub use client::{
    AppCredentials, Code2Session, WeChatClient, WeChatClientConfig, IDLE_CONNECTIONS,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use content::{TextVerdict, TraceId, Verdict};
pub use error::WeChatError;
pub use metrics::WeChatCalls;
pub use phone::PhoneInfo;
pub use session_key::SessionKey;
