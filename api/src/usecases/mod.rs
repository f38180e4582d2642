//! Use cases: load aggregates, decide, append. The HTTP layer only translates.

pub mod admin;
pub mod encrypted_data;
pub mod login;
pub mod profile;
pub mod rejections;
pub mod reveal;
pub mod revocation;
pub mod session_views;
pub mod sessions;
pub mod streams;
pub mod views;
