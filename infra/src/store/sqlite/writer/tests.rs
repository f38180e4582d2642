//! The writer's group: written together when nothing is refused, again in savepoints when
//! something is.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use domain::{EventId, Metadata, StreamId};
use serde_json::json;
use uuid::Uuid;

use super::{commit_group, Job};
use crate::database_url::DatabaseUrl;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    AppendBatch, AppendError, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
};

type AppendReply = tokio::sync::oneshot::Receiver<Result<Vec<RecordedEvent>, AppendError>>;

async fn store() -> (SqliteStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("writer-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.join("log.db").display())).unwrap();
    (SqliteStore::connect(&url).await.unwrap(), dir)
}

/// `commit_group` in the store's write turn, as the writer task runs it.
async fn commit(store: &SqliteStore, jobs: impl Iterator<Item = Job>) {
    let turn = store.sql.turn.as_ref().unwrap().wait().await;
    commit_group(&store.sql.write, &turn, jobs).await;
}

/// One event to `stream`.
fn batch(stream: &StreamId, expected: ExpectedVersion) -> AppendBatch {
    let event = NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: "Noted".into(),
        schema_version: 1,
        occurred_at: Utc::now(),
        payload: json!({}),
        metadata: Metadata::system(Uuid::now_v7()),
    };
    AppendBatch::default().stream(stream.clone(), expected, vec![event])
}

fn append(stream: &StreamId, expected: ExpectedVersion) -> (Job, AppendReply) {
    let batch = batch(stream, expected);
    let (reply, answer) = tokio::sync::oneshot::channel();
    (
        Job {
            batch,
            reply,
            ticket: 0,
        },
        answer,
    )
}

fn stream(name: &str) -> StreamId {
    StreamId::from_stored(format!("test-{name}-{}", Uuid::now_v7()))
}

#[tokio::test]
async fn a_refused_job_is_undone_alone_and_its_neighbours_commit() {
    let (store, dir) = store().await;
    let (taken, fresh) = (stream("taken"), stream("fresh"));
    store
        .append(batch(&taken, ExpectedVersion::NoStream))
        .await
        .unwrap();

    let (first, first_answer) = append(&fresh, ExpectedVersion::NoStream);
    let (refused, refused_answer) = append(&taken, ExpectedVersion::NoStream);
    let (second, second_answer) = append(&fresh, ExpectedVersion::Exactly(1));
    commit(&store, [first, refused, second].into_iter()).await;

    assert_eq!(first_answer.await.unwrap().unwrap()[0].stream_version, 1);
    assert!(matches!(
        refused_answer.await.unwrap(),
        Err(AppendError::VersionConflict(s)) if s == taken
    ));
    assert_eq!(second_answer.await.unwrap().unwrap()[0].stream_version, 2);
    assert_eq!(store.load_stream(&fresh).await.unwrap().len(), 2);
    assert_eq!(store.load_stream(&taken).await.unwrap().len(), 1);
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A failure found after the script ran (here: an event the log silently dropped, so fewer
/// events came back than were sent) undoes that job alone; it used to roll back to a
/// savepoint the script had already released, failing the whole group.
#[tokio::test]
async fn a_failure_found_after_the_script_fails_that_job_alone() {
    let (store, dir) = store().await;
    let (dropped, fresh) = (stream("dropped"), stream("fresh"));
    let trigger = format!(
        "CREATE TRIGGER drop_event BEFORE INSERT ON events WHEN NEW.stream_id = '{}' \
         BEGIN SELECT RAISE(IGNORE); END",
        dropped.as_str()
    );
    sqlx::query(&trigger)
        .execute(&store.sql.write)
        .await
        .unwrap();

    let (first, first_answer) = append(&fresh, ExpectedVersion::NoStream);
    let (failing, failing_answer) = append(&dropped, ExpectedVersion::NoStream);
    let (second, second_answer) = append(&fresh, ExpectedVersion::Exactly(1));
    commit(&store, [first, failing, second].into_iter()).await;

    assert_eq!(first_answer.await.unwrap().unwrap()[0].stream_version, 1);
    assert!(failing_answer.await.unwrap().is_err());
    assert_eq!(second_answer.await.unwrap().unwrap()[0].stream_version, 2);
    // The failed job's version bump was undone with it.
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = ?1")
            .bind(dropped.as_str())
            .fetch_optional(&store.sql.write)
            .await
            .unwrap();
    assert_eq!(version, None);
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A database that cannot grow (`max_page_count` at its size: what SQLite says on a full
/// disk, `SQLITE_FULL`) fails the whole group as unavailable, never with the error of a
/// rollback that failed after it, and leaves the writer able to commit once it may grow.
#[tokio::test]
async fn a_full_database_fails_the_group_as_unavailable_and_the_writer_recovers() {
    let (store, dir) = store().await;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&store.sql.write)
        .await
        .unwrap();
    // Per connection: the write pool's one connection.
    sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
        .execute(&store.sql.write)
        .await
        .unwrap();

    // Events too big for the free room of any page.
    let big = |stream: &StreamId| {
        let (mut job, answer) = append(stream, ExpectedVersion::NoStream);
        job.batch.streams[0].events[0].payload = json!({ "filler": "x".repeat(64 * 1024) });
        (job, answer)
    };
    let (first, first_answer) = big(&stream("first"));
    let (second, second_answer) = big(&stream("second"));
    commit(&store, [first, second].into_iter()).await;
    for answer in [first_answer, second_answer] {
        let err = answer.await.unwrap().unwrap_err();
        assert!(
            crate::store::is_database_unavailable(&err),
            "a full database is unavailable, not a bug: {err}"
        );
    }

    // Room again (a connection the failure replaced has the default limit already).
    sqlx::query("PRAGMA max_page_count = 1073741823")
        .execute(&store.sql.write)
        .await
        .unwrap();
    let (after, after_answer) = big(&stream("after"));
    commit(&store, [after].into_iter()).await;
    assert_eq!(after_answer.await.unwrap().unwrap()[0].stream_version, 1);
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}
