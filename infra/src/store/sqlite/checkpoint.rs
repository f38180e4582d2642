//! WAL checkpoints off the write path, and emptying the WAL after an erasure.
//!
//! By default SQLite checkpoints inside the commit that grows the WAL past 1000 pages: that
//! commit copies the WAL into the database file and syncs that too before it returns. On the
//! store's one writer, every append queued behind that commit waits for it: the slowest logins
//! under load were those. So writers do not checkpoint (`wal_autocheckpoint = 0` on the
//! store's write connection, and on the read models' writer: their file has a task of its own,
//! a [`Checkpointer`] as the store's), and this task does, on its own connection, in `PASSIVE`
//! mode: it copies what no reader still needs and never holds up a writer.
//!
//! SQLite starts the WAL over only when a writer begins after a checkpoint that copied all of
//! it. Under steady writes (tens of MB of WAL a second under login load: each commit writes
//! every page it touched) a passive checkpoint is rarely complete, so once the WAL passes
//! `MAX_WAL_FRAMES` the checkpointer takes a `RESTART` checkpoint in the file's write turn:
//! appends queue in order behind it while it copies (and syncs) what the passive passes left,
//! so the WAL starts over. What they left is what was appended while the last of them ran, so
//! the checkpointer first passes again until a pass finds little new (the `RESTART`s held the
//! store's appends half as long in one-minute soaks, BENCHMARKS.md). That is the one pause
//! writers see, a few times a second at most instead of inside every commit that crosses 1000
//! pages. (Measured with `bench`: the single-user login p99 halved; 8 and 32 users 10–20 %
//! better.) The writer's `journal_size_limit` (the store's, the read models') then trims the
//! file.
//!
//! A `RESTART` also waits for the readers still on the WAL, so it waits for them briefly
//! (`RESTART_PATIENCE`; the copy and the syncs come on top) and otherwise gives up until the
//! next pass. With a 5 s wait (the busy timeout of the time), a 6-minute `bench` soak at 864
//! logins/s spent 31 % of its time in `RESTART`s, the longest 5.4 s: the login p99 rose to
//! 454 ms, and the resident set with the appends queued meanwhile. With 50 ms (three such
//! soaks): 16 % of the time, the longest 124–146 ms, a third of them gave up, the WAL grew to
//! 210 MB at most before it started over. Once the WAL has not started over for
//! `PATIENT_AFTER` (readers that never let go, which would keep it growing with every append),
//! a `RESTART` waits for them longer (`PATIENT_WAIT`), once per `PATIENT_AFTER`, and says so in
//! a warning. Nothing here holds the turn longer than that, so an append's answer (or its 503)
//! stays within about two seconds.
//!
//! After an erasure the store asks this task to empty the WAL (a `Purge`): a `TRUNCATE`, which
//! holds writers back while readers keep the WAL, so it runs in short tries in the write turn
//! (see `truncate`); the read models' runner asks for one try (`Checkpointer::purge_once`),
//! and asks again after its next step. It runs here, not on a writer's connection, because
//! SQLite answers a checkpoint "busy" at once while another connection's runs: the two would
//! fail each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::turn::WriteTurn;

use crate::failure_log::FailureLog;
use crate::store::{is_sqlx_unavailable, StoreError};

/// The checkpointer's connection's wait for a lock by default; each checkpoint sets its own
/// (`busy_timeout`), and a `PASSIVE` one never waits.
const CONNECTION_WAIT: Duration = Duration::from_secs(5);

/// How often. Under login load the WAL grows by tens of MB a second (each commit writes every
/// page it touched), so passes are frequent and each copies little.
const INTERVAL: Duration = Duration::from_millis(100);

/// WAL frames (pages: 4 KiB by default) past which writers are held back for a checkpoint.
const MAX_WAL_FRAMES: i64 = 4096;

/// At most this many `PASSIVE` passes again before a `RESTART` (see `pass`).
const CATCH_UP_PASSES: usize = 4;

/// Frames appended since the pass before, below which a `RESTART` follows at once: it copies
/// about as many in the write turn (1 MiB at 4 KiB pages).
const LITTLE_LEFT_FRAMES: i64 = 256;

/// How long a `RESTART` (and a try of `truncate`) waits for the writer in hand and for readers
/// still on the WAL.
const RESTART_PATIENCE: Duration = Duration::from_millis(50);

/// The longest a checkpoint waits for readers while it holds the write turn: the patient
/// `RESTART`, and `truncate`'s last try. Appends queue behind it meanwhile.
const PATIENT_WAIT: Duration = Duration::from_secs(1);

/// A patient `truncate`'s short tries, and the pause between them in which appends go on:
/// about 3.5 s in all, before one try that waits `PATIENT_WAIT`.
const TRUNCATE_TRIES: usize = 50;
const TRUNCATE_PAUSE: Duration = Duration::from_millis(20);

/// A WAL that has not started over for this long gets a `RESTART` that waits `PATIENT_WAIT`
/// for its readers, and again each time as long after. In the soaks the longest run of
/// give-ups lasted a few seconds (the WAL reached 210 MB at 100 MB/s of writes); this bounds
/// the WAL to about as much again.
const PATIENT_AFTER: Duration = Duration::from_secs(10);

/// What the writers (the store's, the read models') trim their WAL file to when they start it
/// over (`journal_size_limit`).
pub const WAL_SIZE_LIMIT: &str = "67108864";

/// A request to empty the WAL (see `truncate`), answered with whether it was emptied, or why
/// it could not be tried.
pub(super) struct Purge {
    answer: oneshot::Sender<Result<bool, StoreError>>,
    /// Short tries first, a few seconds in all while readers keep the WAL, or only the one
    /// that waits `PATIENT_WAIT`, for a caller that asks again soon anyway. Requests taken
    /// together get the patient form if any of them asked for it.
    patient: bool,
}

/// The task that checkpoints one SQLite file's WAL (`run`): the store's, and the read models'
/// file beside it. Dropped, it stops the task.
#[derive(Debug)]
pub struct Checkpointer {
    purges: mpsc::Sender<Purge>,
    _stop: oneshot::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the file `options` open, whose writers take `turn` and do not
    /// checkpoint themselves (`wal_autocheckpoint = 0`); `what` names its work in failures'
    /// log lines ("the WAL checkpoint").
    pub fn spawn(options: SqliteConnectOptions, turn: Arc<WriteTurn>, what: &'static str) -> Self {
        let (stop, stopped) = oneshot::channel();
        let (purges, asked) = mpsc::channel(64);
        // At error level so that a log showing warnings only still names the file.
        let span = tracing::error_span!(parent: None, "checkpointer", task = what);
        tokio::spawn(run(options, turn, asked, stopped, what).instrument(span));
        Self {
            purges,
            _stop: stop,
        }
    }

    /// Empties the WAL (see `run`): whether it did (false: readers kept it through all its
    /// tries, a few seconds).
    pub async fn purge(&self) -> Result<bool, StoreError> {
        self.ask(true).await
    }

    /// As [`Checkpointer::purge`], with one try that waits for readers up to a second (the
    /// patient tries if another caller's request is taken with it): for a caller that asks
    /// again soon if it did not (the read models' runner, after each step).
    pub async fn purge_once(&self) -> Result<bool, StoreError> {
        self.ask(false).await
    }

    async fn ask(&self, patient: bool) -> Result<bool, StoreError> {
        let (answer, emptied) = oneshot::channel();
        let stopped = || StoreError::SharedWrite {
            message: "the SQLite WAL checkpointer has stopped".into(),
            unavailable: true,
        };
        let purge = Purge { answer, patient };
        self.purges.send(purge).await.map_err(|_| stopped())?;
        emptied.await.map_err(|_| stopped())?
    }
}

/// Checkpoints every `INTERVAL`, and empties the WAL when asked (`purges`), until `stop` is
/// dropped or sent. Failures (a full disk fails every pass) are warned about at most once a
/// minute (see `FailureLog`).
///
/// Emptying the WAL runs here, not on the caller's connection: a checkpoint finds another
/// connection's checkpoint busy at once, without waiting, so the two would fail each other;
/// requests waiting when one starts share it (later ones wait for the next); and a caller
/// that goes away (a request cut short) does not cut it short.
async fn run(
    options: SqliteConnectOptions,
    turn: Arc<WriteTurn>,
    mut purges: mpsc::Receiver<Purge>,
    mut stop: oneshot::Receiver<()>,
    what: &'static str,
) {
    let options = options.busy_timeout(CONNECTION_WAIT);
    let mut conn: Option<SqliteConnection> = None;
    let mut failures = FailureLog::new(what);
    let mut restarts = Restarts {
        patient_from: Instant::now() + PATIENT_AFTER,
        warned: false,
    };
    let mut waiting: Vec<Purge> = Vec::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(INTERVAL) => {}
            Some(purge) = purges.recv() => waiting.push(purge),
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match SqliteConnection::connect_with(&options).await {
                Ok(opened) => conn.insert(opened),
                Err(e) => {
                    failures.failed(&format!("cannot connect: {e}"), Instant::now());
                    answer(&mut waiting, &Err(e));
                    continue;
                }
            },
        };
        let result = if waiting.is_empty() {
            pass(c, &turn, &mut restarts).await
        } else {
            while let Ok(purge) = purges.try_recv() {
                waiting.push(purge);
            }
            let patient = waiting.iter().any(|purge| purge.patient);
            let truncated = truncate(c, &turn, patient).await;
            answer(&mut waiting, &truncated);
            truncated.map(drop)
        };
        match result {
            Ok(()) => {
                failures.succeeded(Instant::now());
            }
            Err(e) => {
                failures.failed(&e, Instant::now());
                conn = None;
            }
        }
    }
    if let Some(conn) = conn {
        let _ = conn.close().await;
    }
}

/// When the next `RESTART` may wait `PATIENT_WAIT` for readers, and whether that was warned
/// about.
struct Restarts {
    patient_from: Instant,
    warned: bool,
}

impl Restarts {
    /// The WAL is short (a writer started it over, or little was written): readers do not
    /// keep it, so no patient wait is due for another `PATIENT_AFTER`.
    fn short_wal(&mut self) {
        self.patient_from = Instant::now() + PATIENT_AFTER;
        self.warned = false;
    }
}

/// What a pass's WAL size says, against the pass before.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// No figure (another connection's checkpoint was running): try at the next tick.
    Unknown,
    /// The WAL is not past `MAX_WAL_FRAMES` (it started over meanwhile, or little was written).
    Short,
    /// More than `LITTLE_LEFT_FRAMES` appended while the last pass ran: pass again first.
    PassAgain,
    /// `RESTART` now: it has little left to copy in the write turn.
    Restart,
}

impl Next {
    /// From the frames in the WAL at the pass before (`None` for the first) and at this one
    /// (SQLite says -1 when it could not run the checkpoint).
    fn after(before: Option<i64>, frames: i64) -> Self {
        if frames < 0 {
            Self::Unknown
        } else if frames <= MAX_WAL_FRAMES {
            Self::Short
        } else if before.is_none_or(|before| frames - before > LITTLE_LEFT_FRAMES) {
            Self::PassAgain
        } else {
            Self::Restart
        }
    }
}

/// One tick: a `PASSIVE` checkpoint; once the WAL is past `MAX_WAL_FRAMES`, more of them while
/// each finds much appended since the one before (what they leave, the `RESTART` copies and
/// syncs in the write turn: a pass over thousands of frames takes tens of ms), then a
/// `RESTART` in the write `turn`.
async fn pass(
    conn: &mut SqliteConnection,
    turn: &Arc<WriteTurn>,
    restarts: &mut Restarts,
) -> Result<(), sqlx::Error> {
    let mut before = None;
    let mut passes = 0;
    let passive = loop {
        let passive = checkpoint(conn, "PASSIVE").await?;
        passes += 1;
        match Next::after(before, passive.frames) {
            Next::Unknown => return Ok(()),
            Next::Short => {
                restarts.short_wal();
                return Ok(());
            }
            Next::PassAgain if passes <= CATCH_UP_PASSES => before = Some(passive.frames),
            Next::PassAgain | Next::Restart => break passive,
        }
    };
    let patient = Instant::now() >= restarts.patient_from;
    if patient && !restarts.warned {
        tracing::warn!(
            frames = passive.frames,
            "the WAL has not started over for {PATIENT_AFTER:?}: readers keep it; \
             the checkpointer now holds writers back until they let go"
        );
        restarts.warned = true;
    }
    let restarted = {
        let _turn = turn.wait().await;
        restart(conn, patient).await?
    };
    if patient || !restarted.busy {
        // Started over, or waited long once: the next patient wait comes no sooner than this.
        restarts.patient_from = Instant::now() + PATIENT_AFTER;
    }
    if !restarted.busy {
        restarts.warned = false;
    }
    Ok(())
}

/// Answers every purge waiting: each its own copy of a failure.
fn answer(waiting: &mut Vec<Purge>, outcome: &Result<bool, sqlx::Error>) {
    for purge in waiting.drain(..) {
        let _ = purge.answer.send(match outcome {
            Ok(truncated) => Ok(*truncated),
            Err(e) => Err(StoreError::SharedWrite {
                message: format!("emptying the WAL: {e}"),
                unavailable: is_sqlx_unavailable(e),
            }),
        });
    }
}

/// A `RESTART` checkpoint, waiting for readers `RESTART_PATIENCE`, or `PATIENT_WAIT` when
/// `patient` (see the module).
async fn restart(conn: &mut SqliteConnection, patient: bool) -> Result<Checkpointed, sqlx::Error> {
    let patience = if patient {
        PATIENT_WAIT
    } else {
        RESTART_PATIENCE
    };
    // The busy handler is what waits; this connection runs checkpoints only.
    busy_timeout(conn, patience).await?;
    checkpoint(conn, "RESTART").await
}

/// What a checkpoint reported.
#[derive(Debug, Clone, Copy)]
struct Checkpointed {
    /// It gave up waiting (for the writer or for readers).
    busy: bool,
    /// Frames in the WAL.
    frames: i64,
}

/// Runs a checkpoint.
async fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> Result<Checkpointed, sqlx::Error> {
    let started = Instant::now();
    // (busy, frames in the WAL, frames copied into the database)
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(conn)
        .await?;
    let done = Checkpointed {
        busy: row.try_get::<i64, _>(0)? != 0,
        frames: row.try_get(1)?,
    };
    tracing::trace!(
        mode,
        busy = done.busy,
        frames = done.frames,
        checkpointed = row.try_get::<i64, _>(2)?,
        took_us = started.elapsed().as_micros() as u64,
        "WAL checkpoint"
    );
    Ok(done)
}

/// Copies the whole WAL into the database and truncates it to zero bytes, so the pages it held
/// (rows as they were before a delete) are gone from the files: whether it did (the caller
/// says so if not).
///
/// A `TRUNCATE` checkpoint holds the writer back while it waits for readers still on the WAL.
/// So, as a `RESTART` does, it first tries often (if `patient`), waiting for them
/// `RESTART_PATIENCE` a try; only if readers kept the WAL all that time does it try once more
/// waiting `PATIENT_WAIT`. Each try takes the process's write `turn`, as writers do, so
/// appends queue behind it in order and go on between tries, instead of polling for the lock.
async fn truncate(
    conn: &mut SqliteConnection,
    turn: &Arc<WriteTurn>,
    patient: bool,
) -> Result<bool, sqlx::Error> {
    let tries = if patient { TRUNCATE_TRIES } else { 0 };
    if patient {
        busy_timeout(conn, RESTART_PATIENCE).await?;
    }
    for _ in 0..tries {
        let truncated = {
            let _turn = turn.wait().await;
            !checkpoint(conn, "TRUNCATE").await?.busy
        };
        if truncated {
            return Ok(true);
        }
        tokio::time::sleep(TRUNCATE_PAUSE).await;
    }
    busy_timeout(conn, PATIENT_WAIT).await?;
    let _turn = turn.wait().await;
    Ok(!checkpoint(conn, "TRUNCATE").await?.busy)
}

/// Sets how long the connection's statements wait for a lock (SQLite's busy handler).
async fn busy_timeout(conn: &mut SqliteConnection, wait: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("PRAGMA busy_timeout = {}", wait.as_millis()))
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    /// A database whose WAL holds 4,000 rows' frames that `reader`'s open snapshot predates, so
    /// no checkpoint can start the WAL over until it lets go.
    struct KeptWal {
        dir: PathBuf,
        /// A 5 s busy wait (the checkpointer connection's default), no automatic checkpoints.
        options: SqliteConnectOptions,
        reader: SqliteConnection,
    }

    impl KeptWal {
        async fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("checkpoint-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&dir).unwrap();
            let options = SqliteConnectOptions::from_str(&format!(
                "sqlite://{}?mode=rwc",
                dir.join("db").display()
            ))
            .unwrap()
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0")
            .busy_timeout(CONNECTION_WAIT);
            let mut writer = SqliteConnection::connect_with(&options).await.unwrap();
            let mut reader = SqliteConnection::connect_with(&options).await.unwrap();
            sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY, b BLOB)")
                .execute(&mut writer)
                .await
                .unwrap();
            sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
                .fetch_one(&mut reader)
                .await
                .unwrap();
            assert_eq!(rows, 0);
            sqlx::query(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 4000) \
                 INSERT INTO t SELECT n, randomblob(1000) FROM s",
            )
            .execute(&mut writer)
            .await
            .unwrap();
            writer.close().await.unwrap();
            Self {
                dir,
                options,
                reader,
            }
        }

        async fn let_go(&mut self) {
            sqlx::query("COMMIT")
                .execute(&mut self.reader)
                .await
                .unwrap();
        }

        fn wal_bytes(&self) -> u64 {
            std::fs::metadata(self.dir.join("db-wal")).unwrap().len()
        }
    }

    impl Drop for KeptWal {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Pass again while much was appended since the last pass, `RESTART` once little was, stop
    /// when the WAL is short or SQLite gives no figure.
    #[test]
    fn the_passes_catch_up_before_the_restart() {
        let long = MAX_WAL_FRAMES + 1000;
        assert_eq!(Next::after(None, long), Next::PassAgain);
        assert_eq!(
            Next::after(Some(long), long + LITTLE_LEFT_FRAMES + 1),
            Next::PassAgain
        );
        assert_eq!(
            Next::after(Some(long), long + LITTLE_LEFT_FRAMES),
            Next::Restart
        );
        assert_eq!(Next::after(Some(long), long), Next::Restart);
        assert_eq!(Next::after(Some(long), 12), Next::Short);
        assert_eq!(Next::after(None, MAX_WAL_FRAMES), Next::Short);
        assert_eq!(Next::after(Some(long), -1), Next::Unknown);
    }

    /// A pass over a WAL past `MAX_WAL_FRAMES`, nobody reading, runs its passes and its
    /// `RESTART` through, and the next write starts the WAL over. (With no reader a writer
    /// would start it over after a complete passive pass too: this checks the path runs; the
    /// decisions are `the_passes_catch_up_before_the_restart`'s, what they save is timing,
    /// measured in BENCHMARKS.md.)
    #[tokio::test]
    async fn a_pass_over_a_long_wal_runs_through() {
        let mut wal = KeptWal::new().await;
        wal.let_go().await;
        let mut writer = SqliteConnection::connect_with(&wal.options).await.unwrap();
        sqlx::query(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000) \
             INSERT INTO t (b) SELECT randomblob(1000) FROM s",
        )
        .execute(&mut writer)
        .await
        .unwrap();
        let mut checkpointer = SqliteConnection::connect_with(&wal.options).await.unwrap();
        let before = checkpoint(&mut checkpointer, "PASSIVE").await.unwrap();
        assert!(before.frames > MAX_WAL_FRAMES, "{before:?}");
        let mut restarts = Restarts {
            patient_from: Instant::now() + PATIENT_AFTER,
            warned: false,
        };
        let turn = Arc::new(WriteTurn::default());
        pass(&mut checkpointer, &turn, &mut restarts).await.unwrap();
        sqlx::query("INSERT INTO t (b) VALUES (x'00')")
            .execute(&mut writer)
            .await
            .unwrap();
        let after = checkpoint(&mut checkpointer, "PASSIVE").await.unwrap();
        assert!(
            after.frames < 10,
            "the WAL went on from where it was: {after:?}"
        );
    }

    /// A reader keeps its snapshot of the WAL; a `RESTART` gives up after `RESTART_PATIENCE`
    /// (holding the writer back that long only), not after the connection's busy timeout.
    #[tokio::test]
    async fn a_restart_gives_up_soon_on_a_reader_that_keeps_the_wal() {
        let mut wal = KeptWal::new().await;
        // The checkpointer connection's default wait.
        let mut checkpointer = SqliteConnection::connect_with(&wal.options).await.unwrap();

        let started = Instant::now();
        let restarted = restart(&mut checkpointer, false).await.unwrap();
        let took = started.elapsed();
        assert!(restarted.busy, "the RESTART did not give up: {restarted:?}");
        // Without the short patience it waits the connection's whole wait for the reader.
        assert!(took < CONNECTION_WAIT / 2, "the RESTART waited {took:?}");
        wal.let_go().await;
    }

    /// While a reader keeps the WAL, emptying it after an erasure holds appends back only
    /// briefly at a time (they used to wait a 5 s busy timeout a try); once the reader lets
    /// go, the checkpointer empties the WAL and says so.
    #[tokio::test]
    async fn emptying_the_wal_lets_appends_through_while_a_reader_keeps_it() {
        let mut wal = KeptWal::new().await;
        // As the store's writer: one connection, appends in the file's write turn.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(wal.options.clone())
            .await
            .unwrap();
        let turn = Arc::new(WriteTurn::default());
        let (purges, asked) = mpsc::channel(8);
        let (_stop, stopped) = oneshot::channel();
        tokio::spawn(run(
            wal.options.clone(),
            Arc::clone(&turn),
            asked,
            stopped,
            "the WAL checkpoint",
        ));
        let (answer, mut emptied) = oneshot::channel();
        let purge = Purge {
            answer,
            patient: true,
        };
        purges.send(purge).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for n in 0..5 {
            let started = Instant::now();
            let _turn = turn.wait().await;
            sqlx::query("INSERT INTO t (b) VALUES (x'00')")
                .execute(&pool)
                .await
                .unwrap();
            let took = started.elapsed();
            // Each waited about the 5 s busy timeout before.
            assert!(took < CONNECTION_WAIT / 2, "append {n} waited {took:?}");
        }
        assert!(
            matches!(emptied.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "the WAL was emptied, or given up on, while the reader kept it"
        );

        wal.let_go().await;
        let emptied = tokio::time::timeout(CONNECTION_WAIT * 2, emptied).await;
        assert!(
            emptied.unwrap().unwrap().unwrap(),
            "the WAL was not emptied"
        );
        assert_eq!(wal.wal_bytes(), 0);
        pool.close().await;
    }

    /// One try: while a reader keeps the WAL, `purge_once` answers "not emptied" after about
    /// its one wait (`PATIENT_WAIT`), not after the patient tries; once the reader has let go,
    /// it empties the WAL.
    #[tokio::test]
    async fn a_single_purge_try_gives_up_after_one_wait() {
        let mut wal = KeptWal::new().await;
        let checkpointer = Checkpointer::spawn(
            wal.options.clone(),
            Arc::new(WriteTurn::default()),
            "a test",
        );
        let started = Instant::now();
        assert!(
            !checkpointer.purge_once().await.unwrap(),
            "emptied under a reader"
        );
        let took = started.elapsed();
        assert!(took < CONNECTION_WAIT / 2, "one try took {took:?}");
        wal.let_go().await;
        assert!(checkpointer.purge_once().await.unwrap());
        assert_eq!(wal.wal_bytes(), 0);
    }
}
