//! `/.well-known/jwks.json`: the public keys other backends verify our access tokens with.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::state::AppState;
use crate::http::ApiError;

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
        (status = 200, description = "The JSON Web Key Set", body = Jwks,
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
        (status = 500, description = "`internal`: the signer's key set could not be read (details are logged, never sent)"),
    )
)]
async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    // The signer hands out the set as JSON; read into the typed answer, so what is sent is
    // what the document says (an unknown field fails here rather than reaching a client).
    let keys: Jwks =
        serde_json::from_value(state.access_tokens.jwks()).map_err(ApiError::internal)?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(keys)))
}

/// A JSON Web Key Set (RFC 7517).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    #[schema(example = "OKP")]
    pub kty: String,
    #[schema(example = "Ed25519")]
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The key id an access token's header names (the RFC 7638 thumbprint).
    pub kid: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub key_use: String,
    #[schema(example = "EdDSA")]
    pub alg: String,
}
