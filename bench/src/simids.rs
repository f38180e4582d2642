//! The WeChat simulator's ids for a named person, derived here as the simulator derives them
//! (`infra::wechat::sim`, private there): the generator writes people that a later login
//! through the simulator, by the same name, finds as returning users. A test below checks the
//! derivation against the simulator itself.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::service::OPEN_PLATFORM;

/// The openid the simulator gives `user` in `appid`.
pub fn openid(appid: &str, user: &str) -> String {
    derive('o', "openid", appid, user)
}

/// The unionid the simulator gives `user` in the bench apps' Open Platform account.
pub fn unionid(user: &str) -> String {
    derive('u', "unionid", OPEN_PLATFORM, user)
}

fn derive(prefix: char, kind: &str, scope: &str, user: &str) -> String {
    let digest = Sha256::new()
        .chain_update(kind)
        .chain_update([0])
        .chain_update(scope)
        .chain_update([0])
        .chain_update(user)
        .finalize();
    let mut id = String::with_capacity(28);
    id.push(prefix);
    id.push_str(&URL_SAFE_NO_PAD.encode(digest)[..27]);
    id
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::service::{Sim, APP_B, SECRET_B};

    /// What the simulator answers a server's `code2Session` for `user`'s `wx.login` code.
    async fn session_of(sim: &Sim, appid: &str, secret: &str, user: &str) -> Value {
        let http = reqwest::Client::new();
        let code: Value = http
            .post(format!("{}/sim/wx.login", sim.base))
            .json(&json!({"appid": appid, "user": user}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        http.get(format!("{}/sns/jscode2session", sim.base))
            .query(&[
                ("appid", appid),
                ("secret", secret),
                ("js_code", code["code"].as_str().unwrap()),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_ids_are_the_simulators() {
        let sim = Sim::start().await.unwrap();
        let session = session_of(&sim, APP_B, SECRET_B, "gen-s3-17").await;
        assert_eq!(session["openid"], openid(APP_B, "gen-s3-17"), "{session}");
        assert_eq!(session["unionid"], unionid("gen-s3-17"), "{session}");
    }
}
