//! Use cases: load aggregates, decide, append. The HTTP layer only translates.

pub mod admin;
pub mod login;
pub mod profile;
pub mod reveal;
pub mod sessions;
pub mod streams;
pub mod views;
