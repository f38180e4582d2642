//! Key rotation: `identityd keys rotate` reaches every running instance without a restart;
//! `identityd keys rotate-master` re-wraps the keyring, and everything sealed, MAC'd or
//! hashed before still works under the new master key alone.

use std::time::{Duration, Instant};

use identity_tests::{
    authorize_body, both_backends, json_of, Login, TestApp, World, ADMIN_TOKEN, APP_A,
};
use infra::crypto::MasterKey;
use infra::store::StoredSigningKey;
use infra::wechat::sim::Simulator;
use reqwest::Method;
use serde_json::{json, Value};

both_backends! {
    World:
    a_rotated_signing_key_reaches_every_instance_and_old_tokens_still_verify,
    after_rotate_master_the_new_key_alone_opens_everything,
    after_rotate_master_with_a_new_root_old_refresh_tokens_answer_401_and_the_rest_works,
    a_retired_signing_key_stops_verifying_on_every_instance,
    a_failing_signing_key_reload_shows_in_readyz_and_keeps_the_loaded_keys,
    instances_with_different_settings_switch_keys_at_the_stored_time,
}

/// Polls `check` every 200 ms until it holds; fails after `deadline`.
async fn until<F: std::future::Future<Output = bool>>(
    deadline: Instant,
    what: &str,
    check: impl Fn() -> F,
) {
    while !check().await {
        assert!(Instant::now() < deadline, "not in time: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

async fn login_at(world: &World, base: &str, user: &str) -> Login {
    world.login_at(base, APP_A, user, None).await
}

/// A second instance beside the world's, configured by `adjust` (it runs while held), and the
/// bases of both.
async fn two_instances(
    world: &World,
    adjust: impl FnOnce(&mut api::config::Config),
) -> (TestApp, [String; 2]) {
    let second = world.spawn_instance(adjust).await;
    let bases = [world.app.base.clone(), second.base.clone()];
    (second, bases)
}

/// The kid of the key `base` signs `user`'s new access token with.
async fn kid_at(world: &World, base: &str, user: &str) -> String {
    kid(&login_at(world, base, user).await.access)
}

/// `identityd keys retire <kid>`.
async fn retire(world: &World, kid: &str) -> anyhow::Result<()> {
    api::keys::retire_signing_key(&world.config(), kid).await
}

/// Asserts `refused` (with its causes) says `what`.
fn assert_refused_for(refused: anyhow::Error, what: &str) {
    let said = format!("{refused:#}");
    assert!(said.contains(what), "{said}");
}

/// `identityd keys rotate`: the key it added.
async fn rotate(world: &World) -> StoredSigningKey {
    api::keys::rotate_signing_key(&world.config())
        .await
        .expect("keys rotate")
}

async fn me_at(world: &World, base: &str, token: &str) -> reqwest::Response {
    world
        .call_at(base, Method::GET, "/v1/me")
        .bearer(token)
        .send()
        .await
}

async fn a_rotated_signing_key_reaches_every_instance_and_old_tokens_still_verify(world: World) {
    let (_second, bases) = two_instances(&world, |_| {}).await;
    let before = login_at(&world, &bases[0], "rotor").await;
    let old_token = before.access.clone();
    let old_kid = kid(&old_token);

    let added = rotate(&world).await;
    assert_ne!(added.kid, old_kid);

    // Within the activation delay (30 s, stored with the key), both instances sign with the
    // new key, without a restart.
    let deadline = Instant::now() + Duration::from_secs(45);
    for base in &bases {
        until(
            deadline,
            &format!("{base} signs with the new key"),
            || async { kid_at(&world, base, "rotor").await == added.kid },
        )
        .await;
    }
    for base in &bases {
        let jwks = world.jwks_at(base).await;
        assert!(
            jwks.find(&added.kid).is_some(),
            "new key published by {base}"
        );
        assert!(jwks.find(&old_kid).is_some(), "retired key kept by {base}");
        // The token signed with the retired key still verifies everywhere.
        assert_eq!(me_at(&world, base, &old_token).await.status(), 200);
    }

    // A reload interval that would break "within a minute" is refused at start.
    for secs in [0, 31] {
        let mut config = world.config();
        config.signing_key_reload_secs = secs;
        let Err(refused) = api::startup::Application::build(&config).await else {
            panic!("started with IDENTITY_SIGNING_KEY_RELOAD_SECS={secs}");
        };
        assert!(refused
            .to_string()
            .contains("IDENTITY_SIGNING_KEY_RELOAD_SECS"));
    }
}

async fn after_rotate_master_the_new_key_alone_opens_everything(world: World) {
    rotate_master_story(world, false).await;
}

/// `rotate-master --new-root`: every sealed row is re-sealed under a new sealing root in one
/// transaction; sessions, profiles, logins and the phone look-up keep working, refresh tokens
/// issued before answer 401 (the user logs in again).
async fn after_rotate_master_with_a_new_root_old_refresh_tokens_answer_401_and_the_rest_works(
    world: World,
) {
    rotate_master_story(world, true).await;
}

async fn rotate_master_story(world: World, new_root: bool) {
    let login = world.login(APP_A, "keeper").await;
    let access = login.access.clone();
    let refresh = login.refresh.clone();
    let user_id = login["user"]["user_id"].clone();
    // A sealed profile and a phone number (sealed, with a keyed hash for look-ups).
    let filled = world
        .put_as(&access, "/v1/me/profile", json!({ "nickname": "Keeper" }))
        .await;
    assert_eq!(filled.status(), 204);
    world.bind_phone(&access, APP_A, "keeper").await;
    world.wait_for_projections(Duration::from_secs(5)).await;
    // Encrypted profile data under the session_key sealed at that login.
    let wx = world
        .get_user_profile(APP_A, "keeper", json!({ "nickName": "Keeper" }))
        .await;

    let old_key = world.config().master_key.expect("a master key");
    let new_key: secrecy::SecretString = MasterKey::generate().to_base64();
    let mut rotating = world.config();
    rotating.master_key = Some(new_key.clone());
    rotating.master_key_previous = Some(old_key.clone());
    // A rolling restart: an instance with both keys starts before the keyring is re-wrapped.
    let rolling = world
        .spawn_instance(|config| *config = rotating.clone())
        .await;
    assert_eq!(me_at(&world, &rolling.base, &access).await.status(), 200);
    let rotation = api::keys::rotate_master(&rotating, new_root)
        .await
        .expect("rotate-master");
    assert_eq!(rotation.rewrapped, 1);
    assert!(!rotation.legacy_root, "a fresh deployment's root is random");
    assert_eq!(rotation.new_root, new_root);
    if new_root {
        let [session_keys, signing_keys, data_keys] = rotation.resealed;
        assert!(
            session_keys >= 1 && signing_keys >= 1 && data_keys >= 1,
            "{rotation:?}"
        );
    }

    // Restarted with the new key alone.
    let new_only = world
        .spawn_instance(|config| config.master_key = Some(new_key.clone()))
        .await;
    let base = &new_only.base;
    assert_eq!(me_at(&world, base, &access).await.status(), 200);
    let refreshed = world
        .call_at(base, Method::POST, "/v1/token/refresh")
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await;
    let access = if new_root {
        assert_eq!(
            refreshed.status(),
            401,
            "a refresh token MAC'd under the old root"
        );
        // The access token is still good: the signing key was re-sealed, not replaced.
        access
    } else {
        assert_eq!(
            refreshed.status(),
            200,
            "a refresh token MAC'd before the rotation"
        );
        let refreshed: Value = refreshed.json().await.expect("JSON");
        refreshed["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    };
    let authorized = world
        .call_at(base, Method::POST, "/v1/me/profile/authorize")
        .bearer(&access)
        .json(&authorize_body(&wx))
        .send()
        .await;
    assert_eq!(
        authorized.status(),
        204,
        "the session_key sealed before the rotation opens"
    );
    let me = json_of(me_at(&world, base, &access).await).await;
    assert_eq!(me["profile"]["nickname"], "Keeper", "{me}");
    let number = Simulator::phone_number_of("keeper");
    assert_eq!(me["phone"]["pure_phone_number"], number.as_str(), "{me}");
    let again = login_at(&world, base, "keeper").await;
    assert_eq!(
        again["user"]["user_id"], user_id,
        "a returning login finds its user"
    );
    let admin = world
        .call_at(
            base,
            Method::GET,
            &format!("/v1/admin/users?phone=%2B86{number}"),
        )
        .bearer(ADMIN_TOKEN)
        .send()
        .await;
    let admin = json_of(admin).await;
    assert_eq!(
        admin["items"][0]["user_id"], user_id,
        "phone look-up: {admin}"
    );

    // The old key alone no longer starts the service, and says why.
    let mut stale = world.config();
    stale.master_key = Some(old_key);
    let refused = match api::startup::Application::build(&stale).await {
        Ok(_) => panic!("started with the old master key alone"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        refused.contains("does not open under IDENTITY_MASTER_KEY"),
        "{refused}"
    );
}

/// `identityd keys retire <kid>` (a leaked key): the key that signs is refused; after a
/// rotation it is retired at once, and within the reload interval (1 s here) both instances
/// drop it from the JWKS, refuse its tokens and sign with the new key.
async fn a_retired_signing_key_stops_verifying_on_every_instance(world: World) {
    let (_second, bases) = two_instances(&world, |_| {}).await;
    let leaked = login_at(&world, &bases[0], "victim").await;
    let leaked_token = leaked.access.clone();
    let leaked_kid = kid(&leaked_token);

    let refused = retire(&world, &leaked_kid)
        .await
        .expect_err("the only key that signs cannot be retired");
    assert_refused_for(refused, "keys rotate");
    assert!(retire(&world, "no-such-kid").await.is_err());
    for base in &bases {
        assert_eq!(me_at(&world, base, &leaked_token).await.status(), 200);
    }

    let added = rotate(&world).await;
    retire(&world, &leaked_kid).await.expect("keys retire");
    let again = retire(&world, &leaked_kid)
        .await
        .expect_err("already retired");
    assert_refused_for(again, "already retired");

    let deadline = Instant::now() + Duration::from_secs(10);
    for base in &bases {
        until(
            deadline,
            &format!("{base} stops trusting the retired key"),
            || async {
                let refused = me_at(&world, base, &leaked_token).await.status() == 401;
                refused && world.jwks_at(base).await.find(&leaked_kid).is_none()
            },
        )
        .await;
    }
    // Every instance has reloaded since the retirement, so every one holds the new key. It
    // signs at once (no activation delay left to wait for), and its tokens verify everywhere.
    for base in &bases {
        let login = login_at(&world, base, "victim").await;
        let token = &login.access;
        assert_eq!(kid(token), added.kid, "{base}");
        for other in &bases {
            assert_eq!(me_at(&world, other, token).await.status(), 200);
        }
    }
}

async fn signing_keys_status(world: &World) -> Value {
    let ready = json_of(world.get("/readyz").await).await;
    ready["signing_keys"].clone()
}

/// A reload that fails (here: a key row that does not open) is logged and visible: `/readyz`
/// shows how long ago the keys were last read, which grows past the reload interval, while the
/// instance keeps signing and verifying with the keys it has.
async fn a_failing_signing_key_reload_shows_in_readyz_and_keeps_the_loaded_keys(world: World) {
    let status = signing_keys_status(&world).await;
    assert_eq!(status["loaded"], 1, "{status}");
    assert_eq!(status["reload_interval_secs"], 1, "{status}");
    assert!(
        status["secs_since_reload"].as_i64().expect("secs") <= 2,
        "{status}"
    );

    let store = infra::store::connect(&world.config().database_url)
        .await
        .expect("database");
    store
        .insert_signing_key(
            &infra::store::StoredSigningKey {
                kid: "unopenable".into(),
                sealed_private_key: vec![1; 64],
                created_at: chrono::Utc::now(),
                activates_at: None,
                retire_after: None,
                retired_at: None,
            },
            Duration::from_secs(30),
            Duration::from_secs(960),
        )
        .await
        .expect("insert");
    let started = Instant::now();
    loop {
        let status = signing_keys_status(&world).await;
        if status["secs_since_reload"].as_i64().expect("secs") >= 3 {
            assert_eq!(status["loaded"], 1, "the loaded keys are kept: {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a failing reload does not show: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let login = world.login(APP_A, "steady").await;
    let token = &login.access;
    assert_eq!(me_at(&world, &world.app.base, token).await.status(), 200);
}

/// Two instances with different reload intervals and token lifetimes: both follow the times
/// stored with the key (by the database's clock), so they switch to the new key together, at
/// its `activates_at`, and both keep the old one published until its `retire_after`.
async fn instances_with_different_settings_switch_keys_at_the_stored_time(world: World) {
    let (_other, bases) = two_instances(&world, |config| {
        config.signing_key_reload_secs = 3;
        config.access_token_ttl_secs = 120;
    })
    .await;
    let old_kid = kid_at(&world, &bases[0], "rotor").await;

    let added = rotate(&world).await;
    let activates_at = added.activates_at.expect("a stored activation");
    let delay = activates_at - added.created_at;
    assert_eq!(delay.num_seconds(), 30, "{added:?}");
    let activates_in = || {
        (activates_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
    };

    // Well past both reload intervals, well before the activation: both still sign with the
    // old key (each instance's own interval would have switched them at 1 s and 3 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(activates_in() > Duration::from_secs(10));
    for base in &bases {
        assert_eq!(kid_at(&world, base, "rotor").await, old_kid, "{base}");
        assert!(
            world.jwks_at(base).await.find(&added.kid).is_some(),
            "{base}"
        );
    }
    tokio::time::sleep(activates_in() + Duration::from_millis(500)).await;
    for base in &bases {
        assert_eq!(kid_at(&world, base, "rotor").await, added.kid, "{base}");
        let jwks = world.jwks_at(base).await;
        assert!(jwks.find(&old_kid).is_some(), "old key kept by {base}");
    }
}
