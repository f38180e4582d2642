//! The user's phone number from a phone-number button code (`getuserphonenumber`).

use std::fmt;

use domain::{OpenId, WeChatCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{AppCredentials, Failure, WeChatClient};
use super::error::WeChatError;

/// The number the user chose to share. Personal data: Debug shows only the country code.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneInfo {
    /// With the country code for numbers outside mainland China, e.g. `+1 2025550123`.
    pub phone_number: String,
    /// Without the country code.
    pub pure_phone_number: String,
    /// E.g. `86`.
    pub country_code: String,
}

impl fmt::Debug for PhoneInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhoneInfo")
            .field("phone_number", &"<redacted>")
            .field("pure_phone_number", &"<redacted>")
            .field("country_code", &self.country_code)
            .finish()
    }
}

#[derive(Serialize)]
struct PhoneRequest<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    openid: Option<&'a str>,
}

/// getuserphonenumber's own fields.
#[derive(Deserialize)]
struct PhoneAnswer {
    phone_info: Option<RawPhoneInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPhoneInfo {
    phone_number: String,
    pure_phone_number: String,
    /// A string in WeChat's docs; a number is accepted too.
    country_code: Value,
    watermark: Watermark,
}

#[derive(Deserialize)]
struct Watermark {
    appid: String,
}

impl WeChatClient {
    /// Exchanges a phone-number button code (`<button open-type="getPhoneNumber">`, not a
    /// `wx.login()` code) for the user's number. With `openid`, WeChat checks the code belongs
    /// to that user. Codes are single use: only -1 and refused access tokens are retried.
    #[tracing::instrument(name = "wechat.getuserphonenumber", skip_all, fields(appid = %app.appid))]
    pub async fn get_user_phone_number(
        &self,
        app: &AppCredentials,
        code: &WeChatCode,
        openid: Option<&OpenId>,
    ) -> Result<PhoneInfo, WeChatError> {
        let request = PhoneRequest {
            code: code.as_str(),
            openid: openid.map(OpenId::as_str),
        };
        let url = &self.endpoints.phone_number;
        self.post_with_access_token(app, "getuserphonenumber", url, &request, |answer| {
            phone_info(app, answer)
        })
        .await
    }
}

fn phone_info(app: &AppCredentials, answer: PhoneAnswer) -> Result<PhoneInfo, Failure> {
    let malformed = || {
        tracing::warn!("getuserphonenumber answer lacks a valid phone_info");
        Failure::Final(WeChatError::Unavailable(super::metrics::MALFORMED.into()))
    };
    let info = answer.phone_info.ok_or_else(malformed)?;
    if info.watermark.appid != app.appid.as_str() {
        tracing::error!("getuserphonenumber answered for another appid");
        return Err(Failure::Final(WeChatError::WatermarkMismatch));
    }
    let country_code = match info.country_code {
        Value::String(code) => code,
        Value::Number(code) => code.to_string(),
        _ => return Err(malformed()),
    };
    if info.pure_phone_number.is_empty() || info.phone_number.is_empty() {
        return Err(malformed());
    }
    Ok(PhoneInfo {
        phone_number: info.phone_number,
        pure_phone_number: info.pure_phone_number,
        country_code,
    })
}
