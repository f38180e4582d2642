//! The console's stylesheet and script, embedded in the binary and served at
//! `/console/assets/{name}` under a name that carries a hash of their content: a changed file
//! gets a new name, so browsers may cache each one for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::http::ApiError;

struct Asset {
    /// `console-{hash}.css`, as pages link it.
    name: String,
    content_type: &'static str,
    body: &'static [u8],
    etag: HeaderValue,
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Self {
        let digest = hex(&Sha256::digest(body)[..8]);
        Self {
            name: format!("{stem}-{digest}.{ext}"),
            content_type,
            body,
            etag: HeaderValue::from_str(&format!("\"{digest}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
        }
    }

    fn url(&self) -> String {
        format!("/console/assets/{}", self.name)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        Asset::new(
            "console",
            "css",
            "text/css; charset=utf-8",
            include_bytes!("../../assets/console/console.css"),
        ),
        Asset::new(
            "console",
            "js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/console/console.js"),
        ),
    ]
});

static STYLESHEET_URL: LazyLock<String> = LazyLock::new(|| ASSETS[0].url());
static SCRIPT_URL: LazyLock<String> = LazyLock::new(|| ASSETS[1].url());

/// Where pages link the stylesheet.
pub fn stylesheet() -> &'static str {
    &STYLESHEET_URL
}

/// Where pages load the script.
pub fn script() -> &'static str {
    &SCRIPT_URL
}

/// `GET /console/assets/{name}`.
pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::NotFound.into_response();
    };
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag == asset.etag);
    let caching = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
        (header::ETAG, asset.etag.clone()),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, caching).into_response();
    }
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    )];
    (caching, content_type, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        assert!(stylesheet().starts_with("/console/assets/console-"));
        assert!(stylesheet().ends_with(".css"));
        assert!(script().ends_with(".js"));
        assert_ne!(ASSETS[0].name, ASSETS[1].name);
    }
}
