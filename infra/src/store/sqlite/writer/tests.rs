//! The writer's group: written together when nothing is refused (in sets where appends touch
//! different rows, `set`), again in savepoints when something is.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use domain::{EventId, Metadata, StreamId, UserId};
use serde_json::json;
use uuid::Uuid;

use super::{commit_group, Job};
use crate::database_url::DatabaseUrl;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    AppendBatch, AppendError, ClaimKey, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
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

/// `set::write` in the store's write turn and a transaction of its own, committed if the set
/// was written, rolled back if not (as the writer does with the group).
async fn write_set(
    store: &SqliteStore,
    set: &[crate::store::prepared::PreparedAppend],
) -> Result<Vec<super::Outcome>, super::append::Failure> {
    let _turn = store.sql.turn.as_ref().unwrap().wait().await;
    let mut tx = crate::sql::begin_with(&store.sql.write, "BEGIN IMMEDIATE")
        .await
        .unwrap();
    let written = super::set::write(&mut tx, set).await;
    match written {
        Ok(_) => tx.commit().await.unwrap(),
        Err(_) => tx.rollback().await.unwrap(),
    }
    written
}

fn job(batch: AppendBatch) -> (Job, AppendReply) {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job {
        batch,
        reply,
        ticket: 0,
    };
    (job, answer)
}

fn claim(value: &str) -> ClaimKey {
    ClaimKey {
        kind: "openid",
        value: value.to_owned(),
    }
}

/// An account's key, as a login's session key is stored under.
fn account() -> crate::personal_data::AccountKey {
    crate::personal_data::LookupIndex::new(&crate::crypto::MasterKey::generate()).account(
        &domain::AppId::parse("wx0123456789abcdef").unwrap(),
        &domain::OpenId::parse("o_1").unwrap(),
    )
}

fn user() -> UserId {
    UserId::from_uuid(Uuid::now_v7())
}

/// The group cut where order matters: a stream already in the set, a user whose side rows an
/// append in the set writes, an account's session key, an erasure, a stream named twice.
#[test]
fn a_group_is_cut_into_sets_where_order_matters() {
    use super::set::{runs, Run};
    use crate::store::prepared::PreparedAppend;
    let (a, b, c, d) = (stream("a"), stream("b"), stream("c"), stream("d"));
    let who = user();
    let account = account();
    let group: Vec<PreparedAppend> = [
        batch(&a, ExpectedVersion::Any),
        batch(&b, ExpectedVersion::Any),
        // `a` again: a new set.
        batch(&a, ExpectedVersion::Any),
        batch(&who.stream(), ExpectedVersion::Any),
        // Side rows of the user whose stream is in the set: a new set.
        batch(&c, ExpectedVersion::Any).data_key(who, vec![1]),
        batch(&d, ExpectedVersion::Any).session_key("wxapp", &account, vec![1]),
        // The same account's session key: a new set.
        batch(&b, ExpectedVersion::Any).session_key("wxapp", &account, vec![2]),
        // Alone: an erasure, then a stream named twice.
        batch(&c, ExpectedVersion::Any).release_claims_of(who),
        {
            let mut twice = batch(&c, ExpectedVersion::Any);
            twice
                .streams
                .push(batch(&c, ExpectedVersion::Any).streams.remove(0));
            twice
        },
        batch(&a, ExpectedVersion::Any),
    ]
    .into_iter()
    .map(PreparedAppend::new)
    .collect();
    assert_eq!(
        runs(&group),
        [
            Run::Set(0..2),
            Run::Set(2..4),
            Run::Set(4..6),
            Run::Alone(6),
            Run::Alone(7),
            Run::Alone(8),
            Run::Alone(9),
        ]
    );
}

/// A set answers each append as one by one would: versions against each expectation,
/// positions consecutive in arrival order, claims and side rows stored; and what it returned
/// is what is read back. Written through `set::write` itself: through the writer, a set that
/// failed would be written again one by one and pass all the same.
#[tokio::test]
async fn a_set_of_appends_answers_each_as_one_by_one() {
    use crate::store::prepared::PreparedAppend;
    let (store, dir) = store().await;
    let (existing, fresh, shared) = (stream("existing"), stream("fresh"), stream("shared"));
    let before = store
        .append(batch(&existing, ExpectedVersion::NoStream))
        .await
        .unwrap()[0]
        .position;
    store
        .append(batch(&shared, ExpectedVersion::NoStream))
        .await
        .unwrap();

    let owner = user();
    let account = account();
    let created = {
        let mut two = batch(&fresh, ExpectedVersion::NoStream);
        let second = batch(&fresh, ExpectedVersion::NoStream).streams.remove(0);
        two.streams[0].events.extend(second.events);
        two.claim(claim(&format!("claimed-{owner}")), owner)
            .data_key(owner, vec![7, 8, 9])
            .phone_index(owner, format!("phone-{owner}"))
            .session_key("wxapp", &account, vec![4, 5, 6])
    };
    let set: Vec<PreparedAppend> = [
        batch(&existing, ExpectedVersion::Exactly(1)),
        created,
        batch(&shared, ExpectedVersion::Any),
    ]
    .into_iter()
    .map(PreparedAppend::new)
    .collect();
    assert_eq!(super::set::runs(&set), [super::set::Run::Set(0..3)]);
    let Ok(written) = write_set(&store, &set).await else {
        panic!("the set failed");
    };
    let mut answers = set
        .into_iter()
        .zip(written)
        .map(|(append, written)| append.into_records(written.unwrap()));
    let (moved, created, any) = (
        answers.next().unwrap(),
        answers.next().unwrap(),
        answers.next().unwrap(),
    );
    let versions =
        |events: &[RecordedEvent]| events.iter().map(|e| e.stream_version).collect::<Vec<_>>();
    assert_eq!(versions(&moved), [2]);
    assert_eq!(versions(&created), [1, 2]);
    assert_eq!(versions(&any), [2]);
    let positions: Vec<i64> = [&moved, &created, &any]
        .into_iter()
        .flatten()
        .map(|e| e.position)
        .collect();
    let first = positions[0];
    assert!(first > before + 1);
    assert_eq!(positions, (first..first + 4).collect::<Vec<_>>());

    let log = store.read_all(first - 1, 10).await.unwrap();
    let answered: Vec<RecordedEvent> = [moved, created, any].into_iter().flatten().collect();
    assert_eq!(log, answered);

    let stored: (String, Vec<u8>, String) = sqlx::query_as(
        "SELECT c.user_id, k.sealed_key, p.phone_index FROM claims c \
         JOIN user_data_keys k ON k.user_id = c.user_id \
         JOIN phone_lookup p ON p.user_id = c.user_id WHERE c.value = ?1",
    )
    .bind(format!("claimed-{owner}"))
    .fetch_one(&store.sql.write)
    .await
    .unwrap();
    assert_eq!(
        stored,
        (owner.to_string(), vec![7, 8, 9], format!("phone-{owner}"))
    );
    let sealed: Vec<u8> = sqlx::query_scalar(
        "SELECT sealed FROM wechat_session_keys WHERE appid = 'wxapp' AND openid = ?1",
    )
    .bind(account.as_str())
    .fetch_one(&store.sql.write)
    .await
    .unwrap();
    assert_eq!(sealed, [4, 5, 6]);
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two appends of one set claiming one value for different users: the first keeps it, the
/// second is refused alone, as if they had come one by one.
#[tokio::test]
async fn a_claim_taken_within_a_set_refuses_the_later_append_alone() {
    let (store, dir) = store().await;
    let (first_user, second_user) = (user(), user());
    let value = format!("contested-{first_user}");
    let batches = [
        batch(&stream("first"), ExpectedVersion::NoStream).claim(claim(&value), first_user),
        batch(&stream("second"), ExpectedVersion::NoStream).claim(claim(&value), second_user),
        batch(&stream("third"), ExpectedVersion::NoStream),
    ];
    // One set: its claim guard fails, and the group is written again one by one.
    let prepared = batches
        .clone()
        .map(crate::store::prepared::PreparedAppend::new);
    assert_eq!(super::set::runs(&prepared), [super::set::Run::Set(0..3)]);
    let [(first, first_answer), (second, second_answer), (third, third_answer)] = batches.map(job);
    commit(&store, [first, second, third].into_iter()).await;

    assert!(first_answer.await.unwrap().is_ok());
    assert!(matches!(
        second_answer.await.unwrap(),
        Err(AppendError::ClaimTaken { kind: "openid" })
    ));
    assert!(third_answer.await.unwrap().is_ok());
    let holder: String = sqlx::query_scalar("SELECT user_id FROM claims WHERE value = ?1")
        .bind(&value)
        .fetch_one(&store.sql.write)
        .await
        .unwrap();
    assert_eq!(holder, first_user.to_string());
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A claim, then the erasure of its user, in one group: the erasure releases it, as it would
/// one after the other (a set that deleted before inserting would keep it).
#[tokio::test]
async fn a_claim_then_its_users_erasure_in_one_group_leaves_it_free() {
    let (store, dir) = store().await;
    let owner = user();
    let value = format!("released-{owner}");
    let (claimed, claimed_answer) =
        job(batch(&stream("claim"), ExpectedVersion::NoStream).claim(claim(&value), owner));
    let (other, other_answer) = job(batch(&stream("other"), ExpectedVersion::NoStream));
    let (erased, erased_answer) =
        job(batch(&stream("erasure"), ExpectedVersion::NoStream).release_claims_of(owner));
    commit(&store, [claimed, other, erased].into_iter()).await;

    for answer in [claimed_answer, other_answer, erased_answer] {
        assert!(answer.await.unwrap().is_ok());
    }
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM claims WHERE value = ?1")
        .bind(&value)
        .fetch_one(&store.sql.write)
        .await
        .unwrap();
    assert_eq!(held, 0);
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every statement of the set's script finds stored rows by key: none scans a table, so a set
/// costs the same with a million users stored.
#[tokio::test]
async fn the_sets_statements_scan_no_stored_table() {
    let (store, dir) = store().await;
    for statement in super::set::SCRIPT
        .split(";\n")
        .filter(|s| !s.trim().is_empty())
    {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {statement}"))
                .fetch_all(&store.sql.write)
                .await
                .unwrap();
        for (.., detail) in plan {
            assert!(
                !detail.starts_with("SCAN")
                    || detail.contains("VIRTUAL TABLE")
                    || detail == "SCAN CONSTANT ROW",
                "{detail} in {statement}"
            );
        }
    }
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A set whose append expects a version its stream has moved past fails as a guard, and what
/// it wrote before is rolled back with the transaction.
#[tokio::test]
async fn a_set_with_a_moved_stream_fails_its_guard() {
    use crate::store::prepared::PreparedAppend;
    let (store, dir) = store().await;
    let (moved, fresh) = (stream("moved"), stream("fresh"));
    store
        .append(batch(&moved, ExpectedVersion::NoStream))
        .await
        .unwrap();
    let set = [
        batch(&fresh, ExpectedVersion::NoStream),
        batch(&moved, ExpectedVersion::Exactly(2)),
    ]
    .map(PreparedAppend::new);
    let failed = write_set(&store, &set).await;
    assert!(matches!(failed, Err(super::append::Failure::Guard)));
    assert!(store.load_stream(&fresh).await.unwrap().is_empty());
    assert_eq!(store.load_stream(&moved).await.unwrap().len(), 1);
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}
