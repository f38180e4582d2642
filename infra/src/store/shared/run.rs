//! Running a shared statement on a backend's pools, or inside a write transaction.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Transaction, Type};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{Arg, Codec, Query, SqlRow};
use crate::database_url::Backend;
use crate::sql::Liveness;
use crate::store::StoreError;

/// Where shared statements run: reads on `read`, everything else on `write`. On SQLite the
/// write pool is its one write connection, taken in the process's write `turn`; on PostgreSQL
/// both are the same pool and there is no turn.
pub(crate) struct Pools<DB: Database> {
    pub read: Pool<DB>,
    pub write: Pool<DB>,
    pub turn: Option<Arc<Mutex<()>>>,
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
    /// Declared after `tx`, so dropped after it: a rollback is queued before the turn passes.
    _turn: Option<OwnedMutexGuard<()>>,
}

impl<DB: Database> Tx<DB> {
    pub fn new(tx: Transaction<'static, DB>, turn: Option<OwnedMutexGuard<()>>) -> Self {
        Self { tx, _turn: turn }
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
            liveness: self.liveness.clone(),
        }
    }
}

impl<DB: Database> Pools<DB> {
    async fn turn(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.turn {
            Some(turn) => Some(Arc::clone(turn).lock_owned().await),
            None => None,
        }
    }
}

#[async_trait]
impl<DB: Driver> Sql for Pools<DB> {
    const BACKEND: Backend = DB::BACKEND;
    type Row = DB::Row;
    type Tx = Tx<DB>;

    async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let _turn = self.turn().await;
        let done = async { DB::run(&mut *self.write.acquire().await?, sql, args).await }.await;
        self.liveness.observe(&done);
        done
    }

    async fn fetch_written(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<DB::Row>, StoreError> {
        let _turn = self.turn().await;
        let rows = async { DB::rows(&mut *self.write.acquire().await?, sql, args).await }.await;
        self.liveness.observe(&rows);
        rows
    }

    /// Read again once when the connection was lost (see `Liveness::read`).
    async fn fetch(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<DB::Row>, StoreError> {
        self.liveness
            .read(|| async { DB::rows(&mut *self.read.acquire().await?, sql, args).await })
            .await
    }

    async fn begin(&self, tables: &[&str]) -> Result<Tx<DB>, StoreError> {
        let turn = self.turn().await;
        let begun = async {
            let mut tx = match DB::BEGIN_WRITE {
                Some(statement) => crate::sql::begin_with(&self.write, statement).await?,
                None => crate::sql::begin(&self.write).await?,
            };
            if let Some(lock) = DB::lock_tables(tables) {
                DB::run(&mut tx, &lock, &[]).await?;
            }
            Ok::<_, StoreError>(tx)
        }
        .await;
        self.liveness.observe(&begun);
        Ok(Tx {
            tx: begun?,
            _turn: turn,
        })
    }
}

#[async_trait]
impl<DB: Driver> SqlTx for Tx<DB> {
    type Row = DB::Row;

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        DB::run(&mut self.tx, sql, args).await
    }

    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<DB::Row>, StoreError> {
        DB::rows(&mut self.tx, sql, args).await
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}
