//! Login load: virtual users each doing the phone's part (`/sim/wx.login`), then
//! `POST /v1/wechat/login`, then `GET /v1/me`, in a loop (closed loop, one level per
//! concurrency), and one open-loop level paced at a fraction of the best throughput.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::cpu::CpuUse;
use crate::generate::StoredPeople;
use crate::pgserver::WalUse;
use crate::report::Latency;
use crate::service::{APP_A, APP_B, PHONE_USER_AGENT};

/// Share of logins by a person never seen before; the rest are returning users.
const NEW_USER_SHARE: f64 = 0.3;
/// Share of logins into the second app (a returning user's first one there links accounts).
const APP_B_SHARE: f64 = 0.3;
/// The open-loop level stops starting logins past this many in flight (the generator, not
/// the service, would be measured beyond it); skipped starts are counted.
const MAX_IN_FLIGHT: usize = 2048;

/// The bench's HTTP client (logins, and the admin, stream, soak and pg-budget parts): up to
/// 1,024 idle connections kept (one per virtual user), and the phone's User-Agent on every
/// request, as a mini-program's requests carry it (the login records it as the
/// device; without it the load's rows would be smaller than the generated ones).
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .user_agent(PHONE_USER_AGENT)
        .build()
}

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    pub http: reqwest::Client,
    pub service: String,
    pub sim: String,
    /// Distinguishes this run's people from earlier runs' in the names given to the simulator.
    pub run: String,
    /// People already in the database (a pre-filled one): returning users are drawn from
    /// them as well as from the level's own new people.
    pub stored: Option<Arc<StoredPeople>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LevelResult {
    /// Virtual users (closed loop); for the paced level, the most logins in flight at once.
    pub concurrency: usize,
    /// Logins started per second (paced level only).
    pub paced_rate: Option<f64>,
    pub seconds: f64,
    pub logins: u64,
    pub new_users: u64,
    /// Logins by a returning person that the service answered as a registration (the person
    /// was not found): 0 unless people are lost, or (paced level) a person's first login
    /// was still in flight.
    pub returning_registered: u64,
    pub errors: u64,
    /// Paced level: starts skipped because too many logins were in flight.
    pub skipped: u64,
    pub logins_per_sec: f64,
    pub login: Latency,
    pub me: Latency,
    pub error_samples: Vec<String>,
    /// CPU per login by process, filled in by the caller.
    pub cpu: Option<CpuUse>,
    /// WAL per login (PostgreSQL), filled in by the caller.
    pub wal: Option<WalUse>,
}

/// What one virtual user (or the paced generator) saw.
struct Tally {
    login: Histogram<u64>,
    me: Histogram<u64>,
    logins: u64,
    new_users: u64,
    returning_registered: u64,
    errors: u64,
    samples: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        let histogram = || Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
        Self {
            login: histogram(),
            me: histogram(),
            logins: 0,
            new_users: 0,
            returning_registered: 0,
            errors: 0,
            samples: Vec::new(),
        }
    }

    fn merge(&mut self, other: Self) {
        let _ = self.login.add(&other.login);
        let _ = self.me.add(&other.me);
        self.logins += other.logins;
        self.new_users += other.new_users;
        self.returning_registered += other.returning_registered;
        self.errors += other.errors;
        for sample in other.samples {
            if self.samples.len() < 5 && !self.samples.contains(&sample) {
                self.samples.push(sample);
            }
        }
    }

    fn record(&mut self, outcome: Result<Timings, String>, new_user: bool) {
        match outcome {
            Ok(t) => {
                let _ = self.login.record(micros(t.login));
                let _ = self.me.record(micros(t.me));
                self.logins += 1;
                self.new_users += u64::from(new_user);
                self.returning_registered += u64::from(!new_user && t.registered);
            }
            Err(e) => {
                self.errors += 1;
                if self.samples.len() < 5 && !self.samples.contains(&e) {
                    self.samples.push(e);
                }
            }
        }
    }

    fn result(self, concurrency: usize, paced_rate: Option<f64>, elapsed: Duration) -> LevelResult {
        let seconds = elapsed.as_secs_f64();
        LevelResult {
            concurrency,
            paced_rate,
            seconds,
            logins: self.logins,
            new_users: self.new_users,
            returning_registered: self.returning_registered,
            errors: self.errors,
            skipped: 0,
            logins_per_sec: self.logins as f64 / seconds.max(f64::EPSILON),
            login: Latency::of(&self.login),
            me: Latency::of(&self.me),
            error_samples: self.samples,
            cpu: None,
            wal: None,
        }
    }
}

struct Timings {
    login: Duration,
    me: Duration,
    /// The service says this login registered the person.
    registered: bool,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One closed-loop level: `concurrency` virtual users for `duration`.
pub async fn closed_loop(target: &Target, concurrency: usize, duration: Duration) -> LevelResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut users = JoinSet::new();
    for vu in 0..concurrency {
        let target = target.clone();
        users.spawn(async move {
            let mut tally = Tally::new();
            let mut people = People::new(
                format!("{}-c{concurrency}-v{vu}", target.run),
                target.stored.clone(),
            );
            while Instant::now() < deadline {
                let (person, new_user) = people.next();
                tally.record(login_once(&target, &person).await, new_user);
            }
            tally
        });
    }
    joined(users)
        .await
        .result(concurrency, None, started.elapsed())
}

/// A virtual user's people: mostly returning ones, a share of new ones.
struct People {
    prefix: String,
    known: Vec<String>,
    stored: Option<Arc<StoredPeople>>,
}

impl People {
    fn new(prefix: String, stored: Option<Arc<StoredPeople>>) -> Self {
        Self {
            prefix,
            known: Vec::new(),
            stored,
        }
    }

    /// The next person to log in, and whether they are new.
    fn next(&mut self) -> (String, bool) {
        let mut rng = rand::thread_rng();
        let stored = self.stored.as_ref().map_or(0, |s| s.len());
        let returning = self.known.len() as u64 + stored;
        if returning > 0 && !rng.gen_bool(NEW_USER_SHARE) {
            // Anyone who has logged in before, the database's people and this level's alike
            // (a few tries: the blocked stored people are left out).
            for _ in 0..8 {
                let i = rng.gen_range(0..returning);
                let name = match i.checked_sub(self.known.len() as u64) {
                    None => self.known.get(i as usize).cloned(),
                    Some(i) => self.stored.as_ref().and_then(|s| s.name(i)),
                };
                if let Some(name) = name {
                    return (name, false);
                }
            }
        }
        let name = format!("{}-{}", self.prefix, self.known.len() + 1);
        self.known.push(name.clone());
        (name, true)
    }
}

/// Every virtual user's tally, merged.
async fn joined(mut users: JoinSet<Tally>) -> Tally {
    let mut total = Tally::new();
    while let Some(joined) = users.join_next().await {
        if let Ok(tally) = joined {
            total.merge(tally);
        }
    }
    total
}

/// Exactly `logins` successful logins (errors are counted and retried with another person),
/// by `concurrency` virtual users, as the closed loop does them; for counting what a login
/// costs (`--only pg-budget`), where the number of logins matters and the time does not.
pub async fn counted(target: &Target, concurrency: usize, logins: u64, tag: &str) -> LevelResult {
    let started = Instant::now();
    let left = Arc::new(AtomicU64::new(logins));
    let mut users = JoinSet::new();
    for vu in 0..concurrency {
        let (target, left, tag) = (target.clone(), left.clone(), tag.to_owned());
        users.spawn(async move {
            let mut tally = Tally::new();
            let mut people = People::new(format!("{}-{tag}-v{vu}", target.run), None);
            // Take one login from what is left; give it back if it failed.
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                .is_ok()
            {
                let (person, new_user) = people.next();
                let outcome = login_once(&target, &person).await;
                if outcome.is_err() && tally.errors < 1000 {
                    left.fetch_add(1, Ordering::SeqCst);
                }
                tally.record(outcome, new_user);
            }
            tally
        });
    }
    joined(users)
        .await
        .result(concurrency, None, started.elapsed())
}

/// One open-loop level: a login starts every `1 / rate` seconds whatever the answers do, so
/// latency includes any queueing in the service.
pub async fn paced(target: &Target, rate: f64, duration: Duration) -> LevelResult {
    let mut level = None;
    paced_windows(target, rate, duration, duration, |window| {
        level = Some(window)
    })
    .await;
    level.expect("a paced run reports its last window")
}

/// The open loop of [`paced`], reported window by window: `each` is given a window's result
/// as the window ends (a login counts in the window it ends in), the last one once the logins
/// still in flight at the end have finished. A window's `concurrency` is the most logins in
/// flight at once during it.
pub async fn paced_windows(
    target: &Target,
    rate: f64,
    duration: Duration,
    window: Duration,
    mut each: impl FnMut(LevelResult),
) {
    let rate = rate.max(1.0);
    let total = Arc::new(Mutex::new(Tally::new()));
    let known: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let ends = started + duration;
    let mut current = Window::new(started);
    let mut n = 0u64;
    while Instant::now() < ends {
        tick.tick().await;
        let now = Instant::now();
        if now >= current.began + window && current.began + window < ends {
            each(current.result(&total, rate, now));
            current = Window::new(now);
        }
        while tasks.try_join_next().is_some() {}
        let now_in_flight = in_flight.load(Ordering::Relaxed) as usize;
        current.most_in_flight = current.most_in_flight.max(now_in_flight + 1);
        if now_in_flight >= MAX_IN_FLIGHT {
            current.skipped += 1;
            continue;
        }
        n += 1;
        let (person, new_user) = {
            let mut known = known.lock().unwrap_or_else(PoisonError::into_inner);
            let mut rng = rand::thread_rng();
            if known.is_empty() || rng.gen_bool(NEW_USER_SHARE) {
                let name = format!("{}-paced-{n}", target.run);
                known.push(name.clone());
                (name, true)
            } else {
                (known[rng.gen_range(0..known.len())].clone(), false)
            }
        };
        let (target, total, in_flight) = (target.clone(), total.clone(), in_flight.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let outcome = login_once(&target, &person).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let mut one = Tally::new();
            one.record(outcome, new_user);
            total
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .merge(one);
        });
    }
    while tasks.join_next().await.is_some() {}
    each(current.result(&total, rate, Instant::now()));
}

/// One window of a paced run, while it lasts.
struct Window {
    began: Instant,
    most_in_flight: usize,
    skipped: u64,
}

impl Window {
    fn new(began: Instant) -> Self {
        Self {
            began,
            most_in_flight: 0,
            skipped: 0,
        }
    }

    /// The window's result, ending `now`: the logins finished since it began.
    fn result(&self, total: &Mutex<Tally>, rate: f64, now: Instant) -> LevelResult {
        let tally = std::mem::replace(
            &mut *total.lock().unwrap_or_else(PoisonError::into_inner),
            Tally::new(),
        );
        let mut result = tally.result(self.most_in_flight, Some(rate), now - self.began);
        result.skipped = self.skipped;
        result
    }
}

/// The phone's part (not timed), the login (timed), then `/v1/me` (timed).
async fn login_once(target: &Target, person: &str) -> Result<Timings, String> {
    let appid = if rand::thread_rng().gen_bool(APP_B_SHARE) {
        APP_B
    } else {
        APP_A
    };
    let code = post_json(
        target,
        "sim wx.login",
        &format!("{}/sim/wx.login", target.sim),
        json!({"appid": appid, "user": person}),
    )
    .await?;
    let code = code["code"].as_str().ok_or("sim wx.login: no code")?;

    let started = Instant::now();
    let answer = post_json(
        target,
        "login",
        &format!("{}/v1/wechat/login", target.service),
        json!({"appid": appid, "code": code}),
    )
    .await?;
    let login = started.elapsed();
    let token = answer["access_token"]
        .as_str()
        .ok_or("login: no access_token")?;
    let registered = answer["user"]["is_new_user"].as_bool() == Some(true);

    let started = Instant::now();
    let me = target
        .http
        .get(format!("{}/v1/me", target.service))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("me: {e}"))?;
    let status = me.status();
    let _ = me.bytes().await;
    if !status.is_success() {
        return Err(format!("me: HTTP {status}"));
    }
    Ok(Timings {
        login,
        me: started.elapsed(),
        registered,
    })
}

/// POSTs `body` and reads the JSON answer; a failure is told as `{what}: …`.
async fn post_json(target: &Target, what: &str, url: &str, body: Value) -> Result<Value, String> {
    let failed = |e: &dyn std::fmt::Display| format!("{what}: {e}");
    let response = target
        .http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| failed(&e))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| failed(&e))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(failed(&format_args!(
            "HTTP {status} {}",
            body["code"].as_str().unwrap_or("")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::Naming;

    #[test]
    fn returning_people_come_from_the_database_as_well() {
        let naming = Naming::Simulator {
            prefix: "stored".into(),
        };
        let stored = Arc::new(StoredPeople::new(naming, vec![500, 500]));
        let mut people = People::new("level".into(), Some(stored));
        let (mut new, mut from_database) = (0, 0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (name, is_new) = people.next();
            if is_new {
                assert!(
                    name.starts_with("level-") && seen.insert(name.clone()),
                    "{name}"
                );
            } else {
                assert!(
                    name.starts_with("stored-s") || seen.contains(&name),
                    "{name}"
                );
            }
            new += u32::from(is_new);
            from_database += u32::from(name.starts_with("stored-s"));
        }
        assert!((200..400).contains(&new), "{new} new of 1000");
        // Nearly every returning login finds a stored person (1000 of them against the few
        // hundred the level made itself).
        assert!(from_database > 500, "{from_database} from the database");
    }

    #[test]
    fn without_a_database_the_first_person_is_new() {
        let mut people = People::new("level".into(), None);
        assert_eq!(people.next(), ("level-1".to_owned(), true));
    }
}
