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
/// Cacheable for 5 minutes.
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
