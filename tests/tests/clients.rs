//! The phone-side packages' own test suites (under Node), so the one test command covers them:
//! the SDK's unit tests with a fake `wx`, the demo mini-program's page tests, and the demo's
//! real pages with the real SDK against a real service (what a person does in DevTools).

use std::process::Command;

use identity_tests::node::{built_sdk, npm_package, npm_run};
use identity_tests::{both_backends, World, APP_A};

both_backends! {
    World:
    the_demo_pages_work_against_the_service,
}

#[test]
fn the_sdk_unit_tests_pass() {
    if let Some(sdk) = npm_package("miniprogram") {
        npm_run(&sdk, "test");
    }
}

#[test]
fn the_demo_page_tests_pass() {
    if let Some(demo) = npm_package("miniprogram-demo") {
        npm_run(&demo, "test");
    }
}

/// `clients/miniprogram-demo/e2e/demo.e2e.js`: login on launch, avatar and nickname, phone,
/// a second device's session ended from the sessions page.
async fn the_demo_pages_work_against_the_service(world: World) {
    let (Some(_sdk), Some(demo)) = (built_sdk(), npm_package("miniprogram-demo")) else {
        return;
    };
    let mut npm = Command::new("npm");
    npm.args(["run", "--silent", "e2e"])
        .current_dir(demo)
        .env("IDENTITYD_URL", world.url(""))
        .env("IDENTITYD_SIM_URL", world.sim_url())
        .env("IDENTITYD_APPID", APP_A);
    tokio::task::spawn_blocking(move || testkit::run_ok(&mut npm, "the demo's end-to-end run"))
        .await
        .expect("join");
}
