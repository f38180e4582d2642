//! HTTP: routes, extractors, errors, rate limiting.

pub mod api_key;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod query;
pub mod rate_limit;
pub mod routes;

pub use error::ApiError;
