//! Requests to the service: one builder ([`Call`]) whose [`Call::send`] is the single place a
//! test request goes out, and typed shorthands for the routes tests call most.

use std::ops::Deref;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

use crate::World;

/// A request being built: `world.call(Method::POST, "/v1/…").bearer(token).json(&body).send()`.
pub struct Call {
    method: Method,
    path: String,
    request: RequestBuilder,
}

impl Call {
    pub fn bearer(self, credential: &str) -> Self {
        self.with(|r| r.bearer_auth(credential))
    }

    pub fn json(self, body: &Value) -> Self {
        self.with(|r| r.json(body))
    }

    pub fn form(self, fields: &[(&str, &str)]) -> Self {
        self.with(|r| r.form(fields))
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        self.with(|r| r.header(name, value))
    }

    pub fn user_agent(self, agent: &str) -> Self {
        self.header("user-agent", agent)
    }

    /// Anything else reqwest can do to the request (a raw body, a timeout…).
    pub fn with(mut self, adjust: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Self {
        self.request = adjust(self.request);
        self
    }

    /// Sends the request: every request a test makes through the harness goes out here (the
    /// place for a check of every answer against the spec).
    pub async fn send(self) -> Response {
        let Self {
            method,
            path,
            request,
        } = self;
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("the service answers {method} {path}: {e}"))
    }
}

/// A successful login's answer, with its tokens picked out; reads as the JSON answer too
/// (`login["user"]["user_id"]`).
#[derive(Debug, Clone)]
pub struct Login {
    pub body: Value,
    pub access: String,
    pub refresh: String,
    pub user_id: String,
    /// The session the login opened (the access token's `sid`).
    pub session_id: String,
}

impl Login {
    pub fn of(body: Value) -> Self {
        let text = |value: &Value| value.as_str().expect("a login answer").to_owned();
        let access = text(&body["access_token"]);
        let claims = access.split('.').nth(1).expect("a JWT");
        let claims = URL_SAFE_NO_PAD.decode(claims).expect("base64url claims");
        let claims: Value = serde_json::from_slice(&claims).expect("JSON claims");
        Self {
            session_id: text(&claims["sid"]),
            access,
            refresh: text(&body["refresh_token"]),
            user_id: text(&body["user"]["user_id"]),
            body,
        }
    }
}

impl Deref for Login {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.body
    }
}

impl World {
    /// A request to the first instance.
    pub fn call(&self, method: Method, path: &str) -> Call {
        self.call_at(&self.app.base, method, path)
    }

    /// A request to the instance at `base`.
    pub fn call_at(&self, base: &str, method: Method, path: &str) -> Call {
        Call {
            request: self.http.request(method.clone(), format!("{base}{path}")),
            method,
            path: path.to_owned(),
        }
    }

    /// `GET path`, without credentials.
    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path).send().await
    }

    /// `POST path` with a JSON body, without credentials.
    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path).json(&body).send().await
    }

    /// `GET path` with a bearer credential.
    pub async fn get_as(&self, credential: &str, path: &str) -> Response {
        self.call(Method::GET, path).bearer(credential).send().await
    }

    /// `POST path` with a bearer credential and a JSON body.
    pub async fn post_as(&self, credential: &str, path: &str, body: Value) -> Response {
        self.send_as(Method::POST, credential, path, body).await
    }

    /// `PUT path` with a bearer credential and a JSON body.
    pub async fn put_as(&self, credential: &str, path: &str, body: Value) -> Response {
        self.send_as(Method::PUT, credential, path, body).await
    }

    async fn send_as(&self, method: Method, credential: &str, path: &str, body: Value) -> Response {
        let call = self.call(method, path).bearer(credential);
        call.json(&body).send().await
    }

    /// `DELETE path` with a bearer credential.
    pub async fn delete_as(&self, credential: &str, path: &str) -> Response {
        self.call(Method::DELETE, path)
            .bearer(credential)
            .send()
            .await
    }

    /// `GET path` on the instance at `base`, without credentials.
    pub async fn get_at(&self, base: &str, path: &str) -> Response {
        self.call_at(base, Method::GET, path).send().await
    }

    /// `GET path` as `credential`, answered 200: its JSON body.
    pub async fn get_json(&self, credential: &str, path: &str) -> Value {
        crate::json_of(self.get_as(credential, path).await).await
    }

    /// The items of the first page of a list (`items`) at `path`, answered 200.
    pub async fn items(&self, credential: &str, path: &str) -> Vec<Value> {
        let page = self.get_json(credential, path).await;
        page["items"].as_array().expect("items").clone()
    }

    /// Every item of a cursor-paged list (`items`, `next_cursor`), walked page by page from
    /// `path` (which holds the query, `limit` included).
    pub async fn all_pages(&self, credential: &str, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut page = self.get_json(credential, path).await;
        loop {
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            let Some(cursor) = page["next_cursor"].as_str() else {
                return items;
            };
            page = self
                .get_json(credential, &format!("{path}&cursor={cursor}"))
                .await;
        }
    }

    /// An admin action on a user, with its reason: `POST /v1/admin/users/{user_id}/{action}`
    /// (`block`, `unblock`, `sessions/revoke`).
    pub async fn admin_action(
        &self,
        key: &str,
        user_id: &str,
        action: &str,
        reason: &str,
    ) -> Response {
        let path = format!("/v1/admin/users/{user_id}/{action}");
        self.post_as(key, &path, json!({ "reason": reason })).await
    }

    /// Asserts who may not call `method path` (with `body`, if any): no credential and unknown
    /// keys (malformed or not) answer 401, each of `forbidden` (keys of other scopes, user
    /// tokens) 403.
    pub async fn assert_refused_to(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        forbidden: &[&str],
    ) {
        let call = |credential: Option<&str>| {
            let mut call = self.call(method.clone(), path);
            if let Some(body) = body {
                call = call.json(body);
            }
            if let Some(credential) = credential {
                call = call.bearer(credential);
            }
            call.send()
        };
        let unknown = "idk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for credential in [None, Some("idk_nope.nope"), Some(unknown)] {
            let refused = call(credential).await;
            crate::assert_problem(refused, 401, "unauthorized").await;
        }
        for credential in forbidden {
            let refused = call(Some(credential)).await;
            crate::assert_problem(refused, 403, "forbidden").await;
        }
    }

    /// Asserts that a login's session is over: its refresh token, its access token and its
    /// introspection all answer as for any ended session.
    pub async fn assert_session_over(&self, login: &Login) {
        crate::assert_problem(self.refresh(&login.refresh).await, 401, "unauthorized").await;
        crate::assert_problem(self.me(&login.access).await, 401, "unauthorized").await;
        let introspected = self.introspect_as(crate::ADMIN_TOKEN, &login.access).await;
        assert_eq!(
            crate::json_of(introspected).await,
            json!({ "active": false })
        );
    }

    /// `POST /v1/wechat/login` on the first instance.
    pub async fn login_with(&self, appid: &str, code: &str) -> Response {
        self.post("/v1/wechat/login", json!({ "appid": appid, "code": code }))
            .await
    }

    /// A full login of `user` in `appid` on the first instance; panics unless it succeeds.
    pub async fn login(&self, appid: &str, user: &str) -> Login {
        self.login_at(&self.app.base, appid, user, None).await
    }

    /// A full login of `user` in `appid` from a device with this `User-Agent`.
    pub async fn login_from(&self, appid: &str, user: &str, agent: &str) -> Login {
        self.login_at(&self.app.base, appid, user, Some(agent))
            .await
    }

    /// A full login on the instance at `base`, from a device with this `User-Agent` if any.
    pub async fn login_at(
        &self,
        base: &str,
        appid: &str,
        user: &str,
        agent: Option<&str>,
    ) -> Login {
        let code = self.wx_login(appid, user).await;
        let mut call = self
            .call_at(base, Method::POST, "/v1/wechat/login")
            .json(&json!({ "appid": appid, "code": code }));
        if let Some(agent) = agent {
            call = call.user_agent(agent);
        }
        let answer = call.send().await;
        assert_eq!(answer.status(), 200, "login of {user} in {appid}");
        Login::of(answer.json().await.expect("login JSON"))
    }

    /// `GET /v1/me` with an access token.
    pub async fn me(&self, access: &str) -> Response {
        self.get_as(access, "/v1/me").await
    }

    /// `POST /v1/logout` with an access token.
    pub async fn logout(&self, access: &str) -> Response {
        self.call(Method::POST, "/v1/logout")
            .bearer(access)
            .send()
            .await
    }

    /// The signing keys the instance at `base` publishes.
    pub async fn jwks_at(&self, base: &str) -> jsonwebtoken::jwk::JwkSet {
        let answer = self
            .call_at(base, Method::GET, "/.well-known/jwks.json")
            .send()
            .await;
        assert_eq!(answer.status(), 200, "JWKS");
        answer.json().await.expect("JWKS")
    }

    /// `POST /v1/token/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post(
            "/v1/token/refresh",
            json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    /// `POST /v1/token/introspect` of `token` with `credential` (an API key).
    pub async fn introspect_as(&self, credential: &str, token: &str) -> Response {
        self.post_as(
            credential,
            "/v1/token/introspect",
            json!({ "token": token }),
        )
        .await
    }
}

impl World {
    /// `POST /v1/me/avatar` of `image` as `wx.uploadFile({ name: "file" })` sends it.
    pub async fn upload_avatar(&self, access: &str, image: &[u8]) -> Response {
        const BOUNDARY: &str = "identityd-harness-boundary";
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"avatar.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(image);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        self.call(Method::POST, "/v1/me/avatar")
            .bearer(access)
            .header(
                "content-type",
                &format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .with(|r| r.body(body))
            .send()
            .await
    }
}
