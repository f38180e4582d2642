//! Reading the `Cookie` header and writing `Set-Cookie`, for the console's two cookies (the
//! session, the language).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};

use crate::http::client_ip::TrustedProxies;
use crate::http::state::AppState;

/// The session cookie when served over https: `__Host-` makes browsers refuse it unless it is
/// `Secure`, has `Path=/` and no `Domain`, so no sibling host or plain-http page can set it.
pub const SESSION_COOKIE_HTTPS: &str = "__Host-identity_console";
/// The session cookie over plain http (local development).
pub const SESSION_COOKIE_HTTP: &str = "identity_console";

/// The first value of cookie `name`, over every `Cookie` line.
pub fn get<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Whether the browser reached us over https: the service's public URL says so, or one of our
/// own proxies (`IDENTITY_TRUSTED_PROXIES`) says it terminated https (`X-Forwarded-Proto`).
/// A client's own `X-Forwarded-Proto` is not believed.
pub fn over_https(parts: &Parts, public_url: &str, proxies: &TrustedProxies) -> bool {
    if public_url.starts_with("https://") {
        return true;
    }
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    peer.is_some_and(|peer| proxies.contains(peer))
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next_back())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Whether this request came over https ([`over_https`]), as an extractor.
pub struct Https(pub bool);

impl FromRequestParts<AppState> for Https {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(over_https(
            parts,
            state.public_url.as_str(),
            &state.trusted_proxies,
        )))
    }
}

pub fn session_cookie_name(https: bool) -> &'static str {
    if https {
        SESSION_COOKIE_HTTPS
    } else {
        SESSION_COOKIE_HTTP
    }
}

/// `Set-Cookie` for a cookie only our pages read: HttpOnly, SameSite=Strict, whole site, Secure
/// over https; `None` as the value clears it.
pub fn set(name: &str, value: Option<&str>, https: bool) -> HeaderValue {
    let mut cookie = match value {
        Some(value) => format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    if https {
        cookie.push_str("; Secure");
    }
    // Values are ours (base64url tokens, language tags): always a valid header.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_several_lines() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("identity_console=tok"),
        );
        assert_eq!(get(&headers, "b"), Some("2"));
        assert_eq!(get(&headers, "identity_console"), Some("tok"));
        assert_eq!(get(&headers, "identity"), None);
    }

    #[test]
    fn flags() {
        let https = set(SESSION_COOKIE_HTTPS, Some("x"), true);
        assert_eq!(
            https,
            "__Host-identity_console=x; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        let cleared = set(SESSION_COOKIE_HTTP, None, false);
        assert!(cleared.to_str().expect("ascii").ends_with("Max-Age=0"));
    }
}
