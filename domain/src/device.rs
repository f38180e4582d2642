//! The device a login came from, as far as its user agent tells.

use serde::{Deserialize, Serialize};

/// The client of a login: the user agent as sent, and what can be read from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The `User-Agent` header, as sent (control characters removed, at most 256 characters).
    pub user_agent: String,
    /// The platform in the names of WeChat's `wx.getDeviceInfo().platform`: `ios`, `android`,
    /// `ohos` (HarmonyOS), `windows`, `mac` or `devtools`; `None` when the agent names none.
    pub platform: Option<String>,
    /// The WeChat client version from `MicroMessenger/x.y.z`, e.g. `8.0.40`.
    pub wechat_version: Option<String>,
}

impl Device {
    /// Reads a user agent. Never fails: what it cannot recognise stays `None`.
    pub fn from_user_agent(user_agent: &str) -> Self {
        Self {
            user_agent: user_agent.to_owned(),
            platform: platform_of(user_agent).map(str::to_owned),
            wechat_version: wechat_version_of(user_agent),
        }
    }
}

/// The first match wins, so the order matters: the developer tools name the OS they run on,
/// and an iPhone's agent says "like Mac OS X".
fn platform_of(user_agent: &str) -> Option<&'static str> {
    let ua = user_agent.to_ascii_lowercase();
    const MARKERS: [(&str, &str); 10] = [
        ("wechatdevtools", "devtools"),
        ("openharmony", "ohos"),
        ("harmonyos", "ohos"),
        ("iphone", "ios"),
        ("ipad", "ios"),
        ("android", "android"),
        ("windowswechat", "windows"),
        ("windows nt", "windows"),
        ("macwechat", "mac"),
        ("macintosh", "mac"),
    ];
    MARKERS
        .iter()
        .find(|(marker, _)| ua.contains(marker))
        .map(|&(_, platform)| platform)
}

/// `8.0.40` from `MicroMessenger/8.0.40(0x1800282a)` or `MicroMessenger/8.0.40.2420(…)`: the
/// first three numbers (WeChat's own version; Android appends a build number).
fn wechat_version_of(user_agent: &str) -> Option<String> {
    let (_, rest) = user_agent.split_once("MicroMessenger/")?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let version: Vec<&str> = digits
        .split('.')
        .filter(|p| !p.is_empty())
        .take(3)
        .collect();
    (!version.is_empty()).then(|| version.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ua: &str) -> (Option<String>, Option<String>) {
        let device = Device::from_user_agent(ua);
        assert_eq!(device.user_agent, ua);
        (device.platform, device.wechat_version)
    }

    fn some(platform: &str, version: &str) -> (Option<String>, Option<String>) {
        (Some(platform.to_owned()), Some(version.to_owned()))
    }

    #[test]
    fn reads_platform_and_wechat_version_of_real_agents() {
        assert_eq!(
            read(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
                  (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x1800442a) \
                  NetType/WIFI Language/zh_CN"
            ),
            some("ios", "8.0.44")
        );
        assert_eq!(
            read(
                "Mozilla/5.0 (Linux; Android 14; 23049RAD8C Build/UKQ1.230804.001; wv) \
                  AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 \
                  Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MMWEBID/2247 \
                  MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin NetType/5G"
            ),
            some("android", "8.0.47")
        );
        assert_eq!(
            read(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                  Gecko) Chrome/107.0.0.0 Safari/537.36 wechatdevtools/1.06.2310080 \
                  MicroMessenger/8.0.5 Language/zh_CN webview/"
            ),
            some("devtools", "8.0.5")
        );
        assert_eq!(
            read("Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  Chrome/81.0.4044.138 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) \
                  WindowsWechat(0x63090819) XWEB/8519 Flue"),
            some("windows", "7.0.20")
        );
        assert_eq!(
            read(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
                  (KHTML, like Gecko) MicroMessenger/6.8.0(0x16080000) MacWechat/3.8.5(0x13080510)"
            ),
            some("mac", "6.8.0")
        );
    }

    #[test]
    fn what_it_cannot_read_stays_none() {
        assert_eq!(read("curl/8.5.0"), (None, None));
        assert_eq!(read(""), (None, None));
        assert_eq!(
            read("iPhone MicroMessenger/"),
            (Some("ios".to_owned()), None)
        );
    }
}
