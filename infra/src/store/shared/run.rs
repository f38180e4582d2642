//! Running a shared statement on a backend's pools, or inside a write transaction.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Transaction, Type};

use super::{Arg, Codec, Coded, Query, SqlRow};
use crate::database_url::Backend;
use crate::sql::{Liveness, Shelf};
use crate::store::sqlite::{HeldTurn, WriteTurn};
use crate::store::write_health::WriteHealth;
use crate::store::StoreError;

/// How long `writes_work`'s probe write may take.
const WRITE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// How much `writes_work`'s probe writes: a login writes a few pages (4 KiB each) of events,
/// claims and keys; this is 16.
const WRITE_PROBE_BYTES: usize = 64 * 1024;

/// Where shared statements run: reads on `read`, everything else on `write`. On SQLite the
/// write pool is its one write connection, taken in the process's write `turn`; on PostgreSQL
/// there is no turn. Reads have a pool of their own on both, its connections kept between
/// reads without sqlx's ping on their return ([`Shelf`]). What goes through `write` keeps the
/// store's [`WriteHealth`].
pub(crate) struct Pools<DB: Database> {
    pub read: Shelf<DB>,
    pub write: Pool<DB>,
    pub turn: Option<Arc<WriteTurn>>,
    pub health: WriteHealth,
    /// The pools' view of the database's health: reads lost with their connection are read
    /// again, and any failure that says the database is unavailable has the next checkouts
    /// tested.
    pub liveness: Liveness,
}

/// What the shared code runs statements through. Implemented once, for [`Pools`].
#[async_trait]
pub(crate) trait Sql: Send + Sync {
    const BACKEND: Backend;
    type Row: SqlRow;
    type Tx: SqlTx<Row = Self::Row>;

    /// Runs a statement on the writer; the number of rows it touched.
    async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError>;
    /// A statement's rows, on the writer: a write with `RETURNING`, or a read that must see
    /// what was just written.
    async fn fetch_written(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Self::Row>, StoreError>;
    /// A read's rows (on SQLite, from the read pool: it may miss a write of a moment ago).
    async fn fetch(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Self::Row>, StoreError>;
    /// A write transaction in which nobody else writes `tables` until it ends (PostgreSQL:
    /// `LOCK TABLE … IN EXCLUSIVE MODE`, which still lets readers in; SQLite's `BEGIN
    /// IMMEDIATE` holds the whole database's write lock anyway).
    async fn begin(&self, tables: &[&str]) -> Result<Self::Tx, StoreError>;
    /// Whether the database takes writes: true unless the last write failed for want of the
    /// database (see `write_health`); then a one-row write decides, and its outcome is
    /// recorded like any write's.
    async fn writes_work(&self) -> bool;
    /// What the writes found (appends, which go their own way, record theirs here too).
    fn health(&self) -> &WriteHealth;
}

/// A write transaction of [`Sql::begin`]. Dropped without `commit`, it rolls back.
#[async_trait]
pub(crate) trait SqlTx: Send {
    type Row: SqlRow;
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError>;
    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Self::Row>, StoreError>;
    async fn commit(self) -> Result<(), StoreError>;
}

/// A write transaction, in the write turn (if any) until it ends.
pub(crate) struct Tx<DB: Database> {
    tx: Transaction<'static, DB>,
    health: WriteHealth,
    /// Declared after `tx`, so dropped after it: a rollback is queued before the turn passes.
    turn: Option<HeldTurn>,
}

impl<DB: Database> Tx<DB> {
    pub fn new(tx: Transaction<'static, DB>, health: WriteHealth, turn: Option<HeldTurn>) -> Self {
        Self { tx, health, turn }
    }

    /// Notes a statement's failure in the store's write health and the write turn held.
    fn note<T>(&self, outcome: &Result<T, StoreError>) {
        self.health.record_failure(outcome);
        if let Some(turn) = &self.turn {
            turn.observe(outcome);
        }
    }
}

/// Runs shared statements on a connection of a backend whose [`Codec`] says how to bind and
/// read what differs: the one place that spells out what sqlx needs to run them generically.
#[async_trait]
pub(crate) trait Driver: Codec<Row: SqlRow> {
    async fn run(
        conn: &mut Self::Connection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError>;
    async fn rows(
        conn: &mut Self::Connection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Self::Row>, StoreError>;
}

#[async_trait]
impl<DB> Driver for DB
where
    DB: Codec<Row: SqlRow>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a [u8]>: Encode<'a, DB>,
    i64: for<'a> Encode<'a, DB> + Type<DB>,
{
    async fn run(
        conn: &mut DB::Connection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        let done = query(sql, args).execute(conn).await?;
        Ok(DB::rows_affected(&done))
    }

    async fn rows(
        conn: &mut DB::Connection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<DB::Row>, StoreError> {
        Ok(query(sql, args).fetch_all(conn).await?)
    }
}

fn query<'q, DB>(sql: &'q str, args: &[Arg<'q>]) -> Query<'q, DB>
where
    DB: Codec,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a [u8]>: Encode<'a, DB>,
    i64: for<'a> Encode<'a, DB> + Type<DB>,
{
    args.iter().fold(sqlx::query(sql), |query, arg| match *arg {
        Arg::Text(v) => query.bind(v),
        Arg::Bytes(v) => query.bind(v),
        Arg::OptBytes(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
        Arg::Coded(v) => DB::bind(query, v),
    })
}

impl<DB: Database> Clone for Pools<DB> {
    fn clone(&self) -> Self {
        Self {
            read: self.read.clone(),
            write: self.write.clone(),
            turn: self.turn.clone(),
            health: self.health.clone(),
            liveness: self.liveness.clone(),
        }
    }
}

impl<DB: Driver> Pools<DB> {
    /// `execute`, in the write turn held if the backend has one.
    async fn execute_held(
        &self,
        turn: Option<HeldTurn>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        let done = async { DB::run(&mut *self.write.acquire().await?, sql, args).await }.await;
        self.note(turn.as_ref(), &done);
        // A success clears the write health's failure.
        self.health.record(&done);
        done
    }

    /// `fetch_written`, in the write turn held if the backend has one.
    async fn fetch_held(
        &self,
        turn: Option<HeldTurn>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<DB::Row>, StoreError> {
        let rows = async { DB::rows(&mut *self.write.acquire().await?, sql, args).await }.await;
        self.note(turn.as_ref(), &rows);
        rows
    }
}

/// Runs a write whose write turn is held to its end, in a task of its own, whether or not its
/// caller still waits. A statement cut short with its caller (a request that went away) would
/// go on in SQLite's worker, up to the whole busy wait, after its turn had passed: the next
/// writer would wait behind it unaware, and its BUSY would fail nobody queued behind it (see
/// `sqlite::WriteTurn`). The caller takes the turn first: a write still waiting for it is
/// called off with its caller, so abandoned writes do not pile up; only the one holding the
/// turn outlives its caller (`sql::to_the_end`).
async fn detached<T: Send + 'static>(
    write: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    crate::sql::to_the_end(write).await.unwrap_or_else(|| {
        Err(StoreError::SharedWrite {
            message: "the write's task was cancelled: the runtime is shutting down".into(),
            unavailable: true,
        })
    })
}

/// A statement and its arguments, owned, for a write that outlives its caller (`detached`).
struct Statement {
    sql: String,
    args: Vec<OwnedArg>,
}

/// An [`Arg`] that owns its value.
enum OwnedArg {
    Text(String),
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
    Int(i64),
    /// Every [`Coded`] but JSON borrows nothing.
    Coded(Coded<'static>),
    Json(serde_json::Value),
}

impl Statement {
    fn of(sql: &str, args: &[Arg<'_>]) -> Self {
        let owned = |arg: &Arg<'_>| match *arg {
            Arg::Text(v) => OwnedArg::Text(v.to_owned()),
            Arg::Bytes(v) => OwnedArg::Bytes(v.to_vec()),
            Arg::OptBytes(v) => OwnedArg::OptBytes(v.map(<[u8]>::to_vec)),
            Arg::Int(v) => OwnedArg::Int(v),
            Arg::Coded(Coded::Json(v)) => OwnedArg::Json(v.clone()),
            Arg::Coded(Coded::Time(v)) => OwnedArg::Coded(Coded::Time(v)),
            Arg::Coded(Coded::OptTime(v)) => OwnedArg::Coded(Coded::OptTime(v)),
            Arg::Coded(Coded::User(v)) => OwnedArg::Coded(Coded::User(v)),
            Arg::Coded(Coded::Uuid(v)) => OwnedArg::Coded(Coded::Uuid(v)),
        };
        Self {
            sql: sql.to_owned(),
            args: args.iter().map(owned).collect(),
        }
    }

    fn args(&self) -> Vec<Arg<'_>> {
        self.args
            .iter()
            .map(|arg| match arg {
                OwnedArg::Text(v) => Arg::Text(v),
                OwnedArg::Bytes(v) => Arg::Bytes(v),
                OwnedArg::OptBytes(v) => Arg::OptBytes(v.as_deref()),
                OwnedArg::Int(v) => Arg::Int(*v),
                OwnedArg::Coded(v) => Arg::Coded(*v),
                OwnedArg::Json(v) => Arg::json(v),
            })
            .collect()
    }
}

impl<DB: Database> Pools<DB> {
    /// The write turn, where the backend has one (see `sqlite::turn`).
    async fn turn(&self) -> Result<Option<HeldTurn>, StoreError> {
        match &self.turn {
            Some(turn) => turn.take().await.map(Some),
            None => Ok(None),
        }
    }

    /// Notes a write's failure wherever the pools keep their view of the database: the write
    /// health, the liveness, and the write turn held (BUSY fails the writers queued behind).
    fn note<T>(&self, turn: Option<&HeldTurn>, outcome: &Result<T, StoreError>) {
        self.health.record_failure(outcome);
        self.liveness.observe(outcome);
        if let Some(turn) = turn {
            turn.observe(outcome);
        }
    }
}

#[async_trait]
impl<DB: Driver> Sql for Pools<DB> {
    const BACKEND: Backend = DB::BACKEND;
    type Row = DB::Row;
    type Tx = Tx<DB>;

    async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let Some(turn) = self.turn().await? else {
            return self.execute_held(None, sql, args).await;
        };
        let (pools, statement) = (self.clone(), Statement::of(sql, args));
        detached(async move {
            let args = statement.args();
            pools.execute_held(Some(turn), &statement.sql, &args).await
        })
        .await
    }

    /// Often a read (one that must see the latest writes): its success proves no write.
    async fn fetch_written(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<DB::Row>, StoreError> {
        let Some(turn) = self.turn().await? else {
            return self.fetch_held(None, sql, args).await;
        };
        let (pools, statement) = (self.clone(), Statement::of(sql, args));
        detached(async move {
            let args = statement.args();
            pools.fetch_held(Some(turn), &statement.sql, &args).await
        })
        .await
    }

    /// Read again once when the connection was lost (see `Liveness::read`).
    async fn fetch(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<DB::Row>, StoreError> {
        self.liveness
            .read(|| self.read.read(async |conn| DB::rows(conn, sql, args).await))
            .await
    }

    async fn begin(&self, tables: &[&str]) -> Result<Tx<DB>, StoreError> {
        let turn = self.turn().await?;
        let begun = match DB::BEGIN_WRITE {
            Some(statement) => crate::sql::begin_with(&self.write, statement).await,
            None => crate::sql::begin(&self.write).await,
        }
        .map_err(StoreError::from);
        self.note(turn.as_ref(), &begun);
        let mut tx = Tx::new(begun?, self.health.clone(), turn);
        if let Some(lock) = DB::lock_tables(tables) {
            let locked = tx.execute(&lock, &[]).await;
            self.liveness.observe(&locked);
            locked?;
        }
        Ok(tx)
    }

    async fn writes_work(&self) -> bool {
        if !self.health.is_failing() {
            return true;
        }
        // One row that only this writes (an upsert: the table never grows), bigger than a
        // login's writes: on a nearly full disk a small write may still find room (a partly
        // used block of the WAL) where no login would. In a bounded time: readiness answers
        // within a second, and a write queued behind a writer stuck in SQLite's busy wait
        // does not work either.
        let filler = vec![0_u8; WRITE_PROBE_BYTES];
        let args = [Arg::time(chrono::Utc::now()), Arg::Bytes(&filler)];
        let probe = self.execute(
            "INSERT INTO write_probe (id, probed_at, filler) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at, \
             filler = excluded.filler",
            &args,
        );
        matches!(
            tokio::time::timeout(WRITE_PROBE_TIMEOUT, probe).await,
            Ok(Ok(_))
        )
    }

    fn health(&self) -> &WriteHealth {
        &self.health
    }
}

#[async_trait]
impl<DB: Driver> SqlTx for Tx<DB> {
    type Row = DB::Row;

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let done = DB::run(&mut self.tx, sql, args).await;
        self.note(&done);
        done
    }

    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<DB::Row>, StoreError> {
        let rows = DB::rows(&mut self.tx, sql, args).await;
        self.note(&rows);
        rows
    }

    async fn commit(self) -> Result<(), StoreError> {
        let Self { tx, health, turn } = self;
        let committed = tx.commit().await.map_err(StoreError::from);
        health.record(&committed);
        if let Some(turn) = &turn {
            turn.observe(&committed);
        }
        committed
    }
}
