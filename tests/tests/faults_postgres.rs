//! PostgreSQL faults under login load, against the real service on a private cluster
//! (`testkit::PgCluster`, never the shared server): a restart answers only 200 or 503
//! `database_unavailable`, a 10 s stop answers only quick 503s and heals by itself (logins,
//! read models, readiness, the open event stream) once the server is back.
//!
//! Run with `--nocapture` to see the figures (counts of 503s, the slowest, the time to the
//! first login after the server came back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use identity_tests::{World, APP_A};
use reqwest::Method;
use serde_json::json;
use testkit::PgCluster;
use tokio::task::JoinSet;

/// Concurrent clients, each looping login then `GET /v1/me`.
const CLIENTS: usize = 8;
/// The bound on every 503 while the database is down.
const UNAVAILABLE_WITHIN: Duration = Duration::from_secs(2);
/// The bound on `/readyz`'s answer, ready or not.
const READY_WITHIN: Duration = Duration::from_secs(1);

/// The tests stop and restart servers and time answers: one at a time, so that neither
/// measures the other's load on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One answer the load got.
#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    sent: Instant,
    took: Duration,
    status: u16,
    code: Option<String>,
    retry_after: Option<String>,
}

impl Answer {
    fn done(&self) -> Instant {
        self.sent + self.took
    }

    /// 200, or 503 `database_unavailable` with `Retry-After`: what a client can act on.
    fn is_expected(&self) -> bool {
        self.status == 200 || self.is_unavailable()
    }

    fn is_unavailable(&self) -> bool {
        self.status == 503
            && self.code.as_deref() == Some("database_unavailable")
            && self.retry_after.is_some()
    }
}

/// `CLIENTS` clients looping login + `GET /v1/me` until stopped, recording every answer.
struct Load {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    clients: JoinSet<()>,
}

impl Load {
    fn start(world: &Arc<World>) -> Self {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = JoinSet::new();
        for client in 0..CLIENTS {
            let (world, answers, stop) = (world.clone(), answers.clone(), stop.clone());
            clients.spawn(async move {
                let user = format!("load-user-{client}");
                while !stop.load(Ordering::Relaxed) {
                    let code = world.wx_login(APP_A, &user).await;
                    let login = world
                        .call(Method::POST, "/v1/wechat/login")
                        .json(&json!({ "appid": APP_A, "code": code }));
                    let (answer, body) = timed("login", login.send()).await;
                    let token = (answer.status == 200)
                        .then(|| body["access_token"].as_str().map(str::to_owned))
                        .flatten();
                    answers.lock().expect("the answers").push(answer);
                    if let Some(token) = token {
                        let me = world.call(Method::GET, "/v1/me").bearer(&token);
                        let (answer, _) = timed("me", me.send()).await;
                        answers.lock().expect("the answers").push(answer);
                    }
                    // Leaves the machine some room: it is shared.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
        Self {
            answers,
            stop,
            clients,
        }
    }

    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().expect("the answers").clone()
    }

    /// Waits (up to `within`) until a login succeeded at or after `since`; the first.
    async fn first_login_since(&self, since: Instant, within: Duration) -> Option<Answer> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .answers()
                .into_iter()
                .filter(|a| a.what == "login" && a.status == 200 && a.done() >= since)
                .min_by_key(Answer::done);
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(done) = self.clients.join_next().await {
            done.expect("a load client does not panic");
        }
        self.answers()
    }
}

/// Sends a request (giving up after 10 s, counted as status 0) and times it.
async fn timed(
    what: &'static str,
    request: impl std::future::Future<Output = reqwest::Response>,
) -> (Answer, serde_json::Value) {
    let sent = Instant::now();
    let Ok(response) = tokio::time::timeout(Duration::from_secs(10), request).await else {
        let answer = Answer {
            what,
            sent,
            took: sent.elapsed(),
            status: 0,
            code: None,
            retry_after: None,
        };
        return (answer, serde_json::Value::Null);
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let answer = Answer {
        what,
        sent,
        took: sent.elapsed(),
        status,
        code: body["code"].as_str().map(str::to_owned),
        retry_after,
    };
    (answer, body)
}

/// Waits (up to 10 s) for `count` successful logins from the start of the load.
async fn wait_for_logins(load: &Load, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while load
        .answers()
        .iter()
        .filter(|a| a.what == "login" && a.status == 200)
        .count()
        < count
    {
        assert!(Instant::now() < deadline, "the load is not logging in");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts every answer is 200 or a 503 the client can act on.
fn assert_only_expected(answers: &[Answer], cluster: &PgCluster) {
    let unexpected: Vec<&Answer> = answers.iter().filter(|a| !a.is_expected()).collect();
    assert!(
        unexpected.is_empty(),
        "answers other than 200 or 503 database_unavailable with Retry-After: {unexpected:#?}\n\
         server log:\n{}",
        cluster.log()
    );
}

fn unavailable(answers: &[Answer]) -> Vec<&Answer> {
    answers.iter().filter(|a| a.is_unavailable()).collect()
}

fn slowest(answers: &[&Answer]) -> Duration {
    answers.iter().map(|a| a.took).max().unwrap_or_default()
}

/// `GET /readyz`: its status and how long it took.
async fn readiness(world: &World) -> (u16, Duration) {
    let sent = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), world.get("/readyz"))
        .await
        .expect("/readyz answers");
    (answer.status().as_u16(), sent.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_under_load_answers_only_200_or_503() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = PgCluster::start().await else {
        return;
    };
    let world = Arc::new(World::start_on(cluster.url(), "UTC").await);
    let load = Load::start(&world);
    wait_for_logins(&load, CLIENTS).await;

    let restarting = Instant::now();
    cluster.restart().await;
    let back = Instant::now();
    let first = load
        .first_login_since(back, Duration::from_secs(5))
        .await
        .expect("logins succeed again after the restart");
    // A little more load on the restarted server: the pool's dead connections are met now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers = load.stop().await;

    assert_only_expected(&answers, &cluster);
    let unavailable = unavailable(&answers);
    println!(
        "restart (pg_ctl restart -m fast, {:.2} s) under {CLIENTS} clients: {} answers, {} × 503 \
         database_unavailable (slowest {:.3} s), first login after the restart done {:.3} s \
         after pg_ctl returned",
        (back - restarting).as_secs_f64(),
        answers.len(),
        unavailable.len(),
        slowest(&unavailable).as_secs_f64(),
        first.done().saturating_duration_since(back).as_secs_f64(),
    );
    assert!(slowest(&unavailable) <= UNAVAILABLE_WITHIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_answers_quick_503s_and_everything_heals_when_the_server_is_back() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = PgCluster::start().await else {
        return;
    };
    let world = Arc::new(World::start_on(cluster.url(), "UTC").await);
    let key = world.api_key("events:read").await;
    let mut stream = world.open_event_stream(&world.app.base, &key).await;
    let load = Load::start(&world);
    wait_for_logins(&load, CLIENTS).await;

    cluster.stop().await;
    let down = Instant::now();
    // The outage lasts 10 s; meanwhile readiness says so, quickly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ready_down, ready_down_took) = readiness(&world).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let starting = Instant::now();
    cluster.start_again().await;
    let up = Instant::now();

    let first = load
        .first_login_since(up, Duration::from_secs(5))
        .await
        .expect("logins succeed again once the server is back");
    let answers = load.stop().await;

    assert_only_expected(&answers, &cluster);
    // Sent and answered while the server was down: 503s only.
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent >= down && a.done() <= starting)
        .collect();
    assert!(
        during.iter().all(|a| a.is_unavailable()),
        "while down: {during:#?}"
    );
    assert!(during.len() >= CLIENTS, "the load went on while down");
    let unavailable = unavailable(&answers);
    let to_first = first.done().saturating_duration_since(up);
    println!(
        "10 s stop (pg_ctl stop -m fast) under {CLIENTS} clients: {} answers, {} × 503 \
         database_unavailable (slowest {:.3} s, {} while down); /readyz while down: {} in \
         {:.3} s; pg_ctl start took {:.2} s; first login done {:.3} s after it returned",
        answers.len(),
        unavailable.len(),
        slowest(&unavailable).as_secs_f64(),
        during.len(),
        ready_down,
        ready_down_took.as_secs_f64(),
        (up - starting).as_secs_f64(),
        to_first.as_secs_f64(),
    );
    assert!(
        slowest(&unavailable) <= UNAVAILABLE_WITHIN,
        "the slowest 503: {:?}",
        unavailable.iter().max_by_key(|a| a.took)
    );
    assert_eq!(ready_down, 503, "/readyz while the database is down");
    assert!(
        ready_down_took <= READY_WITHIN,
        "/readyz took {ready_down_took:?}"
    );
    assert!(
        to_first <= Duration::from_secs(1),
        "first login {to_first:?} after the server was back"
    );

    // The read models catch up by themselves, and readiness says ready again.
    let catching_up = Instant::now();
    world.wait_for_projections(Duration::from_secs(10)).await;
    let caught_up = catching_up.elapsed();
    let (ready_up, ready_up_took) = readiness(&world).await;
    assert_eq!(ready_up, 200);
    assert!(
        ready_up_took <= READY_WITHIN,
        "/readyz took {ready_up_took:?}"
    );
    println!(
        "after the stop: read models caught up {:.3} s after the load ended; /readyz 200 in {:.3} s",
        caught_up.as_secs_f64(),
        ready_up_took.as_secs_f64()
    );

    // The event stream opened before the outage is still open and carries what came after.
    let head = world
        .store()
        .await
        .read_all(0, u32::MAX)
        .await
        .expect("the log")
        .last()
        .map_or(0, |e| e.position);
    assert!(
        stream_reaches(&mut stream, head).await,
        "the event stream opened before the outage did not reach position {head}"
    );
}

/// Reads the stream until an event with an `id` of at least `position` arrives (10 s at most);
/// false if it ended or did not get there.
async fn stream_reaches(stream: &mut reqwest::Response, position: i64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, stream.chunk()).await else {
            return false;
        };
        pending.push_str(&String::from_utf8_lossy(&chunk));
        let reached = pending
            .lines()
            .filter_map(|line| line.strip_prefix("id:"))
            .filter_map(|id| id.trim().parse::<i64>().ok())
            .any(|id| id >= position);
        if reached {
            return true;
        }
        // Keep only the last, possibly partial, line.
        if let Some(cut) = pending.rfind('\n') {
            pending.drain(..=cut);
        }
    }
}
