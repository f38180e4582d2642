//! HTTP: routes, extractors, errors, rate limiting.

pub mod api_key;
pub mod client_ip;
pub mod cloud_signature;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod query;
pub mod rate_limit;
pub mod responses;
pub mod routes;
pub mod schemas;
pub mod server;
pub mod stream_slots;
pub mod timeout;

pub use error::ApiError;
