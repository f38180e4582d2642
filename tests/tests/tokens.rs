//! Access tokens, refresh rotation, logout, introspection, JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use identity_tests::{assert_problem, both_backends, World, ADMIN_TOKEN, APP_A, APP_B};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

both_backends! {
    World:
    access_token_verifies_with_the_jwks,
    tampered_and_unsigned_tokens_are_refused,
    refresh_rotates_and_reuse_revokes,
    logout_ends_the_session,
    introspection_sees_revocation,
    introspection_needs_a_key_with_its_scope,
    refresh_tokens_are_not_introspectable,
}

async fn get_me(world: &World, token: &str) -> reqwest::Response {
    world
        .http
        .get(world.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("answer")
}

async fn post_json(world: &World, path: &str, body: Value) -> reqwest::Response {
    world
        .http
        .post(world.url(path))
        .json(&body)
        .send()
        .await
        .expect("answer")
}

async fn access_token_verifies_with_the_jwks(world: World) {
    let login = world.login(APP_A, "alice").await;
    let token = login["access_token"].as_str().expect("token");
    let jwks: JwkSet = world
        .http
        .get(world.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JWKS");
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("key published");
    // As the README tells another backend to verify: issuer, expiry and audience = its appid.
    let key = DecodingKey::from_jwk(jwk).expect("key");
    let verifier_of = |appid: &str| {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&["identityd-test"]);
        validation.set_audience(&[appid]);
        validation
    };
    let claims = jsonwebtoken::decode::<Value>(token, &key, &verifier_of(APP_A))
        .expect("verifies")
        .claims;
    assert_eq!(claims["sub"], login["user"]["user_id"]);
    assert_eq!(claims["aud"], APP_A);
    assert_eq!(claims["appid"], APP_A);
    // The backend of another app of the same deployment refuses it.
    assert!(jsonwebtoken::decode::<Value>(token, &key, &verifier_of(APP_B)).is_err());

    // A second instance signs with the same key, so tokens verify anywhere.
    let second = world.spawn_instance(|_| {}).await;
    let response = world
        .http
        .get(format!("{}/v1/me", second.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
}

async fn tampered_and_unsigned_tokens_are_refused(world: World) {
    let login = world.login(APP_A, "mallory").await;
    let token = login["access_token"].as_str().expect("token");
    let parts: Vec<&str> = token.split('.').collect();

    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    claims["sub"] = json!("00000000-0000-7000-8000-000000000000");
    let forged_claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    assert_problem(get_me(&world, &tampered).await, 401, "unauthorized").await;

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    assert_problem(get_me(&world, &unsigned).await, 401, "unauthorized").await;

    let hs_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let hmac = format!("{hs_header}.{}.{}", parts[1], parts[2]);
    assert_problem(get_me(&world, &hmac).await, 401, "unauthorized").await;

    assert_problem(get_me(&world, "garbage").await, 401, "unauthorized").await;
    let response = world
        .http
        .get(world.url("/v1/me"))
        .send()
        .await
        .expect("answer");
    assert!(response.headers().contains_key("www-authenticate"));
    assert_problem(response, 401, "unauthorized").await;
    assert_eq!(
        get_me(&world, token).await.status(),
        200,
        "the genuine token still works"
    );
}

async fn refresh_rotates_and_reuse_revokes(world: World) {
    let login = world.login(APP_A, "rita").await;
    let first = login["refresh_token"].as_str().expect("refresh").to_owned();

    let response = post_json(
        &world,
        "/v1/token/refresh",
        json!({ "refresh_token": first }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.expect("JSON");
    let second = rotated["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(first, second);
    let access = rotated["access_token"].as_str().expect("access").to_owned();
    assert_eq!(get_me(&world, &access).await.status(), 200);

    // The rotated-away token comes back: the whole session is revoked.
    let reuse = post_json(
        &world,
        "/v1/token/refresh",
        json!({ "refresh_token": first }),
    )
    .await;
    assert_problem(reuse, 401, "unauthorized").await;
    let after = post_json(
        &world,
        "/v1/token/refresh",
        json!({ "refresh_token": second }),
    )
    .await;
    assert_problem(after, 401, "unauthorized").await;
    assert_problem(get_me(&world, &access).await, 401, "unauthorized").await;

    let forged = post_json(
        &world,
        "/v1/token/refresh",
        json!({ "refresh_token": "rt1.AAAA" }),
    )
    .await;
    assert_problem(forged, 401, "unauthorized").await;
}

async fn logout_ends_the_session(world: World) {
    let login = world.login(APP_A, "leo").await;
    let access = login["access_token"].as_str().expect("access");
    let other = world.login(APP_A, "leo").await;

    let response = world
        .http
        .post(world.url("/v1/logout"))
        .bearer_auth(access)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 204);
    assert_problem(get_me(&world, access).await, 401, "unauthorized").await;
    let refresh = post_json(
        &world,
        "/v1/token/refresh",
        json!({ "refresh_token": login["refresh_token"] }),
    )
    .await;
    assert_problem(refresh, 401, "unauthorized").await;
    let other_access = other["access_token"].as_str().expect("access");
    assert_eq!(
        get_me(&world, other_access).await.status(),
        200,
        "other sessions live on"
    );
}

async fn introspect_as(world: &World, credential: &str, token: &str) -> reqwest::Response {
    world
        .http
        .post(world.url("/v1/token/introspect"))
        .bearer_auth(credential)
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("answer")
}

async fn introspection_sees_revocation(world: World) {
    let key = world.api_key("tokens:introspect").await;
    let login = world.login(APP_A, "ivy").await;
    let access = login["access_token"].as_str().expect("access");

    let active: Value = introspect_as(&world, &key, access)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], login["user"]["user_id"]);
    assert_eq!(active["token_type"], "access_token");

    let form: Value = world
        .http
        .post(world.url("/v1/token/introspect"))
        .bearer_auth(&key)
        .form(&[("token", access), ("token_type_hint", "access_token")])
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(form["active"], true);

    world
        .http
        .post(world.url("/v1/logout"))
        .bearer_auth(access)
        .send()
        .await
        .expect("answer");
    for token in [access, "not-a-token"] {
        let answer: Value = introspect_as(&world, &key, token)
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(answer, json!({ "active": false }));
    }
}

async fn introspection_needs_a_key_with_its_scope(world: World) {
    let login = world.login(APP_A, "ian").await;
    let access = login["access_token"].as_str().expect("access");

    let anonymous = post_json(&world, "/v1/token/introspect", json!({ "token": access })).await;
    assert_problem(anonymous, 401, "unauthorized").await;
    let anonymous_form = world
        .http
        .post(world.url("/v1/token/introspect"))
        .form(&[("token", access)])
        .send()
        .await
        .expect("answer");
    assert_problem(anonymous_form, 401, "unauthorized").await;
    let unknown = "idk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_problem(
        introspect_as(&world, unknown, access).await,
        401,
        "unauthorized",
    )
    .await;
    // A user's own access token is no credential here, nor a key of another scope.
    assert_problem(
        introspect_as(&world, access, access).await,
        403,
        "forbidden",
    )
    .await;
    let admin = world.api_key("admin:read,admin:write,events:read").await;
    assert_problem(
        introspect_as(&world, &admin, access).await,
        403,
        "forbidden",
    )
    .await;

    for credential in [
        world.api_key("tokens:introspect").await,
        ADMIN_TOKEN.to_owned(),
    ] {
        let answer: Value = introspect_as(&world, &credential, access)
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(answer["active"], true, "{answer}");
    }
}

async fn refresh_tokens_are_not_introspectable(world: World) {
    let key = world.api_key("tokens:introspect").await;
    let login = world.login(APP_A, "rex").await;
    let refresh = login["refresh_token"].as_str().expect("refresh");
    let answer: Value = introspect_as(&world, &key, refresh)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer, json!({ "active": false }));
    let hinted: Value = world
        .http
        .post(world.url("/v1/token/introspect"))
        .bearer_auth(&key)
        .form(&[("token", refresh), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(hinted, json!({ "active": false }));
    // Probing spent nothing: the refresh token still rotates once.
    let rotated = post_json(
        &world,
        "/v1/token/refresh",
        json!({ "refresh_token": refresh }),
    )
    .await;
    assert_eq!(rotated.status(), 200);
}
