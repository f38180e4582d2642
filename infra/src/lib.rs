//! Infrastructure: the event store, the WeChat client and simulator, crypto and tokens.

pub mod crypto;
pub mod store;
pub mod testing;
pub mod tokens;
pub mod wechat;
