//! The HTTP API and the `identityd` command.

pub mod cli;
pub mod config;
pub mod console;
pub mod dev;
pub mod http;
pub mod keys;
pub mod startup;
pub mod telemetry;
pub mod usecases;
