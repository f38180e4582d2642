//! Who the generated people are: their names and WeChat ids, and how many of the actions are
//! registrations.

use std::collections::HashSet;

use infra::wechat::sim;
use serde::{Deserialize, Serialize};

use crate::service::{APP_A, OPEN_PLATFORM};

/// Whose ids the generated people have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Naming {
    /// The generator's own openids (`o{app}bench…`), half of the people with a unionid; no
    /// login through the simulator ever finds them.
    Own,
    /// The simulator's people `{prefix}-s{shard}-{n}`: their openids and unionids are what
    /// the simulator gives that name, so a login by the same name is a returning user's.
    /// Every one has a unionid (the bench apps share an Open Platform account, so the
    /// simulator always gives one), and each account's WeChat `session_key` is stored, as a
    /// login stores it.
    Simulator { prefix: String },
}

/// How often an action is a registration.
#[derive(Debug, Clone, Copy)]
pub enum Mix {
    /// This share of actions, at random.
    Share(f64),
    /// As many as keep each appender at this many people per event written: `users / events`
    /// of a database of a given size.
    PeoplePerEvent(f64),
}

impl Naming {
    /// The person's name (the simulator's `user`); `None` for the generator's own people.
    pub fn name(&self, shard: u64, n: u64) -> Option<String> {
        match self {
            Self::Own => None,
            Self::Simulator { prefix } => Some(format!("{prefix}-s{shard}-{n}")),
        }
    }

    /// The person's openid in `appid`: 28 characters, distinct per app, as WeChat's look.
    pub fn openid(&self, shard: u64, n: u64, appid: &str) -> String {
        match self.name(shard, n) {
            Some(name) => sim::openid(appid, &name),
            None => {
                let app = if appid == APP_A { 'A' } else { 'B' };
                format!("o{app}bench{shard:04}{n:017}")
            }
        }
    }

    /// The person's unionid, if `drawn` (half of the generator's own people) or always (the
    /// simulator's).
    pub fn unionid(&self, shard: u64, n: u64, drawn: bool) -> Option<String> {
        match self.name(shard, n) {
            Some(name) => Some(sim::unionid(OPEN_PLATFORM, &name)),
            None => drawn.then(|| format!("ou_bench_{shard}_{n}")),
        }
    }

    pub fn stores_session_keys(&self) -> bool {
        matches!(self, Self::Simulator { .. })
    }
}

/// The people a generated database holds, by name: what a login level picks its returning
/// users from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPeople {
    naming: Naming,
    /// People per appender's shard.
    shards: Vec<u64>,
    total: u64,
    /// (shard, n) of the people not to log in as: the blocked ones, whose logins the
    /// service refuses.
    left_out: HashSet<(u64, u64)>,
}

impl StoredPeople {
    pub fn new(naming: Naming, shards: Vec<u64>) -> Self {
        let total = shards.iter().sum();
        Self {
            naming,
            shards,
            total,
            left_out: HashSet::new(),
        }
    }

    /// The same people but these (shard, n).
    pub fn without(mut self, people: impl IntoIterator<Item = (u64, u64)>) -> Self {
        self.left_out.extend(people);
        self
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    /// The `i`-th person's name (`i < len()`), for the simulator's `wx.login`; `None` for
    /// one left out.
    pub fn name(&self, mut i: u64) -> Option<String> {
        for (shard, &people) in self.shards.iter().enumerate() {
            if i < people {
                if self.left_out.contains(&(shard as u64, i)) {
                    return None;
                }
                return self.naming.name(shard as u64, i);
            }
            i -= people;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_people_are_named_across_shards() {
        let naming = Naming::Simulator { prefix: "p".into() };
        let people = StoredPeople::new(naming.clone(), vec![2, 0, 3]);
        assert_eq!(people.len(), 5);
        let names: Vec<_> = (0..6).map(|i| people.name(i)).collect();
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            names,
            [
                some("p-s0-0"),
                some("p-s0-1"),
                some("p-s2-0"),
                some("p-s2-1"),
                some("p-s2-2"),
                None
            ]
        );
        assert_eq!(naming.openid(2, 1, APP_A), sim::openid(APP_A, "p-s2-1"));
        assert!(naming.unionid(2, 1, false).is_some());
        assert_eq!(Naming::Own.unionid(2, 1, false), None);
        let people = people.without([(2, 0)]);
        assert_eq!(people.name(2), None);
        assert_eq!(people.name(3), some("p-s2-1"));
    }
}
