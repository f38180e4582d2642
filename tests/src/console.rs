//! A browser's part for the admin console, over plain HTTP: no redirects followed, the session
//! cookie kept by hand, CSRF tokens read from the pages.

use reqwest::header::{self, HeaderMap};
use reqwest::{redirect, Response};

/// One browser talking to one service instance.
pub struct ConsoleClient {
    pub base: String,
    http: reqwest::Client,
    /// `name=value` of the session cookie, once signed in.
    pub cookie: Option<String>,
}

impl ConsoleClient {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .expect("client"),
            cookie: None,
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.with_cookie(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .expect("GET")
    }

    /// The page at `path`, which must answer 200; its HTML.
    pub async fn page(&self, path: &str) -> String {
        let answer = self.get(path).await;
        assert_eq!(answer.status(), 200, "GET {path}");
        answer.text().await.expect("HTML")
    }

    /// A form post (`application/x-www-form-urlencoded`) with the session cookie.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.with_cookie(self.http.post(format!("{}{path}", self.base)))
            .form(fields)
            .send()
            .await
            .expect("POST")
    }

    /// Posts the sign-in form with `key`; keeps the session cookie it sets, if any.
    pub async fn sign_in(&mut self, key: &str) -> Response {
        let answer = self.post("/console/sign-in", &[("api_key", key)]).await;
        if let Some(cookie) = set_cookie(answer.headers()) {
            self.cookie = cookie.split(';').next().map(str::to_owned);
        }
        answer
    }

    /// Signs in with `key`, which must succeed.
    pub async fn signed_in(base: &str, key: &str) -> Self {
        let mut client = Self::new(base);
        let answer = client.sign_in(key).await;
        assert_eq!(answer.status(), 303, "sign-in with a good key");
        assert!(client.cookie.is_some(), "a session cookie");
        client
    }

    /// The CSRF token of the session, read from a signed-in page.
    pub async fn csrf(&self) -> String {
        csrf_of(&self.page("/console").await)
    }
}

/// The session cookie a response sets (`Set-Cookie` line), if any.
pub fn set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.contains("identity_console="))
        .map(str::to_owned)
}

/// The value of the first `csrf` hidden field of a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    let end = html[start..].find('"').expect("the field's end");
    html[start..start + end].to_owned()
}

/// Where a redirect points.
pub fn location(answer: &Response) -> &str {
    answer
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
