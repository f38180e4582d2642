//! The results: what the JSON file holds (here), machine facts (`machine`), the targets of
//! issues 6 and 14 with pass/miss (`targets`), the summary README's table is copied from
//! (`summary`), and the markdown tables printed at the end (`markdown`).

mod machine;
mod markdown;
mod summary;
mod targets;

use hdrhistogram::Histogram;
use serde::Serialize;

pub use self::machine::Machine;
pub use self::markdown::markdown;
pub use self::targets::{targets, TargetRow};
use crate::admin::Admin;
use crate::baseline::BaselineLevel;
use crate::generate::Generated;
use crate::login::LevelResult;
use crate::prefilled::Prefilled;
use crate::replay::Replay;
use crate::service::{Backend, Memory};
use crate::stream::Stream;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub part: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendResults {
    pub backend: Backend,
    pub login: Vec<LevelResult>,
    /// Open loop at 70 % of the best closed-loop throughput.
    pub paced: Option<LevelResult>,
    pub memory: Option<Memory>,
    pub generated: Vec<Generated>,
    pub replay: Option<Replay>,
    /// The rebuild that brought the read models to the large log (one run).
    pub replay_large: Option<Replay>,
    pub admin: Vec<Admin>,
    pub stream: Option<Stream>,
    /// The peak level again on a pre-filled database.
    pub prefilled: Option<Prefilled>,
    /// Parts that failed, with why.
    pub failures: Vec<String>,
}

impl BackendResults {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            login: Vec::new(),
            paced: None,
            memory: None,
            generated: Vec::new(),
            replay: None,
            replay_large: None,
            admin: Vec::new(),
            stream: None,
            prefilled: None,
            failures: Vec::new(),
        }
    }

    pub fn peak_login(&self) -> Option<&LevelResult> {
        self.login
            .iter()
            .max_by(|a, b| a.logins_per_sec.total_cmp(&b.logins_per_sec))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub started_at: String,
    pub scale: String,
    pub service: String,
    pub machine: Machine,
    pub baseline: Option<Vec<BaselineLevel>>,
    pub backends: Vec<BackendResults>,
    pub targets: Vec<TargetRow>,
    pub timings: Vec<Timing>,
    pub total_seconds: f64,
}

/// A readable number: thousands separated, few decimals.
pub fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        let whole = v.round() as i64;
        let digits = whole.abs().to_string();
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        if whole < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
