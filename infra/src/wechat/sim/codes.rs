//! Single-use codes that live 5 minutes, like WeChat's: `wx.login()` codes and phone-number
//! button codes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::people;

/// WeChat's codes live 5 minutes.
pub(super) const CODE_TTL: Duration = Duration::from_secs(300);

/// Why a code was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Unknown, expired, or not the caller's.
    Invalid,
    Used,
}

pub(super) struct CodeBook<T> {
    codes: HashMap<String, Issued<T>>,
    /// Codes by issue time (the clock only moves forward), to purge expired ones cheaply.
    issued: VecDeque<(Instant, String)>,
}

struct Issued<T> {
    owner: T,
    issued_at: Instant,
    used: bool,
}

impl<T> CodeBook<T> {
    pub fn new() -> Self {
        Self {
            codes: HashMap::new(),
            issued: VecDeque::new(),
        }
    }

    pub fn issue(&mut self, now: Instant, owner: T) -> String {
        self.purge_expired(now);
        let code = people::new_code();
        self.codes.insert(
            code.clone(),
            Issued {
                owner,
                issued_at: now,
                used: false,
            },
        );
        self.issued.push_back((now, code.clone()));
        code
    }

    /// Uses up `code` if it is live, unused and `accepts` its owner.
    pub fn redeem(
        &mut self,
        now: Instant,
        code: &str,
        accepts: impl Fn(&T) -> bool,
    ) -> Result<&T, Refused> {
        let issued = self
            .codes
            .get_mut(code)
            .filter(|c| now.duration_since(c.issued_at) < CODE_TTL && accepts(&c.owner))
            .ok_or(Refused::Invalid)?;
        if issued.used {
            return Err(Refused::Used);
        }
        issued.used = true;
        Ok(&issued.owner)
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some((issued_at, _)) = self.issued.front() {
            if now.duration_since(*issued_at) < CODE_TTL {
                break;
            }
            if let Some((_, code)) = self.issued.pop_front() {
                self.codes.remove(&code);
            }
        }
    }
}
