//! HTTP: routes, extractors, errors, rate limiting.

pub mod error;
pub mod extract;
pub mod rate_limit;
pub mod routes;

pub use error::ApiError;
