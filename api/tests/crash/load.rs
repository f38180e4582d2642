//! Login load on a service about to be killed: virtual users each play the phone's part at
//! the simulator (`wx.login`, in process) and log in, in a loop; every acknowledged login (200
//! with tokens) is kept, since each one must survive the kill.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::AppId;
use infra::wechat::sim::Simulator;
use rand::Rng;
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// A login the service answered 200, with what it answered.
pub struct Acknowledged {
    /// The simulator's name of the person.
    pub person: String,
    pub openid: String,
    pub user_id: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// What the virtual users saw.
#[derive(Default)]
pub struct Outcome {
    pub acknowledged: Vec<Acknowledged>,
    /// Answers other than 200 (status and body): none expected.
    pub refused: Vec<String>,
    /// Requests that got no whole answer because the service was killed.
    pub cut_by_the_kill: u64,
    /// Requests that got no answer while the service was alive: none expected.
    pub cut_before_the_kill: Vec<String>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.acknowledged.extend(other.acknowledged);
        self.refused.extend(other.refused);
        self.cut_by_the_kill += other.cut_by_the_kill;
        self.cut_before_the_kill.extend(other.cut_before_the_kill);
    }
}

/// Who logs in: mostly a pool of people (first logins early on, returning ones later), some
/// into the second app of the same Open Platform account (their accounts link through the
/// unionid), and a few "hot" people logged into by several virtual users at once, so that
/// concurrent first logins of one openid happen.
fn next_login(apps: &[AppId; 2]) -> (String, AppId) {
    const POOL: u32 = 300;
    const HOT: u32 = 4;
    let mut rng = rand::thread_rng();
    let person = if rng.gen_bool(0.1) {
        format!("hot-{}", rng.gen_range(0..HOT))
    } else {
        format!("person-{}", rng.gen_range(0..POOL))
    };
    let app = apps[usize::from(rng.gen_bool(0.3))].clone();
    (person, app)
}

/// Virtual users logging in until told the service is being killed.
pub struct Load {
    killing: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    users: JoinSet<Outcome>,
}

impl Load {
    pub fn start(base: &str, sim: Arc<Simulator>, apps: [AppId; 2], users: usize) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an HTTP client");
        let killing = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..users {
            let user = VirtualUser {
                http: http.clone(),
                login_url: format!("{base}/v1/wechat/login"),
                sim: sim.clone(),
                apps: apps.clone(),
                killing: killing.clone(),
                acknowledged: acknowledged.clone(),
            };
            tasks.spawn(user.run());
        }
        Self {
            killing,
            acknowledged,
            users: tasks,
        }
    }

    /// Logins acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::SeqCst)
    }

    /// Called right before the kill: from now on a request without an answer is the kill's
    /// doing, and no virtual user starts another login.
    pub fn killing(&self) {
        self.killing.store(true, Ordering::SeqCst);
    }

    /// Waits for every virtual user's last request: what they saw.
    pub async fn outcome(mut self) -> Outcome {
        let mut outcome = Outcome::default();
        while let Some(user) = self.users.join_next().await {
            outcome.merge(user.expect("a virtual user"));
        }
        outcome
    }
}

struct VirtualUser {
    http: reqwest::Client,
    login_url: String,
    sim: Arc<Simulator>,
    apps: [AppId; 2],
    killing: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
}

impl VirtualUser {
    async fn run(self) -> Outcome {
        let mut outcome = Outcome::default();
        while !self.killing.load(Ordering::SeqCst) {
            let (person, app) = next_login(&self.apps);
            let code = self
                .sim
                .wx_login(&app, Some(&person))
                .expect("the simulator hands out a code");
            let answer = async {
                let response = self
                    .http
                    .post(&self.login_url)
                    .json(&json!({ "appid": app.as_str(), "code": code }))
                    .send()
                    .await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.text().await?))
            };
            match answer.await {
                Ok((status, body)) if status == 200 => {
                    outcome.acknowledged.push(acknowledged(person, &body));
                    self.acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                Ok((status, body)) => outcome.refused.push(format!("{status} {body}")),
                // No whole answer: the connection was cut.
                Err(_) if self.killing.load(Ordering::SeqCst) => outcome.cut_by_the_kill += 1,
                Err(e) => outcome.cut_before_the_kill.push(e.to_string()),
            }
        }
        outcome
    }
}

fn acknowledged(person: String, body: &str) -> Acknowledged {
    let body: Value = serde_json::from_str(body).expect("a login answer is JSON");
    let text = |value: &Value| {
        value
            .as_str()
            .unwrap_or_else(|| panic!("a login answer with every field: {body}"))
            .to_owned()
    };
    Acknowledged {
        person,
        openid: text(&body["user"]["openid"]),
        user_id: text(&body["user"]["user_id"]),
        access_token: text(&body["access_token"]),
        refresh_token: text(&body["refresh_token"]),
    }
}
