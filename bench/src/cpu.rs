//! Where the machine's CPU went during a part of the run (a login level, the rebuilds): the
//! service, PostgreSQL's processes, this program (load generator and WeChat simulator, or the
//! in-process rebuild), and everything else (the kernel's own threads, other programs), from
//! `/proc`. Divided by the work done (logins, events replayed), it says what one unit costs
//! each part, and so what would bound throughput if the work had the machine to itself.

use serde::{Deserialize, Serialize};

/// Cumulative CPU time, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    service: Option<u64>,
    postgres: Option<u64>,
    harness: u64,
    machine_busy: u64,
    machine_total: u64,
}

/// CPU per unit of work (a login, a replayed event), in milliseconds, and the share of the
/// machine left idle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpuUse {
    /// `None` when the service runs inside this process (or is not running).
    pub service_ms: Option<f64>,
    /// Every process of the PostgreSQL server the service uses (postmaster, backends, WAL
    /// writer, checkpointer…, and the backends that exited meanwhile); `None` when that
    /// server is not on this machine or the backend is SQLite. Server-wide: other clients of
    /// the same server count too.
    pub postgres_ms: Option<f64>,
    pub harness_ms: f64,
    /// Busy but none of the above: the kernel's own threads, other programs.
    pub other_ms: f64,
    pub idle_share: f64,
}

impl CpuSample {
    /// `service`: the service's pid when it runs as a child process; `postmaster`: the pid of
    /// the PostgreSQL server's postmaster when it runs on this machine.
    pub fn now(service: Option<u32>, postmaster: Option<u32>) -> Self {
        let (machine_busy, machine_total) = machine().unwrap_or_default();
        Self {
            service: service.and_then(|pid| process(&pid.to_string()).map(|t| t.own)),
            postgres: postmaster.and_then(postgres),
            harness: process("self").map(|t| t.own).unwrap_or_default(),
            machine_busy,
            machine_total,
        }
    }

    /// What happened between `self` and `later`, per unit of the `units` done meanwhile.
    pub fn per_unit(&self, later: &Self, units: u64) -> Option<CpuUse> {
        let ms_per_tick = 1000.0 / ticks_per_second();
        let per_unit = |ticks: u64| ticks as f64 * ms_per_tick / units.max(1) as f64;
        let between = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let service = between(self.service, later.service);
        let postgres = between(self.postgres, later.postgres);
        let harness = later.harness.saturating_sub(self.harness);
        let busy = later.machine_busy.saturating_sub(self.machine_busy);
        let total = later.machine_total.saturating_sub(self.machine_total);
        if total == 0 || units == 0 {
            return None;
        }
        let other = busy.saturating_sub(harness + service.unwrap_or(0) + postgres.unwrap_or(0));
        Some(CpuUse {
            service_ms: service.map(per_unit),
            postgres_ms: postgres.map(per_unit),
            harness_ms: per_unit(harness),
            other_ms: per_unit(other),
            idle_share: 1.0 - busy as f64 / total as f64,
        })
    }
}

/// A process's CPU time from `/proc/{pid}/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticks {
    /// utime + stime: all its threads.
    own: u64,
    /// cutime + cstime: its children that exited and were waited for.
    children: u64,
    parent: u32,
    /// `comm` is `postgres` or `postmaster`.
    is_postgres: bool,
}

fn process(pid: &str) -> Option<Ticks> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<Ticks> {
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let comm = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Ticks {
        own: field(11)? + field(12)?,
        children: field(13)? + field(14)?,
        parent: u32::try_from(field(1)?).ok()?,
        is_postgres: matches!(comm, "postgres" | "postmaster"),
    })
}

/// The CPU of a PostgreSQL server: its postmaster's own and its exited children's (a backend
/// that exits is waited for by the postmaster, so its time moves there and is not lost),
/// plus every live child's.
fn postgres(postmaster: u32) -> Option<u64> {
    let root = process(&postmaster.to_string()).filter(|t| t.is_postgres)?;
    let children: u64 = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| process(&pid.to_string()))
        .filter(|t| t.parent == postmaster && t.is_postgres)
        .map(|t| t.own + t.children)
        .sum();
    Some(root.own + root.children + children)
}

/// The postmaster of the server a backend runs in: the backend's parent, if both are
/// PostgreSQL processes of this machine.
pub fn postmaster_of(backend: u32) -> Option<u32> {
    let ticks = process(&backend.to_string()).filter(|t| t.is_postgres)?;
    process(&ticks.parent.to_string())
        .filter(|t| t.is_postgres)
        .map(|_| ticks.parent)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_own_and_children_time_parent_and_kind() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime …
        let line = "2245 (postgres) S 1 2245 2245 0 -1 4194560 9 0 0 0 120 30 7000 900 20 0 1";
        let t = parse_stat(line).unwrap();
        assert_eq!(
            t,
            Ticks {
                own: 150,
                children: 7900,
                parent: 1,
                is_postgres: true
            }
        );
        let other = "7 (my prog) R 2245 7 7 0 -1 0 0 0 0 0 5 5 0 0 20 0 1";
        let t = parse_stat(other).unwrap();
        assert_eq!((t.own, t.parent, t.is_postgres), (10, 2245, false));
    }

    #[test]
    fn this_process_is_no_postmaster() {
        assert_eq!(postgres(std::process::id()), None);
        assert!(process("self").is_some_and(|t| !t.is_postgres));
    }
}
