//! `/.well-known/jwks.json`: the public keys other backends verify our access tokens with.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

/// The access-token signing keys (JWKS)
///
/// Ed25519 public keys (`kty` OKP, `alg` EdDSA); an access token's `kid` header names the key.
/// Verify `iss`, `exp` and `aud` (your mini-program's appid). After `identityd keys rotate`
/// a new key appears here before it signs, and a retired one stays until its last token has
/// expired. Cacheable for 5 minutes: fetch the set again when a token names an unknown `kid`.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "well-known",
    responses(
        (status = 200, description = "The JSON Web Key Set", body = crate::http::openapi::Jwks,
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
    )
)]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.access_tokens.jwks()),
    )
}
