//! SIGKILL of `identityd` under login load, on both backends: after a restart on the same
//! database every acknowledged login is valid, each WeChat account (openid) and each unionid
//! belongs to exactly one user, and the read models equal a rebuild of them from the log.
//!
//! The figures (logins acknowledged, users, time to ready after the restart) are printed for
//! RELIABILITY.md: `cargo test -p api --test crash -- --nocapture`.

mod identityd;
mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use domain::AppId;
use futures::StreamExt;
use serde_json::{json, Value};
use testkit::sim::SimServer;
use testkit::{both_backends, Backend, Fixture};

use identityd::{Identityd, Setup, ADMIN_TOKEN};
use load::{Acknowledged, Load};

both_backends!(Fresh: acknowledged_logins_survive_a_sigkill_under_load);

/// Two apps of one Open Platform account: a person in both is one user (linked by unionid).
const APP_A: &str = "wxc0000000000000a1";
const APP_B: &str = "wxc0000000000000b2";
const SECRET_A: &str = "crash-secret-a";
const SECRET_B: &str = "crash-secret-b";
const OPEN_PLATFORM: &str = "crash-open-platform";

const VIRTUAL_USERS: usize = 12;
/// The load runs this long at least, and until this many logins were acknowledged…
const LOAD_FOR: Duration = Duration::from_secs(3);
const ACKNOWLEDGED_AT_LEAST: u64 = 300;
/// …unless the service is this slow, which fails the test.
const LOAD_AT_MOST: Duration = Duration::from_secs(15);
/// A debug build on a busy machine: generous, and still a bound.
const START_WITHIN: Duration = Duration::from_secs(20);
const CATCH_UP_WITHIN: Duration = Duration::from_secs(20);
/// Refresh tokens tried after the restart (each refresh is a write; `/v1/me` checks them all).
const REFRESHED: usize = 25;

/// A fresh database of one backend.
struct Fresh {
    url: String,
    backend: Backend,
}

impl Fixture for Fresh {
    async fn start(backend: Backend) -> Option<Self> {
        let url = testkit::fresh_url(backend).await?;
        Some(Self { url, backend })
    }
}

async fn acknowledged_logins_survive_a_sigkill_under_load(db: Fresh) {
    let began = Instant::now();
    let sim = SimServer::start(&[
        (APP_A, SECRET_A, Some(OPEN_PLATFORM)),
        (APP_B, SECRET_B, Some(OPEN_PLATFORM)),
    ])
    .await;
    let setup = Setup {
        database_url: db.url.clone(),
        wechat_api_base: sim.base.clone(),
        apps: format!("{APP_A}:{SECRET_A},{APP_B}:{SECRET_B}"),
    };
    let mut service = Identityd::start(&setup, START_WITHIN).await;

    let apps = [APP_A, APP_B].map(|a| AppId::parse(a).expect("an appid"));
    let load = Load::start(&service.base, sim.sim.clone(), apps, VIRTUAL_USERS);
    let load_began = Instant::now();
    while load_began.elapsed() < LOAD_FOR || load.acknowledged() < ACKNOWLEDGED_AT_LEAST {
        assert!(
            load_began.elapsed() < LOAD_AT_MOST,
            "only {} logins acknowledged in {LOAD_AT_MOST:?}",
            load.acknowledged()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.killing();
    service.sigkill();
    let loaded_for = load_began.elapsed();
    let outcome = load.outcome().await;
    assert!(
        outcome.refused.is_empty(),
        "{} logins refused, first: {:?}",
        outcome.refused.len(),
        &outcome.refused[..outcome.refused.len().min(5)]
    );
    assert!(
        outcome.cut_before_the_kill.is_empty(),
        "requests cut while the service was alive: {:?}",
        outcome.cut_before_the_kill
    );
    assert!(
        outcome.cut_by_the_kill > 0,
        "no login was in flight at the kill: not a kill under load"
    );
    let acknowledged = outcome.acknowledged;

    let restarted = Instant::now();
    let service = Identityd::start(&setup, START_WITHIN).await;
    let ready_after = restarted.elapsed();
    let http = reqwest::Client::new();
    refresh_tokens_refresh(
        &http,
        &service.base,
        &acknowledged[..REFRESHED.min(acknowledged.len())],
    )
    .await;
    let caught_up = Instant::now();
    let events = read_models_catch_up(&http, &service.base).await;
    let caught_up_after = caught_up.elapsed();
    access_tokens_are_valid(&http, &service.base, &acknowledged).await;
    let users = one_user_per_account(&http, &service.base, &acknowledged).await;
    // Killed again: the read models stay as the restarted service left them.
    drop(service);
    read_models_equal_a_rebuild(&setup).await;

    let people: BTreeSet<&str> = acknowledged.iter().map(|a| a.person.as_str()).collect();
    println!(
        "crash figures ({backend}): {acknowledged} logins acknowledged in {loaded:.1} s by \
         {VIRTUAL_USERS} virtual users ({cut} cut by the SIGKILL), all valid after the restart; \
         {users} users for {people} people, no duplicate; ready {ready} ms after the restart, \
         read models caught up {caught} ms later ({events} events), equal to a rebuild; \
         whole test {total:.1} s",
        backend = db.backend,
        acknowledged = acknowledged.len(),
        loaded = loaded_for.as_secs_f64(),
        cut = outcome.cut_by_the_kill,
        people = people.len(),
        ready = ready_after.as_millis(),
        caught = caught_up_after.as_millis(),
        total = began.elapsed().as_secs_f64(),
    );
}

/// The first acknowledged logins' refresh tokens rotate, once each.
async fn refresh_tokens_refresh(http: &reqwest::Client, base: &str, sample: &[Acknowledged]) {
    for login in sample {
        let answer = http
            .post(format!("{base}/v1/token/refresh"))
            .json(&json!({ "refresh_token": login.refresh_token }))
            .send()
            .await
            .expect("refresh answered");
        let status = answer.status();
        assert_eq!(status, 200, "{}", answer.text().await.unwrap_or_default());
    }
}

/// Waits until `/readyz` reports every read model at the log's head: that head.
async fn read_models_catch_up(http: &reqwest::Client, base: &str) -> i64 {
    let deadline = Instant::now() + CATCH_UP_WITHIN;
    loop {
        let ready: Value = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("/readyz answered")
            .json()
            .await
            .expect("/readyz JSON");
        let projections = ready["projections"].as_object().expect("projections");
        if projections.values().all(|p| p["lag"] == 0) {
            return projections
                .values()
                .filter_map(|p| p["position"].as_i64())
                .max()
                .unwrap_or(0);
        }
        assert!(Instant::now() < deadline, "read models behind: {ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged login's access token is accepted by `/v1/me`, as the user it named.
async fn access_tokens_are_valid(http: &reqwest::Client, base: &str, logins: &[Acknowledged]) {
    let refused: Vec<String> = futures::stream::iter(logins)
        .map(|login| async move {
            let answer = http
                .get(format!("{base}/v1/me"))
                .bearer_auth(&login.access_token)
                .send()
                .await
                .expect("/v1/me answered");
            let status = answer.status();
            let me: Value = answer.json().await.unwrap_or_default();
            (status != 200 || me["user_id"] != login.user_id.as_str())
                .then(|| format!("{}: {status} {me}", login.person))
        })
        .buffer_unordered(8)
        .filter_map(|refused| async move { refused })
        .collect()
        .await;
    assert!(
        refused.is_empty(),
        "{} of {} acknowledged logins invalid after the restart, first: {:?}",
        refused.len(),
        logins.len(),
        &refused[..refused.len().min(5)]
    );
}

/// Through the admin API: each openid and each unionid belongs to one user, the one the
/// acknowledged logins named, and a person is one user across both apps. The number of users.
async fn one_user_per_account(
    http: &reqwest::Client,
    base: &str,
    logins: &[Acknowledged],
) -> usize {
    let users = all_users(http, base).await;
    let mut by_openid: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_unionid: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for user in &users {
        let user_id = user["user_id"].as_str().expect("a user id").to_owned();
        for account in user["accounts"].as_array().expect("accounts") {
            let openid = account["openid"].as_str().expect("an openid").to_owned();
            by_openid.entry(openid).or_default().push(user_id.clone());
        }
        if let Some(unionid) = user["unionid"].as_str() {
            by_unionid
                .entry(unionid.to_owned())
                .or_default()
                .push(user_id.clone());
        }
    }
    for (what, owners) in [("openid", &by_openid), ("unionid", &by_unionid)] {
        let shared: Vec<_> = owners.iter().filter(|(_, users)| users.len() > 1).collect();
        assert!(
            shared.is_empty(),
            "{what}s held by several users: {shared:?}"
        );
    }
    let mut person_users: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for login in logins {
        assert_eq!(
            by_openid.get(&login.openid),
            Some(&vec![login.user_id.clone()]),
            "{}'s account belongs to the user its login named",
            login.person
        );
        person_users
            .entry(&login.person)
            .or_default()
            .insert(&login.user_id);
    }
    let split: Vec<_> = person_users.iter().filter(|(_, u)| u.len() > 1).collect();
    assert!(
        split.is_empty(),
        "people split into several users: {split:?}"
    );
    users.len()
}

/// Every user, through the admin API's pages.
async fn all_users(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut users = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "200".to_owned())];
        query.extend(cursor.map(|c| ("cursor", c)));
        let page: Value = http
            .get(format!("{base}/v1/admin/users"))
            .query(&query)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("/v1/admin/users answered")
            .error_for_status()
            .expect("a page of users")
            .json()
            .await
            .expect("a page of users");
        users.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return users,
        }
    }
}

/// The read models as the restarted service built them equal what `identityd projections
/// rebuild` builds from the log.
async fn read_models_equal_a_rebuild(setup: &Setup) {
    let dump = || async {
        projections::ReadModels::connect(&setup.database_url, chrono_tz::UTC)
            .await
            .expect("the read models")
            .dump()
            .await
            .expect("their rows")
    };
    let live = dump().await;
    testkit::run_ok(
        &mut setup.command(&["projections", "rebuild"]),
        "identityd projections rebuild",
    );
    let rebuilt = dump().await;
    for ((table, live), (_, rebuilt)) in live.iter().zip(&rebuilt) {
        if live != rebuilt {
            let only_live: Vec<_> = live.iter().filter(|r| !rebuilt.contains(r)).collect();
            let only_rebuilt: Vec<_> = rebuilt.iter().filter(|r| !live.contains(r)).collect();
            panic!(
                "{table}: {} rows live, {} rebuilt; only live: {:?}; only rebuilt: {:?}",
                live.len(),
                rebuilt.len(),
                &only_live[..only_live.len().min(3)],
                &only_rebuilt[..only_rebuilt.len().min(3)],
            );
        }
    }
    assert_eq!(live.len(), rebuilt.len());
}
