//! Where the machine's CPU went during a part of the run (a login level, the rebuilds): the
//! service, this program (load generator and WeChat simulator, or the in-process rebuild), and
//! everything else (PostgreSQL, the kernel's own threads), from `/proc`. Divided by the work
//! done (logins, events replayed), it says what one unit costs each part, and so what would
//! bound throughput if the work had the machine to itself.

use serde::Serialize;

/// Cumulative CPU time, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    service: Option<u64>,
    harness: u64,
    machine_busy: u64,
    machine_total: u64,
}

/// CPU per unit of work (a login, a replayed event), in milliseconds, and the share of the
/// machine left idle.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// `None` when the service runs inside this process (or is not running).
    pub service_ms: Option<f64>,
    pub harness_ms: f64,
    pub other_ms: f64,
    pub idle_share: f64,
}

impl CpuSample {
    /// `service`: the service's pid when it runs as a child process.
    pub fn now(service: Option<u32>) -> Self {
        let (machine_busy, machine_total) = machine().unwrap_or_default();
        Self {
            service: service.and_then(|pid| process(&pid.to_string())),
            harness: process("self").unwrap_or_default(),
            machine_busy,
            machine_total,
        }
    }

    /// What happened between `self` and `later`, per unit of the `units` done meanwhile.
    pub fn per_unit(&self, later: &Self, units: u64) -> Option<CpuUse> {
        let ms_per_tick = 1000.0 / ticks_per_second();
        let per_unit = |ticks: u64| ticks as f64 * ms_per_tick / units.max(1) as f64;
        let service = match (self.service, later.service) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let harness = later.harness.saturating_sub(self.harness);
        let busy = later.machine_busy.saturating_sub(self.machine_busy);
        let total = later.machine_total.saturating_sub(self.machine_total);
        if total == 0 || units == 0 {
            return None;
        }
        let other = busy.saturating_sub(harness + service.unwrap_or(0));
        Some(CpuUse {
            service_ms: service.map(per_unit),
            harness_ms: per_unit(harness),
            other_ms: per_unit(other),
            idle_share: 1.0 - busy as f64 / total as f64,
        })
    }
}

/// utime + stime of a process (all its threads), from `/proc/{pid}/stat`.
fn process(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) ticks of all CPUs, from the first line of `/proc/stat`; idle and iowait are
/// not busy.
fn machine() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `USER_HZ`: 100 on every Linux this runs on (the kernel fixes it for `/proc`).
fn ticks_per_second() -> f64 {
    100.0
}
