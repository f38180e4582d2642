//! The black-box harness: `World::start` runs the real service on port 0 against a fresh
//! database of either backend, with the WeChat simulator in-process; tests talk to it over
//! real HTTP through [`Call`] and the typed shorthands, and check answers with
//! [`assert_problem`] and [`json_of`].

mod answers;
pub mod browser;
mod captured;
mod cloud;
mod conformance;
pub mod console;
mod log;
pub mod node;
mod requests;
mod streams;
mod world;

pub use answers::*;
pub use captured::Captured;
pub use cloud::Signed;
pub use log::database_text;
pub use requests::{Call, Login};
pub use streams::{assert_more_arrives, until_ended};
pub use testkit::{both_backends, Backend};
pub use world::{TestApp, TestClock, World};

/// The admin token every test service is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Two apps bound to one Open Platform account, and one standalone app.
pub const APP_A: &str = "wxa000000000000001";
pub const APP_B: &str = "wxb000000000000002";
pub const APP_C: &str = "wxc000000000000003";

/// `APP_A`'s message-push token; the simulator pushes its image-check verdicts for `APP_A`
/// to the world's first instance with it (the other apps have none).
pub const PUSH_TOKEN_A: &str = "worldPushTokenA0123456789abcdefX";

/// The cloud-function login secret of `APP_A` (the other apps have none).
pub const CLOUD_SECRET_A: &str = "cloud-secret-a-0123456789abcdef";
