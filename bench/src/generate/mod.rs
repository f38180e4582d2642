//! Writes a large, realistic log fast: direct batched appends through the event store (about
//! 1000 events per `AppendBatch`, several appenders at once), the payload shapes the service
//! writes. People register (half of them with a unionid), come back and log in again (a few
//! heavy users log in very often), sometimes in the second app (accounts linked), refresh and
//! log out; a few users are blocked.
//!
//! What is written is what the service writes now: every user gets a data key at
//! registration, personal fields and metadata are sealed under it by the service's own codec
//! (`infra::personal_data::seal_event`) at the current schema versions, and the claims are the
//! keyed hashes the login path looks up. Refused logins are not events any more, so none are
//! written. The service's one-time personal-data migration therefore has nothing to seal, and
//! [`run`] records it as done.
//!
//! With [`Naming::Simulator`] the people are the WeChat simulator's (a login through it by the
//! same name finds them) and their session keys are stored too: a database pre-filled for a
//! login level. [`Mix::PeoplePerEvent`] sets how many people a log of a given size holds.

mod people;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use domain::{Actor, AppId, Claim, Device, EventId, Metadata, OpenId, StreamId, UnionId, UserId};
use infra::crypto::{MasterKey, Sealer};
use infra::keyring::MasterKeys;
use infra::personal_data::{seal_event, LookupIndex, PersonalData, UserKey};
use infra::store::{AppendBatch, ClaimKey, ExpectedVersion, NewEvent, SideWrite, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

pub use self::people::{Mix, Naming, StoredPeople};
use crate::service::{APP_A, APP_B, PHONE_USER_AGENT};

/// Events per append.
const BATCH_EVENTS: u64 = 1000;
/// Simulated time between two events of the log: 1M events span about a month.
pub const EVENT_SPACING_MS: i64 = 2_600;

/// The people generated so far, one shard per appender (carried over between phases so a
/// later phase has returning users too).
pub struct Population {
    shards: Vec<Vec<Person>>,
    /// Events generated so far (the next event's place in simulated time).
    generated: u64,
    naming: Naming,
    mix: Mix,
}

impl Default for Population {
    /// The generator's own people; one action in ten a registration.
    fn default() -> Self {
        Self::new(Naming::Own, Mix::Share(0.10))
    }
}

#[derive(Clone)]
struct Person {
    id: Uuid,
    n: u64,
    unionid: bool,
    linked_b: bool,
    /// Blocked by an admin: the service refuses their logins.
    blocked: bool,
    key: Arc<UserKey>,
}

/// The keys the service would seal and hash with: opened from the database's keyring, as the
/// service opens it (made on first use, so the service finds the same one).
pub struct Keys {
    data: PersonalData,
    index: LookupIndex,
    /// Seals WeChat session keys as the service does (`session-key` purpose).
    session_keys: Sealer,
}

impl Keys {
    pub async fn open(store: &dyn Store, master_key: &str) -> anyhow::Result<Self> {
        let keys = MasterKeys {
            current: MasterKey::from_base64(master_key)?,
            previous: None,
        };
        let keyring = infra::keyring::open(store, &keys).await?;
        Ok(Self {
            data: PersonalData::new(&keyring.sealing),
            index: LookupIndex::new(&keyring.lookup),
            session_keys: keyring.sealing.sealer("session-key"),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generated {
    pub events: u64,
    /// What the events made: people registered (each with a data key), streams begun (their
    /// user streams and one per login's session), uniqueness claims, stored session keys.
    pub people: u64,
    pub streams: u64,
    pub claims: u64,
    pub session_keys: u64,
    pub appends: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub appenders: usize,
}

/// What the admin queries pick from.
pub struct Sample {
    pub users: Vec<Uuid>,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

impl Population {
    pub fn new(naming: Naming, mix: Mix) -> Self {
        Self {
            shards: Vec::new(),
            generated: 0,
            naming,
            mix,
        }
    }

    /// Everyone generated so far, by name (`None` for the generator's own people, whom no
    /// login through the simulator can find).
    pub fn stored(&self) -> Option<StoredPeople> {
        self.naming.name(0, 0)?;
        let shards = self.shards.iter().map(|s| s.len() as u64).collect();
        let blocked = self.shards.iter().enumerate().flat_map(|(shard, people)| {
            people
                .iter()
                .filter(|p| p.blocked)
                .map(move |p| (shard as u64, p.n))
        });
        Some(StoredPeople::new(self.naming.clone(), shards).without(blocked))
    }

    /// Users to look up (up to `count`, random) and the simulated time span of the log.
    pub fn sample(&self, start: DateTime<Utc>, count: usize) -> Sample {
        let mut rng = rand::thread_rng();
        let everyone: Vec<&Person> = self.shards.iter().flatten().collect();
        let users = if everyone.is_empty() {
            Vec::new()
        } else {
            (0..count)
                .map(|_| everyone[rng.gen_range(0..everyone.len())].id)
                .collect()
        };
        Sample {
            users,
            first: start,
            last: start + Duration::milliseconds(EVENT_SPACING_MS * self.generated as i64),
        }
    }
}

/// Appends about `events` more events; simulated time starts at `start`.
pub async fn run(
    store: Arc<dyn Store>,
    population: &mut Population,
    events: u64,
    appenders: usize,
    start: DateTime<Utc>,
    keys: Arc<Keys>,
) -> anyhow::Result<Generated> {
    // What is written is already sealed, as by a service that made this database: record the
    // one-time personal-data migration as done, so that the service's first start does not
    // walk the whole log (minutes at 10M events) to find nothing to seal.
    store
        .record_one_time(infra::personal_data::migration::NAME, Utc::now())
        .await?;
    // Each appender keeps its shard from phase to phase: openids and unionids are numbered
    // per shard, and their claims must not collide.
    population.shards.resize(appenders, Vec::new());
    let reserved = Arc::new(AtomicU64::new(0));
    let (naming, mix) = (population.naming.clone(), population.mix);
    let clock = Arc::new(AtomicU64::new(population.generated));
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (shard_no, people) in population.shards.drain(..).enumerate() {
        let (store, reserved, clock) = (store.clone(), reserved.clone(), clock.clone());
        let (keys, naming) = (keys.clone(), naming.clone());
        tasks.spawn(async move {
            let mut writer = Writer {
                keys,
                naming,
                mix,
                written: 0,
                tally: Tally::default(),
                people,
                rng: StdRng::from_entropy(),
                shard: shard_no as u64,
                start,
                clock,
                batch: Batch::default(),
            };
            let mut appends = 0u64;
            loop {
                let from = reserved.fetch_add(BATCH_EVENTS, Ordering::Relaxed);
                if from >= events {
                    break;
                }
                let want = BATCH_EVENTS.min(events - from) as usize;
                while writer.batch.len < want {
                    writer.act().await?;
                }
                let batch = std::mem::take(&mut writer.batch).into_append();
                store.append(batch).await?;
                appends += 1;
            }
            anyhow::Ok((shard_no, writer.people, appends, writer.tally))
        });
    }
    let mut appends = 0;
    let mut tally = Tally::default();
    population.shards.resize(appenders, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (shard_no, people, done, counted) = joined??;
        population.shards[shard_no] = people;
        appends += done;
        tally.add(&counted);
    }
    let written = clock.load(Ordering::Relaxed) - population.generated;
    population.generated += written;
    let seconds = began.elapsed().as_secs_f64();
    Ok(Generated {
        events: written,
        people: tally.people,
        streams: tally.streams,
        claims: tally.claims,
        session_keys: tally.session_keys,
        appends,
        seconds,
        events_per_sec: written as f64 / seconds.max(f64::EPSILON),
        appenders,
    })
}

/// What an appender wrote besides events.
#[derive(Debug, Default)]
struct Tally {
    people: u64,
    streams: u64,
    claims: u64,
    session_keys: u64,
}

impl Tally {
    fn add(&mut self, other: &Self) {
        self.people += other.people;
        self.streams += other.streams;
        self.claims += other.claims;
        self.session_keys += other.session_keys;
    }
}

/// One appender's state.
struct Writer {
    keys: Arc<Keys>,
    naming: Naming,
    mix: Mix,
    /// Events this appender pushed, over every phase of this run.
    written: u64,
    tally: Tally,
    people: Vec<Person>,
    rng: StdRng,
    shard: u64,
    start: DateTime<Utc>,
    /// The global count of generated events: each event's simulated time.
    clock: Arc<AtomicU64>,
    batch: Batch,
}

impl Writer {
    /// One thing that happens: a new person's first login, a returning login, or an admin
    /// blocking someone.
    async fn act(&mut self) -> anyhow::Result<()> {
        let register = match self.mix {
            Mix::Share(share) => self.rng.gen_bool(share),
            Mix::PeoplePerEvent(ratio) => (self.people.len() as f64) < ratio * self.written as f64,
        };
        if self.people.is_empty() || register {
            self.register().await?;
        } else if self.rng.gen_bool(0.001) {
            let who = self.rng.gen_range(0..self.people.len());
            self.people[who].blocked = true;
            let (id, key) = (self.people[who].id, self.people[who].key.clone());
            let stream = UserId::from_uuid(id).stream();
            let admin = Actor::Admin("bench".into());
            self.push(
                stream,
                "UserBlocked",
                json!({"reason": "spam"}),
                admin,
                APP_A,
                &key,
            );
        } else {
            // Skewed towards early people: a few log in very often, most now and then.
            let skew: f64 = self.rng.gen::<f64>().powi(3);
            let who = ((self.people.len() as f64) * skew) as usize;
            self.login(who.min(self.people.len() - 1), false)?;
        }
        Ok(())
    }

    async fn register(&mut self) -> anyhow::Result<()> {
        let id = Uuid::now_v7();
        let user_id = UserId::from_uuid(id);
        // As a registration does: a fresh key, stored by the append that carries the events
        // sealed under it (`SideWrite::DataKey`), not in a write of its own.
        let (key, sealed) = self.keys.data.new_key(user_id);
        let key = Arc::new(key);
        self.batch.side_writes.push(SideWrite::DataKey {
            user: user_id,
            sealed,
        });
        let n = self.people.len() as u64;
        let drawn = self.rng.gen_bool(0.5);
        let unionid = self.naming.unionid(self.shard, n, drawn);
        let openid = self.naming.openid(self.shard, n, APP_A);
        self.account(APP_A, &openid, user_id)?;
        self.tally.people += 1;
        self.tally.streams += 1;
        let stream = user_id.stream();
        let payload = json!({"user_id": id, "appid": APP_A, "openid": openid});
        self.push(
            stream.clone(),
            "UserRegistered",
            payload,
            Actor::System,
            APP_A,
            &key,
        );
        if let Some(unionid) = &unionid {
            self.claim(Claim::UnionId(UnionId::parse(unionid)?), user_id);
            let payload = json!({"unionid": unionid, "source": "code2_session"});
            self.push(stream, "UnionIdLinked", payload, Actor::System, APP_A, &key);
        }
        self.people.push(Person {
            id,
            n,
            unionid: unionid.is_some(),
            linked_b: false,
            blocked: false,
            key,
        });
        self.login(self.people.len() - 1, true)
    }

    fn claim(&mut self, claim: Claim, owner: UserId) {
        let key = self.keys.index.claim(&claim);
        self.batch.claims.push((key, owner));
        self.tally.claims += 1;
    }

    /// A WeChat account's claim and, for the simulator's people, the session key a login
    /// stores for it (sealed as the service seals it, for the same row).
    fn account(&mut self, app: &str, openid: &str, owner: UserId) -> anyhow::Result<()> {
        let appid = AppId::parse(app)?;
        let openid = OpenId::parse(openid)?;
        if self.naming.stores_session_keys() {
            let account = self.keys.index.account(&appid, &openid);
            let context = api::usecases::streams::session_key_context(&appid, &account);
            let session_key: [u8; 16] = self.rng.gen();
            let sealed = self.keys.session_keys.seal(
                base64::engine::general_purpose::STANDARD
                    .encode(session_key)
                    .as_bytes(),
                context.as_bytes(),
            );
            self.batch.side_writes.push(SideWrite::SessionKey {
                appid: app.to_owned(),
                account,
                sealed,
            });
            self.tally.session_keys += 1;
        }
        self.claim(Claim::WeChatAccount { appid, openid }, owner);
        Ok(())
    }

    fn login(&mut self, who: usize, new_user: bool) -> anyhow::Result<()> {
        let in_b = !new_user && self.people[who].unionid && self.rng.gen_bool(0.3);
        let (id, n, key) = {
            let person = &self.people[who];
            (person.id, person.n, person.key.clone())
        };
        let appid = if in_b { APP_B } else { APP_A };
        let openid = self.naming.openid(self.shard, n, appid);
        if in_b && !self.people[who].linked_b {
            self.people[who].linked_b = true;
            self.account(APP_B, &openid, UserId::from_uuid(id))?;
            let payload = json!({"appid": APP_B, "openid": openid});
            let stream = UserId::from_uuid(id).stream();
            self.push(
                stream,
                "WeChatAccountLinked",
                payload,
                Actor::System,
                APP_B,
                &key,
            );
        }
        let session = Uuid::now_v7();
        self.tally.streams += 1;
        let stream = StreamId::from_stored(format!("session-{session}"));
        let me = Actor::User(UserId::from_uuid(id));
        let device = Device::from_user_agent(PHONE_USER_AGENT);
        let payload = json!({"session_id": session, "user_id": id, "appid": appid,
            "openid": openid, "is_new_user": new_user, "client_ip": self.ip(), "device": device});
        self.push(
            stream.clone(),
            "UserLoggedIn",
            payload,
            me.clone(),
            appid,
            &key,
        );
        if self.rng.gen_bool(0.4) {
            let payload = json!({"generation": 1});
            self.push(
                stream.clone(),
                "SessionRefreshed",
                payload,
                me.clone(),
                appid,
                &key,
            );
        }
        if self.rng.gen_bool(0.1) {
            self.push(stream, "UserLoggedOut", json!({}), me, appid, &key);
        }
        Ok(())
    }

    fn ip(&mut self) -> String {
        format!(
            "10.{}.{}.{}",
            self.rng.gen::<u8>(),
            self.rng.gen::<u8>(),
            self.rng.gen::<u8>()
        )
    }

    fn push(
        &mut self,
        stream: StreamId,
        event_type: &str,
        payload: Value,
        actor: Actor,
        app: &str,
        key: &UserKey,
    ) {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed) as i64;
        self.written += 1;
        let metadata = Metadata {
            actor,
            appid: AppId::parse(app).ok(),
            client_ip: payload["client_ip"].as_str().map(str::to_owned),
            user_agent: Some(PHONE_USER_AGENT.to_owned()),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        };
        let mut event = NewEvent {
            event_id: EventId::from_uuid(Uuid::now_v7()),
            event_type: event_type.to_owned(),
            schema_version: domain::upcast::current_version(event_type),
            occurred_at: self.start + Duration::milliseconds(EVENT_SPACING_MS * tick),
            payload,
            metadata,
        };
        seal_event(&mut event, Some(key));
        self.batch.push(stream, event);
    }
}

/// Events of one append, grouped by stream in first-seen order.
#[derive(Default)]
struct Batch {
    streams: Vec<(StreamId, Vec<NewEvent>)>,
    index: HashMap<StreamId, usize>,
    claims: Vec<(ClaimKey, UserId)>,
    side_writes: Vec<SideWrite>,
    len: usize,
}

impl Batch {
    fn push(&mut self, stream: StreamId, event: NewEvent) {
        let slot = *self.index.entry(stream.clone()).or_insert_with(|| {
            self.streams.push((stream, Vec::new()));
            self.streams.len() - 1
        });
        self.streams[slot].1.push(event);
        self.len += 1;
    }

    fn into_append(self) -> AppendBatch {
        let batch = self
            .streams
            .into_iter()
            .fold(AppendBatch::default(), |batch, (stream, events)| {
                batch.stream(stream, ExpectedVersion::Any, events)
            });
        let batch = self
            .claims
            .into_iter()
            .fold(batch, |batch, (claim, owner)| batch.claim(claim, owner));
        self.side_writes
            .into_iter()
            .fold(batch, AppendBatch::side_write)
    }
}

#[cfg(test)]
mod tests;
