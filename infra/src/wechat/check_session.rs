//! `checkSessionKey`: whether WeChat still holds the session_key we keep for a user (a newer
//! `wx.login()` replaces it).

use domain::OpenId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::access_token::AccessToken;
use super::client::{read_json, Answer, AppCredentials, Failure, NoFields, WeChatClient};
use super::error::WeChatError;
use super::SessionKey;

/// WeChat's "invalid signature": the session_key is not the user's current one.
const INVALID_SIGNATURE: i64 = 87009;

/// `hex(hmac_sha256(key = session_key as its base64 text, message = ""))`.
pub(super) fn signature(session_key_text: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(session_key_text.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"");
    hex::encode(mac.finalize().into_bytes())
}

impl WeChatClient {
    /// `true` when `session_key` is still the user's current one in this app, `false` when
    /// WeChat answers 87009 (replaced by a newer login, or never theirs).
    #[tracing::instrument(name = "wechat.checksession", skip_all, fields(appid = %app.appid))]
    pub async fn check_session(
        &self,
        app: &AppCredentials,
        openid: &OpenId,
        session_key: &SessionKey,
    ) -> Result<bool, WeChatError> {
        let signature = signature(session_key.expose());
        self.with_access_token(app, "checksession", |token| {
            self.check_session_once(openid, &signature, token)
        })
        .await
    }

    async fn check_session_once(
        &self,
        openid: &OpenId,
        signature: &str,
        token: AccessToken,
    ) -> Result<bool, Failure> {
        let request = self.http.get(self.endpoints.check_session.clone()).query(&[
            ("access_token", token.expose()),
            ("openid", openid.as_str()),
            ("signature", signature),
            ("sig_method", "hmac_sha256"),
        ]);
        let answer: Answer<NoFields> = read_json(request).await?;
        match answer.errcode {
            0 => Ok(true),
            INVALID_SIGNATURE => Ok(false),
            errcode => Err(Failure::from_token_api_errcode(errcode, answer.errmsg)),
        }
    }
}
