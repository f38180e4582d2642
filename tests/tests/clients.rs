//! The phone-side packages' own test suites (under Node), so the one test command covers them:
//! the SDK's unit tests with a fake `wx`, and the demo mini-program's page tests.

use identity_tests::node::{npm_package, npm_run};

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
