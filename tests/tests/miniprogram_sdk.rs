//! The mini-program SDK end to end: its build under Node (`clients/miniprogram/test/e2e/run.mjs`)
//! with `wx.login`, `wx.request` and `wx.uploadFile` backed by real HTTP, against the real
//! service and the WeChat simulator: login, profile with a real PNG upload served back, a
//! nickname the simulated check rejects, phone (and a refusal), legacy profile, refresh, a
//! silent login after refresh-token reuse, a second device's session ended, logout.

use std::process::Command;

use identity_tests::node::built_sdk;
use identity_tests::{both_backends, World, APP_A};
use image::{ImageFormat, Rgba, RgbaImage};
use serde_json::Value;

both_backends! {
    World:
    the_sdk_runs_a_phone_session_end_to_end,
}

/// Every step the runner takes; each must report `ok`.
const STEPS: [&str; 12] = [
    "login",
    "me",
    "avatar",
    "nickname",
    "nickname_rejected",
    "phone",
    "phone_denied",
    "legacy_profile",
    "refresh",
    "relogin_after_reuse",
    "sessions",
    "logout",
];

async fn the_sdk_runs_a_phone_session_end_to_end(world: World) {
    let Some(sdk) = built_sdk() else {
        return;
    };
    let avatar = std::env::temp_dir().join(format!("identityd-sdk-{}.png", uuid::Uuid::now_v7()));
    RgbaImage::from_pixel(48, 32, Rgba([200, 40, 90, 255]))
        .save_with_format(&avatar, ImageFormat::Png)
        .expect("write the avatar");
    let user = format!("sdk-{}", uuid::Uuid::now_v7().simple());
    let (base, sim) = (world.url(""), world.sim_url().to_owned());
    let runner = sdk.join("test/e2e/run.mjs");
    let picture = avatar.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(runner)
            .env("IDENTITY_URL", base)
            .env("SIM_URL", sim)
            .env("APPID", APP_A)
            .env("USER", user)
            .env("AVATAR_PNG", picture)
            .output()
    })
    .await
    .expect("join")
    .expect("run node");
    let _ = std::fs::remove_file(&avatar);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the runner failed:\n{stdout}\n{stderr}"
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(names, STEPS, "every step, in order:\n{stdout}");
    for step in &steps {
        assert_eq!(step["ok"], true, "{step}");
    }
}
