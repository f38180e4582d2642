//! Configuration: defaults, then a TOML file (`--config` / `IDENTITY_CONFIG`), then
//! `IDENTITY_*` environment variables.

use std::collections::BTreeMap;
use std::path::Path;

use domain::AppId;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Every setting. Secrets are `SecretString`: they never print, not even in `Debug`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database_url: String,
    /// `host:port`; port 0 picks a free one (the bound address is logged).
    pub listen: String,
    pub wechat_api_base: String,
    /// The mini-programs served, with their WeChat app secrets.
    #[serde(default)]
    pub apps: Apps,
    pub admin_token: Option<SecretString>,
    pub master_key: Option<SecretString>,
    pub nats_url: Option<String>,
    /// The JetStream stream the relay publishes to (created if missing).
    pub nats_stream: String,
    /// Subjects are `{prefix}.{appid}.{EventType}`.
    pub nats_subject_prefix: String,
    /// `iss` of our access tokens.
    pub token_issuer: String,
    pub access_token_ttl_secs: u64,
    /// Logins per minute per client IP; 0 turns the limit off.
    pub login_rate_per_minute: u32,
    /// Take the client IP from the first `X-Forwarded-For` entry (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Per-app shared secrets of the cloud-function login (`appid:secret,…`); an app without
    /// one cannot use `POST /v1/wechat/cloud-login`.
    #[serde(default)]
    pub cloud_login_secrets: Apps,
    /// Days refused logins (with their client IP) are kept; at least 1.
    pub rejection_retention_days: u32,
}

/// Defaults, as a serialisable layer under the file and the environment.
#[derive(Serialize)]
struct Defaults {
    database_url: &'static str,
    nats_stream: &'static str,
    nats_subject_prefix: &'static str,
    listen: &'static str,
    wechat_api_base: &'static str,
    token_issuer: &'static str,
    access_token_ttl_secs: u64,
    login_rate_per_minute: u32,
    trust_forwarded_for: bool,
    rejection_retention_days: u32,
}

const DEFAULTS: Defaults = Defaults {
    database_url: "sqlite://identity.db",
    nats_stream: "IDENTITY_EVENTS",
    nats_subject_prefix: "identity.events",
    listen: "127.0.0.1:8080",
    wechat_api_base: "https://api.weixin.qq.com",
    token_issuer: "identityd",
    access_token_ttl_secs: 900,
    login_rate_per_minute: 120,
    trust_forwarded_for: false,
    rejection_retention_days: 30,
};

/// Environment variables read as settings; anything else `IDENTITY_*` (like `IDENTITY_CONFIG`
/// itself, or test-only variables) is not a setting.
const ENV_KEYS: &[&str] = &[
    "database_url",
    "listen",
    "wechat_api_base",
    "apps",
    "admin_token",
    "master_key",
    "nats_url",
    "nats_stream",
    "nats_subject_prefix",
    "token_issuer",
    "access_token_ttl_secs",
    "login_rate_per_minute",
    "trust_forwarded_for",
    "cloud_login_secrets",
    "rejection_retention_days",
];

impl Config {
    /// Loads the layers. `file` is the `--config` path, if any.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        Self::figment(file).extract().map_err(Box::new)
    }

    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(DEFAULTS));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(Env::prefixed("IDENTITY_").only(ENV_KEYS))
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

#[cfg(test)]
#[allow(clippy::result_large_err)] // `figment::Jail` closures return `figment::Error` unboxed.
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

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
    fn bad_apps_and_unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_APPS", "not-an-appid:secret");
            assert!(Config::load(None).is_err());
            jail.set_env("IDENTITY_APPS", "wx0000000000000002");
            assert!(Config::load(None).is_err());
            jail.set_env("IDENTITY_APPS", "");
            jail.create_file("typo.toml", "databse_url = \"x\"")?;
            assert!(Config::load(Some(Path::new("typo.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("IDENTITY_APPS", "wx0000000000000002:topsecret");
            jail.set_env("IDENTITY_ADMIN_TOKEN", "admintoken");
            let printed = format!("{:?}", Config::load(None).map_err(|e| *e)?);
            assert!(!printed.contains("topsecret") && !printed.contains("admintoken"));
            Ok(())
        });
    }
}
