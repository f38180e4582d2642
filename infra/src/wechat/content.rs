//! WeChat's content security for what users type and upload: `msg_sec_check` (text, answered
//! at once) and `media_check_async` (images: WeChat fetches the URL itself and pushes its
//! verdict later, see `push`). Version 2, scene 1 (profile), with the user's openid in the
//! app whose access token is used.

use std::fmt;

use domain::OpenId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{AppCredentials, Failure, WeChatClient};
use super::error::WeChatError;

/// The API version whose answers carry `result.suggest` and `result.label`.
const VERSION: u8 = 2;
/// Scene 1: a profile (nickname, avatar). 2 comment, 3 forum, 4 social log.
const SCENE_PROFILE: u8 = 1;
/// `media_type` 2: an image (1 is audio).
const MEDIA_IMAGE: u8 = 2;
/// WeChat checks at most this many characters of text (a nickname is far below it).
pub const MAX_TEXT_CHARS: usize = 2_500;

/// WeChat's verdict on a piece of content, with its label (100 normal, 10001 advertising,
/// 20001 politics, 20002 pornography, 20003 abuse, 20006 illegal, 20008 fraud, 20012 vulgar,
/// 20013 copyright, 21000 other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass {
        label: u32,
    },
    /// Not clearly fine: a person should look.
    Review {
        label: u32,
    },
    Risky {
        label: u32,
    },
}

/// `msg_sec_check`'s verdict on a text.
pub type TextVerdict = Verdict;

/// WeChat's `result` object: strict on `suggest` (the one value we act on), lenient on the
/// label's form (a number, or a number in a string).
#[derive(Deserialize)]
pub(super) struct RawVerdict {
    suggest: String,
    #[serde(default)]
    label: Value,
}

impl RawVerdict {
    pub(super) fn parse(self) -> Option<Verdict> {
        let label = match &self.label {
            Value::Number(n) => u32::try_from(n.as_u64()?).ok()?,
            Value::String(s) => s.trim().parse().ok()?,
            Value::Null => 0,
            _ => return None,
        };
        match self.suggest.as_str() {
            "pass" => Some(Verdict::Pass { label }),
            "review" => Some(Verdict::Review { label }),
            "risky" => Some(Verdict::Risky { label }),
            _ => None,
        }
    }
}

/// The id WeChat gives an asynchronous check; its push names it again.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(String);

impl TraceId {
    /// WeChat's trace ids are short ASCII tokens; anything else is not one of theirs.
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Option<Self> {
        (!raw.is_empty() && raw.len() <= Self::MAX_LEN && raw.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Serialize)]
struct TextRequest<'a> {
    content: &'a str,
    version: u8,
    scene: u8,
    openid: &'a str,
}

#[derive(Serialize)]
struct MediaRequest<'a> {
    media_url: &'a str,
    media_type: u8,
    version: u8,
    scene: u8,
    openid: &'a str,
}

/// msg_sec_check's own fields (`detail` and `trace_id` are not needed).
#[derive(Deserialize)]
struct TextAnswer {
    result: Option<RawVerdict>,
}

#[derive(Deserialize)]
struct MediaAnswer {
    trace_id: Option<String>,
}

fn malformed(api: &str) -> Failure {
    tracing::warn!(api, "WeChat's answer lacks a valid result");
    Failure::Final(WeChatError::Unavailable(super::metrics::MALFORMED.into()))
}

impl WeChatClient {
    /// WeChat's verdict on `content` (a nickname) typed by `openid` in `app`. Errcode 61010:
    /// the user has not opened the mini-program in the last 2 hours.
    #[tracing::instrument(name = "wechat.msg_sec_check", skip_all, fields(appid = %app.appid))]
    pub async fn msg_sec_check(
        &self,
        app: &AppCredentials,
        openid: &OpenId,
        content: &str,
    ) -> Result<TextVerdict, WeChatError> {
        let request = TextRequest {
            content,
            version: VERSION,
            scene: SCENE_PROFILE,
            openid: openid.as_str(),
        };
        let url = &self.endpoints.msg_sec_check;
        self.post_with_access_token(app, "msg_sec_check", url, &request, |answer: TextAnswer| {
            answer
                .result
                .and_then(RawVerdict::parse)
                .ok_or_else(|| malformed("msg_sec_check"))
        })
        .await
    }

    /// Submits the image at `media_url` (public: WeChat fetches it) for checking; the verdict
    /// arrives later at the app's message-push URL, naming the returned trace id.
    #[tracing::instrument(name = "wechat.media_check_async", skip_all, fields(appid = %app.appid))]
    pub async fn media_check_async(
        &self,
        app: &AppCredentials,
        openid: &OpenId,
        media_url: &str,
    ) -> Result<TraceId, WeChatError> {
        let request = MediaRequest {
            media_url,
            media_type: MEDIA_IMAGE,
            version: VERSION,
            scene: SCENE_PROFILE,
            openid: openid.as_str(),
        };
        let url = &self.endpoints.media_check_async;
        self.post_with_access_token(
            app,
            "media_check_async",
            url,
            &request,
            |answer: MediaAnswer| {
                answer
                    .trace_id
                    .as_deref()
                    .and_then(TraceId::parse)
                    .ok_or_else(|| malformed("media_check_async"))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::Answer;
    use super::*;
    use serde_json::json;

    fn verdict(result: Value) -> Option<Verdict> {
        serde_json::from_value::<RawVerdict>(result)
            .ok()
            .and_then(RawVerdict::parse)
    }

    #[test]
    fn suggest_maps_to_the_verdict_with_its_label() {
        assert_eq!(
            verdict(json!({"suggest": "pass", "label": 100})),
            Some(Verdict::Pass { label: 100 })
        );
        assert_eq!(
            verdict(json!({"suggest": "review", "label": "20012"})),
            Some(Verdict::Review { label: 20012 })
        );
        assert_eq!(
            verdict(json!({"suggest": "risky", "label": 20002, "extra": [1]})),
            Some(Verdict::Risky { label: 20002 })
        );
    }

    #[test]
    fn an_unknown_suggest_or_label_is_no_verdict() {
        for bad in [
            json!({"suggest": "maybe", "label": 100}),
            json!({"suggest": "RISKY", "label": 100}),
            json!({"suggest": "pass", "label": -1}),
            json!({"suggest": "pass", "label": [100]}),
            json!({"label": 100}),
        ] {
            assert_eq!(verdict(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn the_text_answer_reads_wechats_fields_and_ignores_the_rest() {
        let answer: Answer<TextAnswer> = serde_json::from_value(json!({
            "errcode": 0, "errmsg": "ok",
            "result": {"suggest": "risky", "label": 20001},
            "detail": [{"strategy": "content_model", "errcode": 0, "suggest": "risky",
                        "label": 20001, "prob": 90}],
            "trace_id": "60ae120f-371d5872-7941a05b",
            "something_new": true,
        }))
        .unwrap();
        assert_eq!(
            answer.body.result.and_then(RawVerdict::parse),
            Some(Verdict::Risky { label: 20001 })
        );
    }

    /// A stand-in for WeChat that checks the exact fields of each call, refuses the first
    /// access token (40001) and accepts the second.
    async fn stand_in() -> String {
        use axum::routing::post;
        use axum::Json;
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;

        let issued = Arc::new(AtomicU32::new(0));
        let token = post(move || {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Json(json!({"access_token": format!("t{n}"), "expires_in": 7200})) }
        });
        type Query = axum::extract::Query<std::collections::HashMap<String, String>>;
        let text = post(|query: Query, Json(body): Json<Value>| async move {
            if query.0.get("access_token").map(String::as_str) != Some("t2") {
                return Json(json!({"errcode": 40001, "errmsg": "invalid credential"}));
            }
            let expected = json!({"content": "昵称", "version": 2, "scene": 1, "openid": "o_1"});
            if body != expected {
                return Json(json!({"errcode": 47001, "errmsg": "bad body"}));
            }
            Json(json!({"errcode": 0, "errmsg": "ok", "trace_id": "x",
                        "result": {"suggest": "review", "label": 20012}, "detail": []}))
        });
        let media = post(|Json(body): Json<Value>| async move {
            let expected = json!({"media_url": "https://example.com/v1/avatars/1",
                "media_type": 2, "version": 2, "scene": 1, "openid": "o_1"});
            Json(if body == expected {
                json!({"errcode": 0, "errmsg": "ok", "trace_id": "60f96f1d-3845297a"})
            } else {
                json!({"errcode": 47001, "errmsg": "bad body"})
            })
        });
        let router = axum::Router::new()
            .route("/cgi-bin/stable_token", token)
            .route("/wxa/msg_sec_check", text)
            .route("/wxa/media_check_async", media);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    }

    #[tokio::test]
    async fn both_checks_send_wechats_fields_and_survive_a_refused_token() {
        let base = stand_in().await;
        let client = WeChatClient::new(&base, Default::default()).unwrap();
        let app = AppCredentials {
            appid: domain::AppId::parse("wx0123456789abcdef").unwrap(),
            secret: "secret".to_owned().into(),
        };
        let openid = OpenId::parse("o_1").unwrap();
        assert_eq!(
            client.msg_sec_check(&app, &openid, "昵称").await.unwrap(),
            Verdict::Review { label: 20012 }
        );
        let trace = client
            .media_check_async(&app, &openid, "https://example.com/v1/avatars/1")
            .await
            .unwrap();
        assert_eq!(trace.as_str(), "60f96f1d-3845297a");
        let refused = client.msg_sec_check(&app, &openid, "other").await;
        assert!(
            matches!(refused, Err(WeChatError::Rejected { errcode: 47001, .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn trace_ids_are_bounded_printable_ascii() {
        assert!(TraceId::parse("60ae120f-371d5872-7941a05b").is_some());
        assert!(TraceId::parse("").is_none());
        assert!(TraceId::parse("has space").is_none());
        assert!(TraceId::parse(&"a".repeat(TraceId::MAX_LEN + 1)).is_none());
    }
}
