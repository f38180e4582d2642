//! Key rotation: `identityd keys rotate` reaches every running instance without a restart;
//! `identityd keys rotate-master` re-wraps the keyring, and everything sealed, MAC'd or
//! hashed before still works under the new master key alone.

use std::time::{Duration, Instant};

use domain::AppId;
use identity_tests::{both_backends, World, ADMIN_TOKEN, APP_A};
use infra::crypto::MasterKey;
use infra::wechat::sim::Simulator;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{json, Value};

both_backends! {
    a_rotated_signing_key_reaches_every_instance_and_old_tokens_still_verify,
    after_rotate_master_the_new_key_alone_opens_everything,
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

async fn login_at(world: &World, base: &str, user: &str) -> Value {
    let code = world.wx_login(APP_A, user).await;
    let answer = world
        .http
        .post(format!("{base}/v1/wechat/login"))
        .json(&json!({ "appid": APP_A, "code": code }))
        .send()
        .await
        .expect("service answers");
    assert_eq!(answer.status(), 200);
    answer.json().await.expect("JSON")
}

async fn me_at(world: &World, base: &str, token: &str) -> reqwest::Response {
    world
        .http
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("service answers")
}

async fn jwks_at(world: &World, base: &str) -> JwkSet {
    world
        .http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .expect("service answers")
        .json()
        .await
        .expect("JWKS")
}

async fn a_rotated_signing_key_reaches_every_instance_and_old_tokens_still_verify(world: World) {
    let second = world.spawn_instance(|_| {}).await;
    let bases = [world.app.base.clone(), second.base.clone()];
    let before = login_at(&world, &bases[0], "rotor").await;
    let old_token = before["access_token"].as_str().expect("token").to_owned();
    let old_kid = kid(&old_token);

    let added = api::keys::rotate_signing_key(&world.config())
        .await
        .expect("keys rotate");
    assert_ne!(added.kid, old_kid);

    // Within the reload interval (1 s here) plus the activation delay, both instances sign
    // with the new key, without a restart.
    let started = Instant::now();
    for base in &bases {
        loop {
            let login = login_at(&world, base, "rotor").await;
            if kid(login["access_token"].as_str().expect("token")) == added.kid {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{base} still signs with the old key"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for base in &bases {
        let jwks = jwks_at(&world, base).await;
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
    let login = world.login(APP_A, "keeper").await;
    let access = login["access_token"].as_str().expect("token").to_owned();
    let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
    let user_id = login["user"]["user_id"].clone();
    // A sealed profile and a phone number (sealed, with a keyed hash for look-ups).
    let filled = world
        .http
        .put(world.url("/v1/me/profile"))
        .bearer_auth(&access)
        .json(&json!({ "nickname": "Keeper" }))
        .send()
        .await
        .expect("answer");
    assert_eq!(filled.status(), 204);
    let appid = AppId::parse(APP_A).expect("appid");
    let code = world
        .simulator
        .phone_code(&appid, "keeper")
        .expect("phone code");
    let bound = world
        .http
        .post(world.url("/v1/me/phone"))
        .bearer_auth(&access)
        .json(&json!({ "code": code }))
        .send()
        .await
        .expect("answer");
    assert_eq!(bound.status(), 204);
    world.wait_for_projections(Duration::from_secs(5)).await;
    // Encrypted profile data under the session_key sealed at that login.
    let wx: Value = world
        .http
        .post(format!("{}/sim/getUserProfile", world.sim_base))
        .json(&json!({ "appid": APP_A, "user": "keeper", "profile": { "nickName": "Keeper" } }))
        .send()
        .await
        .expect("simulator answers")
        .json()
        .await
        .expect("JSON");

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
    let rotation = api::keys::rotate_master(&rotating)
        .await
        .expect("rotate-master");
    assert_eq!(rotation.rewrapped, 1);

    // Restarted with the new key alone.
    let new_only = world
        .spawn_instance(|config| config.master_key = Some(new_key.clone()))
        .await;
    let base = &new_only.base;
    assert_eq!(me_at(&world, base, &access).await.status(), 200);
    let refreshed = world
        .http
        .post(format!("{base}/v1/token/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        refreshed.status(),
        200,
        "a refresh token MAC'd before the rotation"
    );
    let refreshed: Value = refreshed.json().await.expect("JSON");
    let access = refreshed["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let authorized = world
        .http
        .post(format!("{base}/v1/me/profile/authorize"))
        .bearer_auth(&access)
        .json(&json!({
            "raw_data": wx["rawData"], "signature": wx["signature"],
            "encrypted_data": wx["encryptedData"], "iv": wx["iv"],
        }))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        authorized.status(),
        204,
        "the session_key sealed before the rotation opens"
    );
    let me: Value = me_at(&world, base, &access)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(me["profile"]["nickname"], "Keeper", "{me}");
    let number = Simulator::phone_number_of("keeper");
    assert_eq!(me["phone"]["pure_phone_number"], number.as_str(), "{me}");
    let again = login_at(&world, base, "keeper").await;
    assert_eq!(
        again["user"]["user_id"], user_id,
        "a returning login finds its user"
    );
    let admin: Value = world
        .http
        .get(format!("{base}/v1/admin/users?phone=%2B86{number}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
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
