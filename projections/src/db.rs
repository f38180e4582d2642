//! The read models' connection to their database (PostgreSQL: the event store's; SQLite: a
//! file of their own beside the store's, see `db/sqlite.rs`), through sqlx's `Any` driver so
//! that one set of SQL statements serves both backends: read-model tables use only text and
//! 64-bit integers (times are microseconds since the epoch), and `$N` placeholders, which
//! SQLite accepts too.
//!
//! What differs between the two databases sits behind [`Dialect`], one implementation per
//! backend (`db/postgres.rs`, `db/sqlite.rs`): the integer type, how views are replaced, how a
//! write transaction begins, the locks that apply each batch once across instances, the
//! placeholders of the writes' long parameter lists, how their multi-row `INSERT`s begin, how
//! a statement runs alone, outside any transaction, and the bulk path a rebuild may load its
//! appended rows by ([`Loader`]: PostgreSQL's `COPY`, on connections of its own since the
//! `Any` driver has none). A write transaction ([`Tx`])
//! carries its dialect, so the models that write through it never ask which database they are
//! on; nothing outside those two files does.

mod postgres;
mod sqlite;

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};

use infra::database_url::{Backend, DatabaseUrl};
use infra::sql::{Liveness, PoolSettings};
use infra::store::SqliteHeldTurn;

use crate::error::ProjectionError;
use crate::table::TableRow;

/// The read models' database: its dialect and two pools. On SQLite all read-model writes queue
/// on one connection (SQLite has one writer anyway, and a queue beats busy-waiting); on
/// PostgreSQL both are the same pool (and a rebuild's [`Loader`] has two connections more).
#[derive(Debug)]
pub(crate) struct Db {
    pub dialect: Arc<dyn Dialect>,
    pub write: AnyPool,
    pub read: AnyPool,
    /// The pools' view of the database's health (see `infra::sql::Liveness`): queries read
    /// through [`Db::read`] are read again once if their connection was lost.
    pub liveness: Liveness,
}

/// What differs between the read models' two databases. See the module's comment.
pub(crate) trait Dialect: Send + Sync + Debug {
    /// The type of integer columns.
    fn int_type(&self) -> &'static str;
    /// The statements that point `view` at `select`, inside the caller's transaction.
    fn point_view(&self, view: &str, select: &str) -> Vec<String>;
    /// A write transaction and, where the dialect has one, the write turn it holds until it
    /// ends (see [`Db::begin`]).
    fn begin<'a>(&'a self, db: &'a Db) -> BoxFuture<'a, Result<Begun, ProjectionError>>;
    /// Serialises instances creating the read models at start, until the transaction ends.
    fn lock_init<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
    /// Takes the transaction-scoped locks of all the projections named, in one round trip;
    /// false if any was held elsewhere (the caller then rolls back, releasing the others).
    fn try_lock_all<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        names: &'a [&'a str],
    ) -> BoxFuture<'a, Result<bool, ProjectionError>>;
    /// Waits for the projection's transaction-scoped lock.
    fn lock<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
    /// The placeholders of parameters `from..from + count` in a write statement whose
    /// parameters are all bound in order.
    fn placeholders(&self, from: usize, count: usize) -> String;
    /// How [`Rows::insert`]'s multi-row `INSERT`s begin: `INSERT INTO`, or a form that spares
    /// the database work whose only use is to undo a failed statement alone (SQLite's), which
    /// may leave the failed statement's earlier rows in the transaction (see [`Rows::insert`]).
    fn insert_into(&self) -> &'static str {
        "INSERT INTO"
    }
    /// Runs one write statement as a transaction of its own, with no `BEGIN` (on SQLite in
    /// the write turn): for a statement that need not be atomic with any other and costs more
    /// inside a transaction, as SQLite's `DROP TABLE` does (see `schema::drop_retired`).
    fn write_alone<'a>(
        &'a self,
        db: &'a Db,
        statement: &'a str,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            sqlx::query(statement).execute(&db.write).await?;
            Ok(())
        })
    }
    /// The statement that refreshes the planner's statistics of `table` once a rebuild
    /// filled it, if this database needs one (see [`crate::schema::analyze_generation`]).
    fn analyze(&self, table: &str) -> Option<String>;
    /// Starts checkpointing the database's write-ahead log beside the writer, where the
    /// dialect does so itself (SQLite: see its `checkpointer`); for processes that write much
    /// (the runners, a rebuild, dropping retired generations). Idempotent.
    fn start_checkpointing(&self) {}
    /// Notes that a committed transaction applied an erasure (or a rebuild dropped a
    /// generation): [`Dialect::purge_if_owed`] is to leave no page of the read models as it was
    /// before in a write-ahead log the database keeps in a file of its own (SQLite).
    fn owe_purge(&self) {}
    /// A bulk loader for the appended rows of tables nobody reads yet (a rebuild's new
    /// generation), if the database has a path cheaper than multi-row `INSERT`s (PostgreSQL's
    /// `COPY`). It connects when first used.
    fn loader(&self) -> Option<Arc<dyn Loader>> {
        None
    }
    /// Empties that write-ahead log if a purge is owed (noted, failed before, or possibly cut
    /// short by a crash: every start owes one). A failure is logged and stays owed; the runner
    /// calls this after each step.
    fn purge_if_owed<'a>(&'a self, _db: &'a Db) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Writes rows into a table by the database's bulk path, each call committed on its own,
/// outside any transaction: only for tables that nobody reads until a swap and that are dropped
/// if their build fails (see [`Tx::loading`]). What the transaction does after a load sees the
/// rows because each of its statements reads what was committed before it (PostgreSQL's
/// default `READ COMMITTED`); a transaction must not write the table before loading into it,
/// or the load would wait for the transaction, which waits for the load.
pub(crate) trait Loader: Send + Sync {
    /// Loads rows of `columns.len()` values each, in column order.
    fn load<'a>(
        &'a self,
        table: &'a str,
        columns: &'a [&'static str],
        values: &'a [Val],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
    /// Closes its connections once the loading is over.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// What [`Dialect::begin`] gives: the transaction and the write turn it holds, if any.
pub(crate) type Begun = (Transaction<'static, Any>, Option<SqliteHeldTurn>);

/// A read-model write transaction, with the dialect of its database. Dropped without
/// `commit`, it rolls back.
pub(crate) struct Tx {
    tx: Transaction<'static, Any>,
    dialect: Arc<dyn Dialect>,
    /// On SQLite, the read models' file's write turn, held until the transaction ends
    /// (declared after `tx`, so released after its rollback is queued).
    turn: Option<SqliteHeldTurn>,
    /// Set by a rebuild's build: appended rows go by the loader (see [`Rows::append`]).
    loader: Option<Arc<dyn Loader>>,
}

impl Tx {
    fn new(
        tx: Transaction<'static, Any>,
        dialect: Arc<dyn Dialect>,
        turn: Option<SqliteHeldTurn>,
    ) -> Self {
        Self {
            tx,
            dialect,
            turn,
            loader: None,
        }
    }

    /// This transaction's appended rows ([`Rows::append`]) go by `loader`, committed at once
    /// whatever becomes of the transaction: for a rebuild's build only, whose tables are
    /// invisible until the swap and dropped if it fails.
    pub fn loading(mut self, loader: Option<Arc<dyn Loader>>) -> Self {
        self.loader = loader;
        self
    }

    pub async fn commit(self) -> Result<(), ProjectionError> {
        let Self { tx, turn, .. } = self;
        let committed = tx.commit().await;
        if let Some(turn) = &turn {
            // A busy file fails the writers queued behind this one too (`SqliteWriteTurn`). Only
            // `begin` and this are noted: the statements between run on the connection itself.
            turn.observe(&committed);
        }
        Ok(committed?)
    }

    /// See [`Dialect::placeholders`].
    pub fn placeholders(&self, from: usize, count: usize) -> String {
        self.dialect.placeholders(from, count)
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl Db {
    /// The one place the read models pick their dialect, from the URL's backend.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, ProjectionError> {
        sqlx::any::install_default_drivers();
        let url = DatabaseUrl::parse(url).map_err(|_| ProjectionError::UnsupportedUrl)?;
        match url.backend() {
            Backend::Postgres => postgres::connect(url.as_str(), settings).await,
            Backend::Sqlite => sqlite::connect(url.as_str(), settings).await,
        }
    }

    /// A write transaction. On SQLite it waits for the read models' file's write turn and
    /// takes the database's write lock at once; on PostgreSQL it is a plain transaction
    /// (the runners' advisory locks do the excluding).
    pub async fn begin(&self) -> Result<Tx, ProjectionError> {
        let begun = self.dialect.begin(self).await;
        self.liveness.observe(&begun);
        let (tx, turn) = begun?;
        Ok(Tx::new(tx, Arc::clone(&self.dialect), turn))
    }

    /// See [`Dialect::write_alone`].
    pub async fn write_alone(&self, statement: &str) -> Result<(), ProjectionError> {
        let written = self.dialect.write_alone(self, statement).await;
        self.liveness.observe(&written);
        written
    }

    /// Runs an idempotent read on the read pool, again once if its connection was lost:
    /// `read` builds the query afresh each time (see `infra::sql::Liveness::read`).
    pub async fn read<T, Fut>(&self, read: impl FnMut(AnyPool) -> Fut) -> Result<T, ProjectionError>
    where
        Fut: std::future::Future<Output = Result<T, ProjectionError>>,
    {
        let mut read = read;
        self.liveness.read(|| read(self.read.clone())).await
    }
}

/// A bound value of a read-model column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}

impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

pub(crate) fn bind(query: AnyQuery<'_>, value: Val) -> AnyQuery<'_> {
    match value {
        Val::Int(v) => query.bind(v),
        Val::Text(v) => query.bind(v),
    }
}

/// `$from, $from+1, …` for `count` parameters: what PostgreSQL's writes and both backends'
/// queries use.
pub(crate) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parameters per statement: well under SQLite's 32766 and PostgreSQL's 65535.
const MAX_PARAMS: usize = 4000;

/// Rows for multi-row `INSERT`s, sent in as few statements as the parameter limits allow
/// (one round trip per few hundred rows instead of one per row).
pub(crate) struct Rows<R> {
    table: String,
    columns: Vec<&'static str>,
    values: Vec<Val>,
    row: PhantomData<R>,
}

impl<R: TableRow> Rows<R> {
    /// Rows for the table's `generation`.
    pub fn new(generation: i64) -> Self {
        Self {
            table: R::TABLE.physical(generation),
            columns: R::TABLE.column_names(),
            values: Vec::new(),
            row: PhantomData,
        }
    }

    pub fn push(&mut self, row: R) {
        self.values.extend(row.values());
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds rows to a table its projection only appends to (no conflict to settle, nothing to
    /// return): by the transaction's [loader](Tx::loading) when it has one, else as
    /// [`Rows::insert`] does.
    pub async fn append(self, tx: &mut Tx) -> Result<(), ProjectionError> {
        match tx.loader.clone() {
            Some(loader) => loader.load(&self.table, &self.columns, &self.values).await,
            None => self.insert(tx, "").await.map(drop),
        }
    }

    /// Inserts every row in the transaction; `suffix` follows the `VALUES` list
    /// (`ON CONFLICT …`, `RETURNING …`). Returns what the statements return.
    ///
    /// On an error, return it and never commit `tx`: on SQLite the failed statement's earlier
    /// rows stay in the transaction ([`Dialect::insert_into`]), which only its rollback undoes.
    pub async fn insert(self, tx: &mut Tx, suffix: &str) -> Result<Vec<AnyRow>, ProjectionError> {
        let width = self.columns.len();
        let per_statement = (MAX_PARAMS / width).max(1);
        let mut returned = Vec::new();
        let mut values = self.values.into_iter().peekable();
        while values.peek().is_some() {
            let chunk: Vec<Val> = values.by_ref().take(per_statement * width).collect();
            let rows = chunk.len() / width;
            let sql = insert_statement(
                tx.dialect.as_ref(),
                &self.table,
                &self.columns,
                rows,
                suffix,
            );
            // Full chunks repeat and are worth a cached prepared statement; the last,
            // odd-sized one would only crowd the cache.
            let mut query = sqlx::query(&sql).persistent(rows == per_statement);
            for value in chunk {
                query = bind(query, value);
            }
            returned.extend(query.fetch_all(&mut **tx).await?);
        }
        Ok(returned)
    }
}

/// A multi-row `INSERT` of `rows` rows into `table`, `suffix` after its `VALUES` list (on its
/// own so that tests can `EXPLAIN` the very text [`Rows::insert`] sends).
fn insert_statement(
    dialect: &dyn Dialect,
    table: &str,
    columns: &[&str],
    rows: usize,
    suffix: &str,
) -> String {
    let width = columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| format!("({})", dialect.placeholders(r * width + 1, width)))
        .collect();
    format!(
        "{} {table} ({}) VALUES {} {suffix}",
        dialect.insert_into(),
        columns.join(", "),
        tuples.join(", ")
    )
}
