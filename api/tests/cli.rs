//! `identityd admin` against a real database: keys are created, listed and revoked, on SQLite
//! and (when `IDENTITY_TEST_POSTGRES_URL` is set) PostgreSQL.

use std::process::{Command, Output};

fn identityd(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_identityd"))
        .args(args)
        .env("IDENTITY_DATABASE_URL", database_url)
        .env_remove("IDENTITY_CONFIG")
        .output()
        .expect("run identityd")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

/// The row of `list-keys` for this key id.
fn listed(database_url: &str, key_id: &str) -> Option<String> {
    stdout(&identityd(database_url, &["admin", "list-keys"]))
        .lines()
        .find(|line| line.starts_with(key_id))
        .map(str::to_owned)
}

fn keys_are_created_listed_and_revoked(database_url: &str) {
    let created = identityd(
        database_url,
        &[
            "admin",
            "create-key",
            "--scopes",
            "admin:read,events:read,tokens:introspect",
            "--name",
            "ops",
        ],
    );
    let token = stdout(&created).trim().to_owned();
    let (key_id, secret) = infra::api_keys::split_token(&token).expect("a key token");

    let row = listed(database_url, key_id).expect("the new key is listed");
    assert!(
        row.contains("admin:read events:read tokens:introspect"),
        "{row}"
    );
    assert!(row.ends_with("ops"), "{row}");
    assert!(row.contains("  -  "), "not revoked yet: {row}");
    // The list never shows a secret.
    assert!(!stdout(&identityd(database_url, &["admin", "list-keys"])).contains(secret));

    stdout(&identityd(database_url, &["admin", "revoke-key", key_id]));
    let row = listed(database_url, key_id).expect("a revoked key stays listed");
    assert!(!row.contains("  -  "), "revoked: {row}");

    let unknown = identityd(database_url, &["admin", "revoke-key", "0123456789abcdef"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no API key 0123456789abcdef"));

    let bad = identityd(
        database_url,
        &["admin", "create-key", "--scopes", "admin:everything"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));
}

#[test]
fn sqlite_keys_are_created_listed_and_revoked() {
    keys_are_created_listed_and_revoked(&infra::testing::fresh_sqlite_url());
}

#[tokio::test]
async fn postgres_keys_are_created_listed_and_revoked() {
    if let Some(url) = infra::testing::fresh_postgres_url().await {
        tokio::task::spawn_blocking(move || keys_are_created_listed_and_revoked(&url))
            .await
            .expect("the test body");
    }
}
