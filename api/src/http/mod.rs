//! HTTP: the router and its state, routes, extractors, errors, rate limiting.

pub mod api_key;
pub mod app;
pub mod body_limit;
pub mod client_ip;
pub mod cloud_signature;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod query;
pub mod rate_limit;
pub mod request_metrics;
pub mod responses;
pub mod routes;
pub mod schemas;
pub mod server;
pub mod state;
pub mod stream_slots;
pub mod timeout;
pub mod values;

pub use error::ApiError;
