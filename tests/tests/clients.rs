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
    let (base, sim) = (world.url(""), world.sim_url().to_owned());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("npm")
            .args(["run", "--silent", "e2e"])
            .current_dir(demo)
            .env("IDENTITYD_URL", base)
            .env("IDENTITYD_SIM_URL", sim)
            .env("IDENTITYD_APPID", APP_A)
            .output()
    })
    .await
    .expect("join")
    .expect("run npm");
    assert!(
        output.status.success(),
        "the demo's end-to-end run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
