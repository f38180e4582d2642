//! The console's languages: English and Simplified Chinese. Every visible string is a field of
//! [`Messages`], so a string missing in one language does not compile.
//!
//! The language comes from `?lang=` (which also sets the `identity_console_lang` cookie), then
//! that cookie, then `Accept-Language`, then English.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

/// The cookie remembering the language chosen with `?lang=`.
pub const LANG_COOKIE: &str = "identity_console_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    ZhCn,
}

impl Lang {
    /// The BCP 47 tag, as `<html lang>` and `?lang=` spell it.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::ZhCn => "zh-CN",
        }
    }

    /// A tag as a caller wrote it: `en`, `en-GB`, `zh`, `zh-CN`, `zh-Hans` (any case).
    pub fn parse(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Self::En),
            "zh" => Some(Self::ZhCn),
            _ => None,
        }
    }

    pub fn messages(self) -> &'static Messages {
        match self {
            Self::En => &EN,
            Self::ZhCn => &ZH_CN,
        }
    }

    /// `?lang=` of the query string, when it names a language we have.
    pub fn of_query(query: Option<&str>) -> Option<Self> {
        form_urlencoded_pairs(query?)
            .find(|(k, _)| k == "lang")
            .and_then(|(_, v)| Self::parse(&v))
    }

    /// The language for a request: `?lang=`, the cookie, `Accept-Language`, English.
    pub fn of_request(query: Option<&str>, headers: &HeaderMap) -> Self {
        Self::of_query(query)
            .or_else(|| super::cookies::get(headers, LANG_COOKIE).and_then(Self::parse))
            .or_else(|| Self::accepted(headers))
            .unwrap_or(Self::En)
    }

    /// The supported language the client ranks highest in `Accept-Language`.
    fn accepted(headers: &HeaderMap) -> Option<Self> {
        let header = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
        let mut best: Option<(f32, Self)> = None;
        // Bounded: a hostile header of thousands of entries costs no more than 32.
        for entry in header.split(',').take(32) {
            let mut parts = entry.split(';');
            let Some(lang) = parts.next().and_then(Self::parse) else {
                continue;
            };
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, lang)| lang)
    }
}

fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// Handlers take the request's language as an extractor (the console layer decided it).
impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Lang>()
            .copied()
            .unwrap_or_else(|| Self::of_request(parts.uri.query(), &parts.headers)))
    }
}

/// Every string the console shows.
pub struct Messages {
    pub console: &'static str,
    pub nav_dashboard: &'static str,
    pub nav_users: &'static str,
    pub nav_logins: &'static str,
    pub nav_audit: &'static str,
    pub nav_events: &'static str,
    pub nav_keys: &'static str,
    pub signed_in_as: &'static str,
    pub read_only: &'static str,
    pub sign_out: &'static str,
    pub times_in: &'static str,
    pub sign_in_title: &'static str,
    pub sign_in_intro: &'static str,
    pub api_key_label: &'static str,
    pub sign_in_button: &'static str,
    pub sign_in_failed: &'static str,
    pub sign_in_needs_admin_read: &'static str,
    pub sign_in_cross_site: &'static str,
    pub dashboard_title: &'static str,
    pub dashboard_soon: &'static str,
    pub users_title: &'static str,
    pub search_label: &'static str,
    pub search_hint: &'static str,
    pub status_label: &'static str,
    pub any_status: &'static str,
    pub status_active: &'static str,
    pub status_blocked: &'static str,
    pub status_erased: &'static str,
    pub search_button: &'static str,
    pub col_user: &'static str,
    pub col_status: &'static str,
    pub col_accounts: &'static str,
    pub col_created: &'static str,
    pub col_last_login: &'static str,
    pub no_users: &'static str,
    pub next_page: &'static str,
    pub user_title: &'static str,
    pub accounts_title: &'static str,
    pub col_app: &'static str,
    pub col_openid: &'static str,
    pub unionid_label: &'static str,
    pub erased_value: &'static str,
    pub profile_title: &'static str,
    pub no_profile: &'static str,
    pub sessions_title: &'static str,
    pub col_session: &'static str,
    pub col_device: &'static str,
    pub col_ip: &'static str,
    pub col_started: &'static str,
    pub col_refreshed: &'static str,
    pub no_sessions: &'static str,
    pub timeline_title: &'static str,
    pub timeline_more: &'static str,
    pub col_time: &'static str,
    pub col_event: &'static str,
    pub col_actor: &'static str,
    pub col_details: &'static str,
    pub no_events: &'static str,
    pub actions_title: &'static str,
    pub action_block: &'static str,
    pub action_unblock: &'static str,
    pub action_revoke_sessions: &'static str,
    pub action_erase: &'static str,
    pub confirm_block: &'static str,
    pub confirm_unblock: &'static str,
    pub confirm_revoke_sessions: &'static str,
    pub confirm_erase: &'static str,
    pub erase_warning: &'static str,
    pub reason_label: &'static str,
    pub confirm_button: &'static str,
    pub cancel: &'static str,
    pub error_title: &'static str,
    pub error_code: &'static str,
    pub error_back: &'static str,
}

impl Messages {
    /// A user status (`active`, `blocked`, `erased`) in this language.
    pub fn status(&self, status: &str) -> &'static str {
        match status {
            "active" => self.status_active,
            "blocked" => self.status_blocked,
            "erased" => self.status_erased,
            _ => "?",
        }
    }
}

pub static EN: Messages = Messages {
    console: "Identity console",
    nav_dashboard: "Dashboard",
    nav_users: "Users",
    nav_logins: "Logins",
    nav_audit: "Audit log",
    nav_events: "Events",
    nav_keys: "API keys",
    signed_in_as: "Signed in with key",
    read_only: "read-only",
    sign_out: "Sign out",
    times_in: "Times are shown in",
    sign_in_title: "Sign in",
    sign_in_intro: "Sign in with an API key holding the admin:read scope (admin:write to act on users), or the bootstrap admin token.",
    api_key_label: "API key",
    sign_in_button: "Sign in",
    sign_in_failed: "Sign-in failed: check the key.",
    sign_in_needs_admin_read: "This key lacks the admin:read scope the console needs.",
    sign_in_cross_site: "Sign-in refused: the form was not sent from this site.",
    dashboard_title: "Dashboard",
    dashboard_soon: "Statistics will appear here. Meanwhile, find a user under Users.",
    users_title: "Users",
    search_label: "Search",
    search_hint: "User id, phone (+86…), openid, appid:openid or unionid",
    status_label: "Status",
    any_status: "Any",
    status_active: "active",
    status_blocked: "blocked",
    status_erased: "erased",
    search_button: "Search",
    col_user: "User",
    col_status: "Status",
    col_accounts: "Accounts",
    col_created: "Registered",
    col_last_login: "Last login",
    no_users: "No user matches.",
    next_page: "Next page",
    user_title: "User",
    accounts_title: "WeChat accounts",
    col_app: "App",
    col_openid: "openid",
    unionid_label: "unionid",
    erased_value: "(erased)",
    profile_title: "Profile",
    no_profile: "No profile shared.",
    sessions_title: "Open sessions",
    col_session: "Session",
    col_device: "Device",
    col_ip: "Client IP",
    col_started: "Started",
    col_refreshed: "Last refreshed",
    no_sessions: "No open session.",
    timeline_title: "Timeline",
    timeline_more: "Older entries are not shown.",
    col_time: "Time",
    col_event: "Event",
    col_actor: "Actor",
    col_details: "Details",
    no_events: "Nothing recorded.",
    actions_title: "Actions",
    action_block: "Block",
    action_unblock: "Unblock",
    action_revoke_sessions: "Revoke sessions",
    action_erase: "Erase",
    confirm_block: "Block this user? Their logins and refreshes are refused and every session ends.",
    confirm_unblock: "Unblock this user? They may log in again.",
    confirm_revoke_sessions: "End every open session of this user? They may log in again.",
    confirm_erase: "Erase this user's personal data? This cannot be undone.",
    erase_warning: "The user's data key is destroyed: their profile, phone and WeChat identifiers become unreadable for good.",
    reason_label: "Reason (for the audit log)",
    confirm_button: "Confirm",
    cancel: "Cancel",
    error_title: "Something went wrong",
    error_code: "Code",
    error_back: "Back to the console",
};

pub static ZH_CN: Messages = Messages {
    console: "身份管理控制台",
    nav_dashboard: "概览",
    nav_users: "用户",
    nav_logins: "登录记录",
    nav_audit: "审计日志",
    nav_events: "事件",
    nav_keys: "API 密钥",
    signed_in_as: "当前密钥",
    read_only: "只读",
    sign_out: "退出",
    times_in: "时间显示时区：",
    sign_in_title: "登录",
    sign_in_intro: "请使用具有 admin:read 权限的 API 密钥登录（操作用户需要 admin:write），或使用引导管理员令牌。",
    api_key_label: "API 密钥",
    sign_in_button: "登录",
    sign_in_failed: "登录失败：请检查密钥。",
    sign_in_needs_admin_read: "此密钥没有控制台所需的 admin:read 权限。",
    sign_in_cross_site: "登录被拒绝：表单并非从本站提交。",
    dashboard_title: "概览",
    dashboard_soon: "统计数据将显示在这里。现在可以在“用户”中查找用户。",
    users_title: "用户",
    search_label: "搜索",
    search_hint: "用户 ID、手机号（+86…）、openid、appid:openid 或 unionid",
    status_label: "状态",
    any_status: "全部",
    status_active: "正常",
    status_blocked: "已封禁",
    status_erased: "已删除",
    search_button: "搜索",
    col_user: "用户",
    col_status: "状态",
    col_accounts: "账号",
    col_created: "注册时间",
    col_last_login: "最近登录",
    no_users: "没有匹配的用户。",
    next_page: "下一页",
    user_title: "用户",
    accounts_title: "微信账号",
    col_app: "小程序",
    col_openid: "openid",
    unionid_label: "unionid",
    erased_value: "（已删除）",
    profile_title: "资料",
    no_profile: "用户未授权资料。",
    sessions_title: "在线会话",
    col_session: "会话",
    col_device: "设备",
    col_ip: "客户端 IP",
    col_started: "开始时间",
    col_refreshed: "最近刷新",
    no_sessions: "没有在线会话。",
    timeline_title: "时间线",
    timeline_more: "更早的记录未显示。",
    col_time: "时间",
    col_event: "事件",
    col_actor: "操作者",
    col_details: "详情",
    no_events: "暂无记录。",
    actions_title: "操作",
    action_block: "封禁",
    action_unblock: "解封",
    action_revoke_sessions: "撤销会话",
    action_erase: "删除数据",
    confirm_block: "确定封禁此用户？其登录和令牌刷新将被拒绝，所有会话立即结束。",
    confirm_unblock: "确定解封此用户？用户可以重新登录。",
    confirm_revoke_sessions: "确定结束此用户的所有在线会话？用户可以重新登录。",
    confirm_erase: "确定删除此用户的个人数据？此操作无法撤销。",
    erase_warning: "用户的数据密钥将被销毁：其资料、手机号和微信标识将永久无法读取。",
    reason_label: "原因（记入审计日志）",
    confirm_button: "确认",
    cancel: "取消",
    error_title: "出错了",
    error_code: "错误码",
    error_back: "返回控制台",
};

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accepting(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn query_then_cookie_then_accept_language() {
        let zh = accepting("zh-CN,zh;q=0.9,en;q=0.8");
        assert_eq!(Lang::of_request(None, &zh), Lang::ZhCn);
        assert_eq!(Lang::of_request(Some("lang=en"), &zh), Lang::En);
        let mut cookie = accepting("en");
        cookie.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; identity_console_lang=zh-CN"),
        );
        assert_eq!(Lang::of_request(None, &cookie), Lang::ZhCn);
        assert_eq!(Lang::of_request(Some("q=x&lang=en"), &cookie), Lang::En);
        assert_eq!(Lang::of_request(None, &HeaderMap::new()), Lang::En);
    }

    #[test]
    fn accept_language_weights_and_garbage() {
        assert_eq!(
            Lang::accepted(&accepting("fr, en;q=0.5, zh;q=0.7")),
            Some(Lang::ZhCn)
        );
        assert_eq!(
            Lang::accepted(&accepting("zh;q=0, en;q=0.1")),
            Some(Lang::En)
        );
        assert_eq!(Lang::accepted(&accepting(";;;,q=,-")), None);
        assert_eq!(Lang::parse("ZH-hans"), Some(Lang::ZhCn));
        assert_eq!(Lang::parse("de"), None);
    }
}
