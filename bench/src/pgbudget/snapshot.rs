//! What is counted: one statement's counters, rows written per table, and everything at one
//! moment (a snapshot), with the differences and per-login division the report needs.

use std::collections::{BTreeMap, HashMap};

use crate::pgproxy::Counts;

/// One statement's counters (`pg_stat_statements`).
#[derive(Debug, Clone, Default)]
pub(super) struct Statement {
    pub(super) query: String,
    /// Sent by the client (false: run inside a function, such as `append_event_batches`; its
    /// calls, rows and WAL are already in the calling statement's).
    pub(super) toplevel: bool,
    pub(super) calls: f64,
    pub(super) rows: f64,
    pub(super) ms: f64,
    pub(super) wal_bytes: f64,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Writes {
    pub(super) inserted: f64,
    pub(super) updated: f64,
    pub(super) hot_updated: f64,
    pub(super) deleted: f64,
}

/// Everything counted at one moment, or a difference of two such moments.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    pub(super) statements: HashMap<(i64, bool), Statement>,
    pub(super) commits: f64,
    pub(super) rollbacks: f64,
    /// Transaction ids handed out: the transactions that wrote.
    pub(super) xids: f64,
    pub(super) wal_lsn: f64,
    pub(super) wal_records: f64,
    pub(super) wal_fpi: f64,
    /// WAL writes and syncs (fsync/fdatasync) to disk, by every process: the sync count is
    /// the number of durable commits the server paid for, after its own grouping.
    pub(super) wal_writes: f64,
    pub(super) wal_syncs: f64,
    pub(super) tables: BTreeMap<String, Writes>,
    pub(super) proxy: Counts,
    /// Transactions the observer itself ran on the service's database so far.
    pub(super) observer_xacts: u64,
}

impl Snapshot {
    /// `self − earlier`, the observer's own transactions taken out of the commits.
    pub(super) fn minus(&self, earlier: &Self) -> Self {
        let mut statements = HashMap::new();
        for (id, s) in &self.statements {
            let e = earlier.statements.get(id).cloned().unwrap_or_default();
            statements.insert(
                *id,
                Statement {
                    query: s.query.clone(),
                    toplevel: s.toplevel,
                    calls: s.calls - e.calls,
                    rows: s.rows - e.rows,
                    ms: s.ms - e.ms,
                    wal_bytes: s.wal_bytes - e.wal_bytes,
                },
            );
        }
        let mut tables = BTreeMap::new();
        for (name, w) in &self.tables {
            let e = earlier.tables.get(name).copied().unwrap_or_default();
            tables.insert(
                name.clone(),
                Writes {
                    inserted: w.inserted - e.inserted,
                    updated: w.updated - e.updated,
                    hot_updated: w.hot_updated - e.hot_updated,
                    deleted: w.deleted - e.deleted,
                },
            );
        }
        let observer = (self.observer_xacts - earlier.observer_xacts) as f64;
        Self {
            statements,
            commits: self.commits - earlier.commits - observer,
            rollbacks: self.rollbacks - earlier.rollbacks,
            xids: self.xids - earlier.xids,
            wal_lsn: self.wal_lsn - earlier.wal_lsn,
            wal_records: self.wal_records - earlier.wal_records,
            wal_fpi: self.wal_fpi - earlier.wal_fpi,
            wal_writes: self.wal_writes - earlier.wal_writes,
            wal_syncs: self.wal_syncs - earlier.wal_syncs,
            tables,
            proxy: self.proxy.minus(&earlier.proxy),
            observer_xacts: 0,
        }
    }

    /// `(self − fixed) / n`, field by field.
    pub(super) fn per(&self, fixed: &Self, n: f64) -> Self {
        let mut statements = HashMap::new();
        for (id, s) in &self.statements {
            let f = fixed.statements.get(id).cloned().unwrap_or_default();
            statements.insert(
                *id,
                Statement {
                    query: s.query.clone(),
                    toplevel: s.toplevel,
                    calls: (s.calls - f.calls) / n,
                    rows: (s.rows - f.rows) / n,
                    ms: (s.ms - f.ms) / n,
                    wal_bytes: (s.wal_bytes - f.wal_bytes) / n,
                },
            );
        }
        let mut tables = BTreeMap::new();
        for (name, w) in &self.tables {
            let f = fixed.tables.get(name).copied().unwrap_or_default();
            tables.insert(
                name.clone(),
                Writes {
                    inserted: (w.inserted - f.inserted) / n,
                    updated: (w.updated - f.updated) / n,
                    hot_updated: (w.hot_updated - f.hot_updated) / n,
                    deleted: (w.deleted - f.deleted) / n,
                },
            );
        }
        Self {
            statements,
            commits: (self.commits - fixed.commits) / n,
            rollbacks: (self.rollbacks - fixed.rollbacks) / n,
            xids: (self.xids - fixed.xids) / n,
            wal_lsn: (self.wal_lsn - fixed.wal_lsn) / n,
            wal_records: (self.wal_records - fixed.wal_records) / n,
            wal_fpi: (self.wal_fpi - fixed.wal_fpi) / n,
            wal_writes: (self.wal_writes - fixed.wal_writes) / n,
            wal_syncs: (self.wal_syncs - fixed.wal_syncs) / n,
            tables,
            proxy: Counts::default(),
            observer_xacts: 0,
        }
    }
}
