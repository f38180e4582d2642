//! Configuration: defaults, then a TOML file (`--config` / `IDENTITY_CONFIG`), then
//! `IDENTITY_*` environment variables.

use std::collections::BTreeMap;
use std::path::Path;

use domain::AppId;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use crate::http::client_ip::TrustedProxies;

/// Every setting. Secrets are `SecretString`: they never print, not even in `Debug`, and the
/// URLs' credentials are redacted there too.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database_url: String,
    /// How long a request waits for a PostgreSQL connection, connecting included, before it
    /// answers 503 `database_unavailable`.
    pub database_acquire_timeout_ms: u64,
    /// `host:port`; port 0 picks a free one (the bound address is logged).
    pub listen: String,
    pub wechat_api_base: String,
    /// The mini-programs served, with their WeChat app secrets.
    #[serde(default)]
    pub apps: Apps,
    pub admin_token: Option<SecretString>,
    pub master_key: Option<SecretString>,
    /// The master key before `identityd keys rotate-master`: read only while the keyring may
    /// still be sealed under it (a rolling restart), then removed.
    pub master_key_previous: Option<SecretString>,
    pub nats_url: Option<String>,
    /// The JetStream stream the relay publishes to (created if missing).
    pub nats_stream: String,
    /// Subjects are `{prefix}.{appid}.{EventType}`.
    pub nats_subject_prefix: String,
    /// `iss` of our access tokens.
    pub token_issuer: String,
    pub access_token_ttl_secs: u64,
    /// How often each instance reloads the token signing keys (1 to 30): a key added by
    /// `identityd keys rotate` signs 30 s later (stored with it), once every instance has had
    /// time to load it.
    pub signing_key_reload_secs: u64,
    /// A session's absolute lifetime, from its login: refresh fails after it.
    pub session_max_age_secs: u64,
    /// A session's idle lifetime, from its latest refresh (or login).
    pub session_idle_secs: u64,
    /// A console session ends this long after its last request.
    pub console_idle_secs: u64,
    /// A console session ends this long after its sign-in, however busy.
    pub console_max_age_secs: u64,
    /// Logins per minute per client IP; 0 turns the limit off.
    pub login_rate_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` we believe (CIDRs); none by default.
    pub trusted_proxies: TrustedProxies,
    /// Open connections at most; further ones wait in the listen queue.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64) at most, our proxies exempt;
    /// further ones are closed at once. 0 turns the limit off.
    pub max_connections_per_ip: usize,
    /// A connection that has not sent a whole request head within this time is closed.
    pub header_read_timeout_secs: u64,
    /// Every route but the event stream answers within this time (408 otherwise).
    pub request_timeout_secs: u64,
    /// A connection whose response writes make no progress for this long (a client that
    /// stopped reading, the event stream's included) is closed.
    pub write_timeout_secs: u64,
    /// On shutdown, open requests get this long to finish before their connections are cut.
    pub shutdown_grace_secs: u64,
    /// Open `/v1/events/stream` responses per API key, per instance.
    pub max_streams_per_key: usize,
    /// Failed authentications (API key, cloud-login signature) per minute per client IP
    /// before it is refused with 429; 0 turns the limit off.
    pub auth_failures_per_minute: u32,
    /// Per-app shared secrets of the cloud-function login (`appid:secret,…`); an app without
    /// one cannot use `POST /v1/wechat/cloud-login`.
    #[serde(default)]
    pub cloud_login_secrets: Apps,
    /// Days refused logins (with their client IP) are kept; at least 1.
    pub rejection_retention_days: u32,
    /// Per-app tokens of WeChat's message push (`appid:token,…`, the token as set in the
    /// mini-program console); an app without one has no `/v1/wechat/push/{appid}`.
    #[serde(default)]
    pub push_tokens: PushTokens,
    /// Apps whose nicknames and avatars are not sent to WeChat's content checks.
    #[serde(default)]
    pub content_checks_disabled: AppList,
    /// The service's base URL as clients and WeChat reach it (avatar URLs are made under it);
    /// `None`: `http://{the bound listen address}`.
    #[serde(default)]
    pub public_url: Option<PublicUrl>,
    /// `IDENTITY_STATS_TIMEZONE`: the IANA zone whose midnight starts a day in the daily
    /// stats and the refused-login tallies.
    pub stats_timezone: StatsTimeZone,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &infra::redact::url(&self.database_url))
            .field(
                "database_acquire_timeout_ms",
                &self.database_acquire_timeout_ms,
            )
            .field("listen", &self.listen)
            .field("wechat_api_base", &self.wechat_api_base)
            .field("apps", &self.apps)
            .field("admin_token", &self.admin_token)
            .field("master_key", &self.master_key)
            .field("master_key_previous", &self.master_key_previous)
            .field(
                "nats_url",
                &self.nats_url.as_deref().map(infra::redact::url),
            )
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("token_issuer", &self.token_issuer)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("signing_key_reload_secs", &self.signing_key_reload_secs)
            .field("session_max_age_secs", &self.session_max_age_secs)
            .field("session_idle_secs", &self.session_idle_secs)
            .field("console_idle_secs", &self.console_idle_secs)
            .field("console_max_age_secs", &self.console_max_age_secs)
            .field("login_rate_per_minute", &self.login_rate_per_minute)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("write_timeout_secs", &self.write_timeout_secs)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("max_streams_per_key", &self.max_streams_per_key)
            .field("auth_failures_per_minute", &self.auth_failures_per_minute)
            .field("cloud_login_secrets", &self.cloud_login_secrets)
            .field("push_tokens", &self.push_tokens)
            .field("content_checks_disabled", &self.content_checks_disabled)
            .field("public_url", &self.public_url)
            .field("stats_timezone", &self.stats_timezone)
            .finish()
    }
}

/// Defaults, as a serialisable layer under the file and the environment.
#[derive(Serialize)]
struct Defaults {
    database_url: &'static str,
    database_acquire_timeout_ms: u64,
    nats_stream: &'static str,
    nats_subject_prefix: &'static str,
    listen: &'static str,
    wechat_api_base: &'static str,
    token_issuer: &'static str,
    access_token_ttl_secs: u64,
    signing_key_reload_secs: u64,
    session_max_age_secs: u64,
    session_idle_secs: u64,
    console_idle_secs: u64,
    console_max_age_secs: u64,
    login_rate_per_minute: u32,
    trusted_proxies: &'static str,
    max_connections: usize,
    max_connections_per_ip: usize,
    header_read_timeout_secs: u64,
    request_timeout_secs: u64,
    write_timeout_secs: u64,
    shutdown_grace_secs: u64,
    max_streams_per_key: usize,
    auth_failures_per_minute: u32,
    rejection_retention_days: u32,
    stats_timezone: &'static str,
}

const DEFAULTS: Defaults = Defaults {
    database_url: "sqlite://identity.db",
    database_acquire_timeout_ms: 1000,
    nats_stream: "IDENTITY_EVENTS",
    nats_subject_prefix: "identity.events",
    listen: "127.0.0.1:8080",
    wechat_api_base: "https://api.weixin.qq.com",
    token_issuer: "identityd",
    access_token_ttl_secs: 900,
    signing_key_reload_secs: 30,
    session_max_age_secs: 30 * 24 * 3600,
    session_idle_secs: 7 * 24 * 3600,
    console_idle_secs: 30 * 60,
    console_max_age_secs: 12 * 3600,
    login_rate_per_minute: 120,
    trusted_proxies: "",
    max_connections: 10_000,
    max_connections_per_ip: 1_000,
    header_read_timeout_secs: 10,
    request_timeout_secs: 30,
    write_timeout_secs: 30,
    shutdown_grace_secs: 35,
    max_streams_per_key: 4,
    auth_failures_per_minute: 10,
    rejection_retention_days: 30,
    stats_timezone: "UTC",
};

/// Environment variables read as settings; anything else `IDENTITY_*` (like `IDENTITY_CONFIG`
/// itself, or test-only variables) is not a setting.
const ENV_KEYS: &[&str] = &[
    "database_url",
    "database_acquire_timeout_ms",
    "listen",
    "wechat_api_base",
    "apps",
    "admin_token",
    "master_key",
    "master_key_previous",
    "nats_url",
    "nats_stream",
    "nats_subject_prefix",
    "token_issuer",
    "access_token_ttl_secs",
    "signing_key_reload_secs",
    "session_max_age_secs",
    "session_idle_secs",
    "console_idle_secs",
    "console_max_age_secs",
    "login_rate_per_minute",
    "trusted_proxies",
    "max_connections",
    "max_connections_per_ip",
    "header_read_timeout_secs",
    "request_timeout_secs",
    "write_timeout_secs",
    "shutdown_grace_secs",
    "max_streams_per_key",
    "auth_failures_per_minute",
    RETIRED_TRUST_FORWARDED_FOR,
    "cloud_login_secrets",
    "rejection_retention_days",
    "push_tokens",
    "content_checks_disabled",
    "public_url",
    "stats_timezone",
];

/// Read only to refuse it: it trusted the leftmost, client-written `X-Forwarded-For` entry.
const RETIRED_TRUST_FORWARDED_FOR: &str = "trust_forwarded_for";

/// Secrets a caller could guess at (the bootstrap key, cloud-login secrets) are at least this
/// long: 32 random characters are beyond any online guessing.
pub const MIN_SECRET_CHARS: usize = 32;

impl Config {
    /// The session lifetimes; refuses zero (every session would be over at once).
    pub fn session_lifetime(&self) -> anyhow::Result<domain::SessionLifetime> {
        Ok(domain::SessionLifetime {
            max_age: lifetime("IDENTITY_SESSION_MAX_AGE_SECS", self.session_max_age_secs)?,
            idle: lifetime("IDENTITY_SESSION_IDLE_SECS", self.session_idle_secs)?,
        })
    }

    /// How the service's PostgreSQL pools wait for connections.
    pub fn pool_settings(&self) -> infra::sql::PoolSettings {
        infra::sql::PoolSettings {
            acquire_timeout: std::time::Duration::from_millis(self.database_acquire_timeout_ms),
            ..Default::default()
        }
    }

    /// The console sessions' lifetimes; refuses zero.
    pub fn console_lifetime(&self) -> anyhow::Result<crate::console::ConsoleLifetime> {
        Ok(crate::console::ConsoleLifetime {
            idle: lifetime("IDENTITY_CONSOLE_IDLE_SECS", self.console_idle_secs)?,
            max_age: lifetime("IDENTITY_CONSOLE_MAX_AGE_SECS", self.console_max_age_secs)?,
        })
    }

    /// The defaults alone (no file, no environment), for code that builds a configuration
    /// itself (tests, the benchmark): `Config { database_url, .., ..Config::defaults() }`, so a
    /// setting added later needs no change there.
    pub fn defaults() -> Self {
        Self::extract(Figment::from(Serialized::defaults(DEFAULTS)))
            .expect("the defaults are a valid configuration")
    }

    /// Loads the layers. `file` is the `--config` path, if any.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        Self::extract(Self::figment(file))
    }

    /// The settings of `figment`, refusing retired ones and impossible limits.
    pub fn extract(figment: Figment) -> Result<Self, Box<figment::Error>> {
        if figment.contains(RETIRED_TRUST_FORWARDED_FOR) {
            return Err(Box::new(figment::Error::from(
                "IDENTITY_TRUST_FORWARDED_FOR (trust_forwarded_for) is no longer read: it trusted \
                 the client-written leftmost X-Forwarded-For entry. Remove it and list your \
                 proxies in IDENTITY_TRUSTED_PROXIES (CIDRs, e.g. 10.0.0.0/8)"
                    .to_owned(),
            )));
        }
        let config: Self = figment.extract().map_err(Box::new)?;
        let at_least_one = [
            (
                "database_acquire_timeout_ms",
                config.database_acquire_timeout_ms,
            ),
            ("max_connections", config.max_connections as u64),
            ("header_read_timeout_secs", config.header_read_timeout_secs),
            ("request_timeout_secs", config.request_timeout_secs),
            ("write_timeout_secs", config.write_timeout_secs),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(Box::new(figment::Error::from(format!(
                    "IDENTITY_{}: must be at least 1",
                    key.to_uppercase()
                ))));
            }
        }
        Ok(config)
    }

    /// What `serve` (and `dev --public`) requires of secrets callers could guess at.
    pub fn check_secret_strength(&self) -> Result<(), String> {
        let weak =
            |secret: &SecretString| secret.expose_secret().chars().count() < MIN_SECRET_CHARS;
        if self.admin_token.as_ref().is_some_and(weak) {
            return Err(format!(
                "IDENTITY_ADMIN_TOKEN is shorter than {MIN_SECRET_CHARS} characters: use a random \
                 one, e.g. `openssl rand -hex 32`"
            ));
        }
        if let Some((appid, _)) = self.cloud_login_secrets.0.iter().find(|(_, s)| weak(s)) {
            return Err(format!(
                "IDENTITY_CLOUD_LOGIN_SECRETS: the secret of {appid} is shorter than \
                 {MIN_SECRET_CHARS} characters: use a random one, e.g. `openssl rand -hex 32`"
            ));
        }
        // WeChat allows 3 to 32 letters and digits; the token is all that authenticates a
        // push, so the longest.
        let full_length = |token: &SecretString| {
            let token = token.expose_secret();
            token.len() == MIN_SECRET_CHARS && token.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        if let Some((appid, _)) = self.push_tokens.0.iter().find(|(_, t)| !full_length(t)) {
            return Err(format!(
                "IDENTITY_PUSH_TOKENS: the token of {appid} is not {MIN_SECRET_CHARS} letters and \
                 digits (WeChat's longest): use a random one, e.g. `openssl rand -hex 16`"
            ));
        }
        Ok(())
    }

    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(DEFAULTS));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(Env::prefixed("IDENTITY_").only(ENV_KEYS))
    }
}

/// A lifetime setting in seconds: at least one (zero would end everything at once).
fn lifetime(name: &str, value: u64) -> anyhow::Result<chrono::Duration> {
    anyhow::ensure!(value > 0, "{name} must be at least 1 second");
    i64::try_from(value)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(|| anyhow::anyhow!("{name} is too large"))
}

/// `IDENTITY_PUBLIC_URL`: an http(s) URL with a host and no query, fragment or credentials,
/// kept without its trailing slash so paths append to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        const RULE: &str = "IDENTITY_PUBLIC_URL must be an http(s) URL with a host and no \
            query, fragment or credentials, e.g. https://id.example.com";
        let parsed = url::Url::parse(raw.trim()).map_err(|_| RULE.to_owned())?;
        let fits = matches!(parsed.scheme(), "http" | "https")
            && parsed.host().is_some()
            && parsed.query().is_none()
            && parsed.fragment().is_none()
            && parsed.username().is_empty()
            && parsed.password().is_none();
        if !fits {
            return Err(RULE.to_owned());
        }
        Ok(Self(parsed.as_str().trim_end_matches('/').to_owned()))
    }

    /// The default: the address the service is bound to.
    pub fn of_listener(addr: std::net::SocketAddr) -> Self {
        Self(format!("http://{addr}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `IDENTITY_STATS_TIMEZONE`: an IANA zone name (`Asia/Shanghai`, `UTC`), looked up in the
/// tz database compiled into the binary (no `/usr/share/zoneinfo` needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsTimeZone(pub chrono_tz::Tz);

impl StatsTimeZone {
    pub fn parse(name: &str) -> Result<Self, String> {
        name.trim().parse().map(Self).map_err(|_| {
            format!(
                "IDENTITY_STATS_TIMEZONE: {:?} is not an IANA time zone name (e.g. UTC, \
                 Asia/Shanghai)",
                name.chars().take(64).collect::<String>()
            )
        })
    }
}

impl<'de> Deserialize<'de> for StatsTimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The configured apps: `appid → secret`. Reads either `"appid:secret,appid:secret"` (the
/// `IDENTITY_APPS` form) or, in TOML, a table `[apps] wx… = "secret"`.
#[derive(Debug, Clone, Default)]
pub struct Apps(pub BTreeMap<AppId, SecretString>);

impl<'de> Deserialize<'de> for Apps {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(String),
            Table(BTreeMap<String, String>),
        }
        let pairs: Vec<(String, String)> = match Raw::deserialize(d)? {
            Raw::Table(table) => table.into_iter().collect(),
            Raw::List(list) => list
                .split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(|entry| {
                    entry
                        .split_once(':')
                        .map(|(a, s)| (a.trim().to_owned(), s.trim().to_owned()))
                        .ok_or_else(|| {
                            serde::de::Error::custom("apps: each entry must be appid:secret")
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let mut apps = BTreeMap::new();
        for (appid, secret) in pairs {
            let appid = AppId::parse(&appid).map_err(serde::de::Error::custom)?;
            if secret.is_empty() {
                return Err(serde::de::Error::custom(format!(
                    "apps: {appid} has an empty secret"
                )));
            }
            apps.insert(appid, SecretString::from(secret));
        }
        Ok(Self(apps))
    }
}

/// WeChat message-push tokens: `appid → token`, from `"appid:token,…"` or a TOML table. A token
/// is 3 to 32 letters or digits, as the mini-program console allows.
#[derive(Debug, Clone, Default)]
pub struct PushTokens(pub BTreeMap<AppId, SecretString>);

impl<'de> Deserialize<'de> for PushTokens {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Apps(tokens) = Apps::deserialize(d)?;
        for (appid, token) in &tokens {
            let token = token.expose_secret();
            let chars = token.chars().count();
            if !(3..=32).contains(&chars) || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(serde::de::Error::custom(format!(
                    "push_tokens: the token of {appid} must be 3 to 32 letters or digits"
                )));
            }
        }
        Ok(Self(tokens))
    }
}

/// A set of apps: `"appid,appid"` or a TOML array.
#[derive(Debug, Clone, Default)]
pub struct AppList(pub std::collections::BTreeSet<AppId>);

impl<'de> Deserialize<'de> for AppList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        list_entries(d)?
            .iter()
            .map(|name| AppId::parse(name).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// `IDENTITY_TRUSTED_PROXIES`: addresses and networks, as a list setting.
impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&list_entries(d)?.join(",")).map_err(serde::de::Error::custom)
    }
}

/// The entries of a list setting: `"a,b"` (the environment's form) or, in TOML, an array;
/// trimmed, empty ones dropped.
fn list_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(String),
        Array(Vec<String>),
    }
    let entries = match Raw::deserialize(d)? {
        Raw::List(list) => list.split(',').map(str::to_owned).collect(),
        Raw::Array(entries) => entries,
    };
    Ok(entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // `figment::Jail` closures return `figment::Error` unboxed.
mod tests {
    use super::*;

    #[test]
    fn the_defaults_stand_alone() {
        let config = Config::defaults();
        assert_eq!(config.database_url, DEFAULTS.database_url);
        assert_eq!(config.session_idle_secs, DEFAULTS.session_idle_secs);
        assert!(config.admin_token.is_none() && config.master_key.is_none());
        assert!(config.apps.0.is_empty());
    }

    #[test]
    fn defaults_then_file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "identity.toml",
                r#"
                listen = "0.0.0.0:9000"
                login_rate_per_minute = 5
                [apps]
                wx0000000000000001 = "from-file"
                "#,
            )?;
            jail.set_env("IDENTITY_LISTEN", "127.0.0.1:0");
            jail.set_env("IDENTITY_CONFIG", "ignored.toml");
            let config = Config::load(Some(Path::new("identity.toml"))).map_err(|e| *e)?;
            assert_eq!(config.listen, "127.0.0.1:0");
            assert_eq!(config.login_rate_per_minute, 5);
            assert_eq!(config.database_url, "sqlite://identity.db");
            assert_eq!(config.rejection_retention_days, 30);
            assert_eq!(config.apps.0.len(), 1);
            let lifetime = config.session_lifetime().expect("defaults are valid");
            assert_eq!(lifetime, domain::SessionLifetime::default());

            jail.set_env(
                "IDENTITY_APPS",
                "wx0000000000000002:s2, wx0000000000000003:s3",
            );
            let config = Config::load(Some(Path::new("identity.toml"))).map_err(|e| *e)?;
            let secrets: Vec<_> = config
                .apps
                .0
                .values()
                .map(|s| s.expose_secret().to_owned())
                .collect();
            assert_eq!(secrets, ["s2", "s3"]);
            jail.set_env("IDENTITY_REJECTION_RETENTION_DAYS", "7");
            let config = Config::load(None).map_err(|e| *e)?;
            assert_eq!(config.rejection_retention_days, 7);
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused() {
        for (name, value) in [
            ("IDENTITY_APPS", "not-an-appid:secret"),
            ("IDENTITY_APPS", "wx0000000000000002"),
            ("IDENTITY_MAX_CONNECTIONS", "0"),
            ("IDENTITY_HEADER_READ_TIMEOUT_SECS", "0"),
            ("IDENTITY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(name, value);
                assert!(Config::load(None).is_err(), "{name}={value}");
                Ok(())
            });
        }
    }

    #[test]
    fn the_public_url_is_an_http_base_without_a_trailing_slash() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).map_err(|e| *e)?.public_url, None);
            jail.set_env("IDENTITY_PUBLIC_URL", "https://id.example.com/base/");
            let config = Config::load(None).map_err(|e| *e)?;
            let url = config.public_url.expect("set");
            assert_eq!(url.as_str(), "https://id.example.com/base");
            Ok(())
        });
        assert_eq!(
            PublicUrl::parse("http://127.0.0.1:8080").map(|u| u.to_string()),
            Ok("http://127.0.0.1:8080".to_owned())
        );
        for bad in [
            "",
            "id.example.com",
            "ftp://id.example.com",
            "https://id.example.com/?q=1",
            "https://id.example.com/#top",
            "https://user:pw@id.example.com",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9000));
        assert_eq!(
            PublicUrl::of_listener(addr).as_str(),
            "http://127.0.0.1:9000"
        );
    }

    #[test]
    fn the_stats_time_zone_is_an_iana_name_utc_by_default() {
        figment::Jail::expect_with(|jail| {
            let config = Config::load(None).map_err(|e| *e)?;
            assert_eq!(config.stats_timezone.0, chrono_tz::UTC);
            jail.set_env("IDENTITY_STATS_TIMEZONE", "Asia/Shanghai");
            let config = Config::load(None).map_err(|e| *e)?;
            assert_eq!(config.stats_timezone.0, chrono_tz::Asia::Shanghai);
            for bad in ["Mars/Olympus", "", "+08:00", "CST-8-but-longer"] {
                jail.set_env("IDENTITY_STATS_TIMEZONE", bad);
                let error = Config::load(None).expect_err("refused").to_string();
                assert!(error.contains("IDENTITY_STATS_TIMEZONE"), "{bad}: {error}");
            }
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "databse_url = \"x\"")?;
            assert!(Config::load(Some(Path::new("typo.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn console_lifetimes_default_to_half_an_hour_and_twelve_hours_and_refuse_zero() {
        figment::Jail::expect_with(|jail| {
            let lifetime = Config::load(None)
                .map_err(|e| *e)?
                .console_lifetime()
                .expect("valid");
            assert_eq!(lifetime.idle, chrono::Duration::minutes(30));
            assert_eq!(lifetime.max_age, chrono::Duration::hours(12));
            jail.set_env("IDENTITY_CONSOLE_IDLE_SECS", "60");
            jail.set_env("IDENTITY_CONSOLE_MAX_AGE_SECS", "0");
            let refused = Config::load(None).map_err(|e| *e)?.console_lifetime();
            assert!(refused
                .unwrap_err()
                .to_string()
                .contains("IDENTITY_CONSOLE_MAX_AGE_SECS"));
            Ok(())
        });
    }

    #[test]
    fn session_lifetimes_come_from_the_environment_and_refuse_zero() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_SESSION_MAX_AGE_SECS", "3600");
            jail.set_env("IDENTITY_SESSION_IDLE_SECS", "600");
            let lifetime = Config::load(None)
                .map_err(|e| *e)?
                .session_lifetime()
                .expect("valid");
            assert_eq!(lifetime.max_age, chrono::Duration::hours(1));
            assert_eq!(lifetime.idle, chrono::Duration::minutes(10));
            jail.set_env("IDENTITY_SESSION_IDLE_SECS", "0");
            let refused = Config::load(None).map_err(|e| *e)?.session_lifetime();
            assert!(refused
                .unwrap_err()
                .to_string()
                .contains("IDENTITY_SESSION_IDLE_SECS"));
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_APPS", "wx0000000000000002:topsecret");
            jail.set_env("IDENTITY_ADMIN_TOKEN", "admintoken");
            jail.set_env("IDENTITY_MASTER_KEY_PREVIOUS", "previousmasterkey");
            jail.set_env(
                "IDENTITY_DATABASE_URL",
                "postgres://identity:dbpass,word@db.internal/identity",
            );
            jail.set_env("IDENTITY_NATS_URL", "nats://natstoken@nats.internal:4222");
            let config = Config::load(None).map_err(|e| *e)?;
            assert!(
                config.master_key_previous.is_some(),
                "read from the environment"
            );
            let printed = format!("{config:?}");
            assert!(printed.contains("db.internal") && printed.contains("nats.internal"));
            for secret in [
                "topsecret",
                "admintoken",
                "previousmasterkey",
                "dbpass",
                "word",
                "natstoken",
            ] {
                assert!(!printed.contains(secret), "{secret} printed");
            }
            Ok(())
        });
    }

    #[test]
    fn the_database_acquire_timeout_is_short_and_set_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            let config = Config::load(None).map_err(|e| *e)?;
            assert_eq!(
                config.pool_settings().acquire_timeout,
                std::time::Duration::from_secs(1)
            );
            jail.set_env("IDENTITY_DATABASE_ACQUIRE_TIMEOUT_MS", "250");
            let config = Config::load(None).map_err(|e| *e)?;
            assert_eq!(
                config.pool_settings().acquire_timeout,
                std::time::Duration::from_millis(250)
            );
            jail.set_env("IDENTITY_DATABASE_ACQUIRE_TIMEOUT_MS", "0");
            assert!(Config::load(None).is_err(), "0 would refuse every request");
            Ok(())
        });
    }

    #[test]
    fn the_edge_defaults() {
        figment::Jail::expect_with(|_| {
            let config = Config::load(None).map_err(|e| *e)?;
            assert!(config.trusted_proxies.is_empty());
            assert_eq!(config.max_connections, 10_000);
            assert_eq!(config.max_connections_per_ip, 1_000);
            assert_eq!(config.header_read_timeout_secs, 10);
            assert_eq!(config.request_timeout_secs, 30);
            assert_eq!(config.write_timeout_secs, 30);
            assert_eq!(config.shutdown_grace_secs, 35);
            assert_eq!(config.max_streams_per_key, 4);
            assert_eq!(config.auth_failures_per_minute, 10);
            Ok(())
        });
    }

    #[test]
    fn the_retired_forwarded_for_switch_is_refused_from_env_or_file() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_TRUST_FORWARDED_FOR", "true");
            let error = Config::load(None).expect_err("refused").to_string();
            assert!(error.contains("IDENTITY_TRUSTED_PROXIES"), "{error}");
            jail.set_env("IDENTITY_TRUST_FORWARDED_FOR", "false");
            assert!(Config::load(None).is_err(), "refused whatever its value");
            jail.clear_env();
            jail.create_file("old.toml", "trust_forwarded_for = false")?;
            let error = Config::load(Some(Path::new("old.toml")))
                .expect_err("refused")
                .to_string();
            assert!(error.contains("IDENTITY_TRUSTED_PROXIES"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_from_env_or_file() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "IDENTITY_TRUSTED_PROXIES",
                "10.0.0.0/8, 192.0.2.7,2001:db8::/32",
            );
            let config = Config::load(None).map_err(|e| *e)?;
            assert!(config
                .trusted_proxies
                .contains("10.1.2.3".parse().expect("ip")));
            assert!(config
                .trusted_proxies
                .contains("192.0.2.7".parse().expect("ip")));
            assert!(!config
                .trusted_proxies
                .contains("192.0.2.8".parse().expect("ip")));
            assert!(config
                .trusted_proxies
                .contains("2001:db8::1".parse().expect("ip")));
            jail.clear_env();
            jail.create_file("proxies.toml", r#"trusted_proxies = ["127.0.0.1/32"]"#)?;
            let config = Config::load(Some(Path::new("proxies.toml"))).map_err(|e| *e)?;
            assert!(config
                .trusted_proxies
                .contains("127.0.0.1".parse().expect("ip")));
            Ok(())
        });
    }

    #[test]
    fn push_tokens_and_disabled_checks_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "IDENTITY_PUSH_TOKENS",
                "wx0000000000000002:Token123, wx0000000000000003:abc",
            );
            jail.set_env("IDENTITY_CONTENT_CHECKS_DISABLED", "wx0000000000000003,");
            let config = Config::load(None).map_err(|e| *e)?;
            assert_eq!(config.push_tokens.0.len(), 2);
            let disabled: Vec<&str> = config
                .content_checks_disabled
                .0
                .iter()
                .map(AppId::as_str)
                .collect();
            assert_eq!(disabled, ["wx0000000000000003"]);
            for bad in [
                "wx0000000000000002:ab",
                "wx0000000000000002:has-dash",
                "wx0000000000000002:123456789012345678901234567890123",
                "nope:Token123",
            ] {
                jail.set_env("IDENTITY_PUSH_TOKENS", bad);
                assert!(Config::load(None).is_err(), "{bad} accepted");
            }
            Ok(())
        });
    }

    #[test]
    fn short_guessable_secrets_are_refused() {
        figment::Jail::expect_with(|jail| {
            let strong = "s".repeat(MIN_SECRET_CHARS);
            jail.set_env("IDENTITY_ADMIN_TOKEN", &strong);
            jail.set_env(
                "IDENTITY_CLOUD_LOGIN_SECRETS",
                format!("wx0000000000000002:{strong}"),
            );
            assert_eq!(
                Config::load(None).map_err(|e| *e)?.check_secret_strength(),
                Ok(())
            );

            jail.set_env("IDENTITY_ADMIN_TOKEN", &strong[1..]);
            let error = Config::load(None).map_err(|e| *e)?.check_secret_strength();
            let error = error.expect_err("a 31-character admin token");
            assert!(error.contains("IDENTITY_ADMIN_TOKEN") && !error.contains(&strong[1..]));

            jail.set_env("IDENTITY_ADMIN_TOKEN", &strong);
            jail.set_env("IDENTITY_CLOUD_LOGIN_SECRETS", "wx0000000000000002:short");
            let error = Config::load(None).map_err(|e| *e)?.check_secret_strength();
            assert!(error
                .expect_err("a short cloud secret")
                .contains("wx0000000000000002"));
            Ok(())
        });
    }
}
