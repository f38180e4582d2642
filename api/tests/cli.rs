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
    keys_are_created_listed_and_revoked(&testkit::fresh_sqlite_url());
}

#[tokio::test]
async fn postgres_keys_are_created_listed_and_revoked() {
    on_postgres(keys_are_created_listed_and_revoked).await;
}

/// `identityd keys …` with these master keys (`None`: unset).
fn identityd_keys(
    database_url: &str,
    command: &str,
    master: Option<&str>,
    previous: Option<&str>,
) -> Output {
    let mut identityd = Command::new(env!("CARGO_BIN_EXE_identityd"));
    identityd
        .arg("keys")
        .args(command.split_whitespace())
        .env("IDENTITY_DATABASE_URL", database_url)
        .env_remove("IDENTITY_CONFIG")
        .env_remove("IDENTITY_MASTER_KEY")
        .env_remove("IDENTITY_MASTER_KEY_PREVIOUS");
    if let Some(master) = master {
        identityd.env("IDENTITY_MASTER_KEY", master);
    }
    if let Some(previous) = previous {
        identityd.env("IDENTITY_MASTER_KEY_PREVIOUS", previous);
    }
    identityd.output().expect("run identityd")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn keys_rotate_from_the_command_line(database_url: &str) {
    use secrecy::ExposeSecret;
    let generate = || {
        infra::crypto::MasterKey::generate()
            .to_base64()
            .expose_secret()
            .to_owned()
    };
    let (old, new) = (generate(), generate());

    let first = stdout(&identityd_keys(database_url, "rotate", Some(&old), None));
    let second = stdout(&identityd_keys(database_url, "rotate", Some(&old), None));
    assert_eq!(first.trim().len(), 43, "a key id: {first}");
    assert_ne!(first, second);
    let signer = identityd_keys(database_url, &format!("retire {second}"), Some(&old), None);
    assert!(!signer.status.success());
    assert!(stderr(&signer).contains("keys rotate"), "{signer:?}");
    let retired = identityd_keys(database_url, &format!("retire {first}"), Some(&old), None);
    assert!(retired.status.success(), "{retired:?}");
    assert!(stderr(&retired).contains("retired"), "{retired:?}");

    let without_previous = identityd_keys(database_url, "rotate-master", Some(&new), None);
    assert!(!without_previous.status.success());
    assert!(stderr(&without_previous).contains("IDENTITY_MASTER_KEY_PREVIOUS"));
    let rotated = identityd_keys(database_url, "rotate-master", Some(&new), Some(&old));
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(
        stderr(&rotated).contains("1 entry re-wrapped"),
        "{rotated:?}"
    );

    let stale = identityd_keys(database_url, "rotate", Some(&old), None);
    assert!(!stale.status.success());
    assert!(
        stderr(&stale).contains("does not open under IDENTITY_MASTER_KEY"),
        "{stale:?}"
    );
    stdout(&identityd_keys(database_url, "rotate", Some(&new), None));

    let new_root = identityd_keys(database_url, "rotate-master --new-root", Some(&new), None);
    assert!(new_root.status.success(), "{new_root:?}");
    assert!(
        stderr(&new_root).contains("new sealing root")
            && stderr(&new_root).contains("log in again"),
        "{new_root:?}"
    );
    stdout(&identityd_keys(database_url, "rotate", Some(&new), None));
}

#[test]
fn sqlite_keys_rotate_from_the_command_line() {
    keys_rotate_from_the_command_line(&testkit::fresh_sqlite_url());
}

#[tokio::test]
async fn postgres_keys_rotate_from_the_command_line() {
    on_postgres(keys_rotate_from_the_command_line).await;
}

/// Runs a blocking test body on a fresh PostgreSQL schema (skipped without one).
async fn on_postgres(body: fn(&str)) {
    if let Some(url) = testkit::fresh_postgres_url().await {
        tokio::task::spawn_blocking(move || body(&url))
            .await
            .expect("the test body");
    }
}
