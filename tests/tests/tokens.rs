//! Access tokens, refresh rotation, logout, introspection, JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use identity_tests::{assert_problem, both_backends, json_of, World, ADMIN_TOKEN, APP_A, APP_B};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
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

async fn access_token_verifies_with_the_jwks(world: World) {
    let login = world.login(APP_A, "alice").await;
    let token = login["access_token"].as_str().expect("token");
    let jwks = world.jwks_at(&world.app.base).await;
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
        .call_at(&second.base, Method::GET, "/v1/me")
        .bearer(token)
        .send()
        .await;
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
    assert_problem(world.me(&tampered).await, 401, "unauthorized").await;

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    assert_problem(world.me(&unsigned).await, 401, "unauthorized").await;

    let hs_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let hmac = format!("{hs_header}.{}.{}", parts[1], parts[2]);
    assert_problem(world.me(&hmac).await, 401, "unauthorized").await;

    assert_problem(world.me("garbage").await, 401, "unauthorized").await;
    let response = world.get("/v1/me").await;
    assert!(response.headers().contains_key("www-authenticate"));
    assert_problem(response, 401, "unauthorized").await;
    assert_eq!(
        world.me(token).await.status(),
        200,
        "the genuine token still works"
    );
}

async fn refresh_rotates_and_reuse_revokes(world: World) {
    let login = world.login(APP_A, "rita").await;
    let first = login["refresh_token"].as_str().expect("refresh").to_owned();

    let response = world.refresh(&first).await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.expect("JSON");
    let second = rotated["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(first, second);
    let access = rotated["access_token"].as_str().expect("access").to_owned();
    assert_eq!(world.me(&access).await.status(), 200);

    // The rotated-away token comes back: the whole session is revoked.
    let reuse = world.refresh(&first).await;
    assert_problem(reuse, 401, "unauthorized").await;
    let after = world.refresh(&second).await;
    assert_problem(after, 401, "unauthorized").await;
    assert_problem(world.me(&access).await, 401, "unauthorized").await;

    let forged = world.refresh("rt1.AAAA").await;
    assert_problem(forged, 401, "unauthorized").await;
}

async fn logout_ends_the_session(world: World) {
    let login = world.login(APP_A, "leo").await;
    let access = login["access_token"].as_str().expect("access");
    let other = world.login(APP_A, "leo").await;

    let response = world.logout(access).await;
    assert_eq!(response.status(), 204);
    assert_problem(world.me(access).await, 401, "unauthorized").await;
    let refresh = world.refresh(&login.refresh).await;
    assert_problem(refresh, 401, "unauthorized").await;
    let other_access = other["access_token"].as_str().expect("access");
    assert_eq!(
        world.me(other_access).await.status(),
        200,
        "other sessions live on"
    );
}

async fn introspection_sees_revocation(world: World) {
    let key = world.api_key("tokens:introspect").await;
    let login = world.login(APP_A, "ivy").await;
    let access = login["access_token"].as_str().expect("access");

    let active = json_of(world.introspect_as(&key, access).await).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], login["user"]["user_id"]);
    assert_eq!(active["token_type"], "access_token");

    let form = introspect_form(
        &world,
        &key,
        &[("token", access), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(form["active"], true);

    world.logout(access).await;
    for token in [access, "not-a-token"] {
        let answer = json_of(world.introspect_as(&key, token).await).await;
        assert_eq!(answer, json!({ "active": false }));
    }
}

async fn introspection_needs_a_key_with_its_scope(world: World) {
    let login = world.login(APP_A, "ian").await;
    let access = login["access_token"].as_str().expect("access");

    let anonymous = world
        .post("/v1/token/introspect", json!({ "token": access }))
        .await;
    assert_problem(anonymous, 401, "unauthorized").await;
    let anonymous_form = world
        .call(Method::POST, "/v1/token/introspect")
        .form(&[("token", access)])
        .send()
        .await;
    assert_problem(anonymous_form, 401, "unauthorized").await;
    let unknown = "idk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_problem(
        world.introspect_as(unknown, access).await,
        401,
        "unauthorized",
    )
    .await;
    // A user's own access token is no credential here, nor a key of another scope.
    assert_problem(world.introspect_as(access, access).await, 403, "forbidden").await;
    let admin = world.api_key("admin:read,admin:write,events:read").await;
    assert_problem(world.introspect_as(&admin, access).await, 403, "forbidden").await;

    for credential in [
        world.api_key("tokens:introspect").await,
        ADMIN_TOKEN.to_owned(),
    ] {
        let answer = json_of(world.introspect_as(&credential, access).await).await;
        assert_eq!(answer["active"], true, "{answer}");
    }
}

async fn refresh_tokens_are_not_introspectable(world: World) {
    let key = world.api_key("tokens:introspect").await;
    let login = world.login(APP_A, "rex").await;
    let refresh = login["refresh_token"].as_str().expect("refresh");
    let answer = json_of(world.introspect_as(&key, refresh).await).await;
    assert_eq!(answer, json!({ "active": false }));
    let hint = [("token", refresh), ("token_type_hint", "refresh_token")];
    let hinted = introspect_form(&world, &key, &hint).await;
    assert_eq!(hinted, json!({ "active": false }));
    // Probing spent nothing: the refresh token still rotates once.
    let rotated = world.refresh(refresh).await;
    assert_eq!(rotated.status(), 200);
}

/// `POST /v1/token/introspect` as a form (RFC 7662's encoding) with `key`: the answer.
async fn introspect_form(world: &World, key: &str, fields: &[(&str, &str)]) -> Value {
    let call = world.call(Method::POST, "/v1/token/introspect").bearer(key);
    json_of(call.form(fields).send().await).await
}
