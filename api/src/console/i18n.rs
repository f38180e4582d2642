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

/// The query of a page's language links: the request's own parameters (filters, cursor) with
/// `lang` left out, ready for `?{this}lang=…` (empty, or ending in `&`).
pub fn query_for_lang_links(query: Option<&str>) -> String {
    let mut kept = String::new();
    for pair in query.unwrap_or_default().split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        if pair.is_empty() || key == "lang" {
            continue;
        }
        kept.push_str(pair);
        kept.push('&');
    }
    kept
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
    // The dashboard, login history, audit log, events and API keys pages.
    pub logins_title: &'static str,
    pub audit_title: &'static str,
    pub events_title: &'static str,
    pub events_intro: &'static str,
    pub events_scan_note: &'static str,
    pub keys_title: &'static str,
    pub any_app: &'static str,
    pub any_event: &'static str,
    pub filter_from: &'static str,
    pub filter_to: &'static str,
    pub filter_after: &'static str,
    pub filter_button: &'static str,
    pub export_csv: &'static str,
    pub export_at_most: &'static str,
    pub rows_unit: &'static str,
    pub no_rows: &'static str,
    pub col_new_user: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub col_target: &'static str,
    pub col_position: &'static str,
    pub col_payload: &'static str,
    pub days_label: &'static str,
    pub apps_summed: &'static str,
    pub active_users_title: &'static str,
    pub dau: &'static str,
    pub wau: &'static str,
    pub mau: &'static str,
    pub active_per_day: &'static str,
    pub logins_per_day: &'static str,
    pub new_users_per_day: &'static str,
    pub per_day_table: &'static str,
    pub col_day: &'static str,
    pub col_logins: &'static str,
    pub col_new_users: &'static str,
    pub col_active_users: &'static str,
    pub failed_logins: &'static str,
    pub no_failed_logins: &'static str,
    pub col_reason: &'static str,
    pub col_count: &'static str,
    pub reason_invalid_code: &'static str,
    pub reason_high_risk: &'static str,
    pub reason_blocked: &'static str,
    pub reason_rate_limited: &'static str,
    pub projections_title: &'static str,
    pub col_projection: &'static str,
    pub col_lag: &'static str,
    pub relay_title: &'static str,
    pub relay_not_configured: &'static str,
    pub col_stream: &'static str,
    pub col_key: &'static str,
    pub col_name: &'static str,
    pub col_scopes: &'static str,
    pub col_revoked: &'static str,
    pub key_active: &'static str,
    pub this_session: &'static str,
    pub no_keys: &'static str,
    pub revoke: &'static str,
    pub create_key_title: &'static str,
    pub create_key_button: &'static str,
    pub key_created_title: &'static str,
    pub key_shown_once: &'static str,
    pub back_to_keys: &'static str,
    pub revoke_key_title: &'static str,
    pub revoke_key_warning: &'static str,
    pub revoke_own_key_warning: &'static str,
}

impl Messages {
    /// A refused login's reason (`invalid_code`, `high_risk`, `blocked`, `rate_limited`) in this
    /// language; another reason as it is.
    pub fn reason<'a>(&self, reason: &'a str) -> &'a str
    where
        'static: 'a,
    {
        match reason {
            "invalid_code" => self.reason_invalid_code,
            "high_risk" => self.reason_high_risk,
            "blocked" => self.reason_blocked,
            "rate_limited" => self.reason_rate_limited,
            other => other,
        }
    }

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
    logins_title: "Login history",
    audit_title: "Audit log",
    events_title: "Events",
    events_intro: "The global event log in order, as analytics see it: personal data redacted.",
    events_scan_note: "Each page reads at most this many events:",
    keys_title: "API keys",
    any_app: "Any app",
    any_event: "Any event",
    filter_from: "From (RFC 3339)",
    filter_to: "To (RFC 3339)",
    filter_after: "After position",
    filter_button: "Filter",
    export_csv: "Export CSV",
    export_at_most: "at most",
    rows_unit: "rows",
    no_rows: "Nothing matches.",
    col_new_user: "New user",
    yes: "yes",
    no: "no",
    col_target: "Target",
    col_position: "Position",
    col_payload: "Payload (redacted)",
    days_label: "Days",
    apps_summed: "All apps added up: a user active in two apps counts twice per day.",
    active_users_title: "Active users",
    dau: "Today (DAU)",
    wau: "Last 7 days",
    mau: "Last 30 days",
    active_per_day: "Active users per day",
    logins_per_day: "Logins per day",
    new_users_per_day: "New users per day",
    per_day_table: "The numbers per day",
    col_day: "Day",
    col_logins: "Logins",
    col_new_users: "New users",
    col_active_users: "Active users",
    failed_logins: "Failed logins by reason",
    no_failed_logins: "No failed logins in these days.",
    col_reason: "Reason",
    col_count: "Count",
    reason_invalid_code: "Invalid code",
    reason_high_risk: "High-risk user",
    reason_blocked: "Blocked user",
    reason_rate_limited: "Rate limited",
    projections_title: "Projections",
    col_projection: "Projection",
    col_lag: "Lag (events)",
    relay_title: "NATS relay",
    relay_not_configured: "Not configured (IDENTITY_NATS_URL is not set).",
    col_stream: "Stream",
    col_key: "Key",
    col_name: "Name",
    col_scopes: "Scopes",
    col_revoked: "Revoked",
    key_active: "active",
    this_session: "this session",
    no_keys: "No API keys yet.",
    revoke: "Revoke",
    create_key_title: "Create a key",
    create_key_button: "Create the key",
    key_created_title: "Key created",
    key_shown_once: "Copy the key now: it is shown this once and never again.",
    back_to_keys: "Back to the API keys",
    revoke_key_title: "Revoke this key?",
    revoke_key_warning: "Callers using this key are refused from their next request, and console sessions signed in with it end.",
    revoke_own_key_warning: "This is the key you are signed in with: revoking it signs you out.",
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
    logins_title: "登录记录",
    audit_title: "审计日志",
    events_title: "事件",
    events_intro: "按顺序排列的全局事件日志，与分析端所见相同：个人数据已脱敏。",
    events_scan_note: "每页最多读取的事件数：",
    keys_title: "API 密钥",
    any_app: "全部应用",
    any_event: "全部事件",
    filter_from: "起始时间（RFC 3339）",
    filter_to: "截止时间（RFC 3339）",
    filter_after: "起始位置（不含）",
    filter_button: "筛选",
    export_csv: "导出 CSV",
    export_at_most: "最多",
    rows_unit: "行",
    no_rows: "没有匹配的记录。",
    col_new_user: "新用户",
    yes: "是",
    no: "否",
    col_target: "对象",
    col_position: "位置",
    col_payload: "载荷（已脱敏）",
    days_label: "天数",
    apps_summed: "所有应用合计：同一用户在两个应用中活跃，每天计为两次。",
    active_users_title: "活跃用户",
    dau: "今日（日活）",
    wau: "近 7 天",
    mau: "近 30 天",
    active_per_day: "每日活跃用户",
    logins_per_day: "每日登录次数",
    new_users_per_day: "每日新用户",
    per_day_table: "每日明细",
    col_day: "日期",
    col_logins: "登录次数",
    col_new_users: "新用户",
    col_active_users: "活跃用户",
    failed_logins: "失败登录（按原因）",
    no_failed_logins: "这些天没有失败的登录。",
    col_reason: "原因",
    col_count: "次数",
    reason_invalid_code: "无效的 code",
    reason_high_risk: "高风险用户",
    reason_blocked: "已封禁用户",
    reason_rate_limited: "频率受限",
    projections_title: "投影",
    col_projection: "投影",
    col_lag: "延迟（事件数）",
    relay_title: "NATS 转发",
    relay_not_configured: "未配置（未设置 IDENTITY_NATS_URL）。",
    col_stream: "流",
    col_key: "密钥",
    col_name: "名称",
    col_scopes: "权限范围",
    col_revoked: "吊销时间",
    key_active: "有效",
    this_session: "当前会话",
    no_keys: "还没有 API 密钥。",
    revoke: "吊销",
    create_key_title: "创建密钥",
    create_key_button: "创建密钥",
    key_created_title: "密钥已创建",
    key_shown_once: "请立即复制该密钥：它只显示这一次，之后无法再查看。",
    back_to_keys: "返回 API 密钥",
    revoke_key_title: "吊销此密钥？",
    revoke_key_warning: "使用此密钥的调用方从下一次请求起将被拒绝，用它登录的控制台会话也会结束。",
    revoke_own_key_warning: "这是你当前登录所用的密钥：吊销后你将被登出。",
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
    fn language_links_keep_the_other_parameters() {
        assert_eq!(query_for_lang_links(None), "");
        assert_eq!(query_for_lang_links(Some("lang=en")), "");
        assert_eq!(
            query_for_lang_links(Some("app=wx1&lang=zh-CN&after=abc%3D&&")),
            "app=wx1&after=abc%3D&"
        );
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
