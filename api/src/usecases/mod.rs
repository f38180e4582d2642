//! Use cases: load aggregates, decide, append, through one command executor (`command`). They
//! know nothing of HTTP: a caller gives a `Context` and gets a view or a `UseCaseError`, which
//! `http::error` answers.

pub mod admin;
pub mod avatar;
pub mod command;
pub mod content_check;
pub mod context;
pub mod encrypted_data;
pub mod error;
pub mod login;
pub mod lookup;
pub mod ops_metrics;
pub mod profile;
pub mod rejection_counts;
pub mod rejections;
pub mod reveal;
pub mod revocation;
pub mod services;
pub mod session_views;
pub mod sessions;
pub mod streams;
pub mod user_writes;
pub mod views;

pub use context::Context;
pub use error::UseCaseError;
pub use services::Services;
