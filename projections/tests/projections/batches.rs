//! One runner batch writes every read model and every checkpoint in one transaction, and
//! instances taking turns apply each event once. Driven batch by batch (`run_one_batch`), so
//! nothing here depends on timing.

use sqlx::Connection;

use super::scenario::{user, Scenario};
use super::{project, read_models, Db, ReadModels};
use projections::run_one_batch;
use testkit::both_backends;

both_backends!(
    Db:
    a_failing_read_model_rolls_back_the_whole_batch,
    instances_stepping_at_once_apply_each_event_once,
);

/// Renames a read model's table of generation 1: the next batch's write into it fails.
async fn rename(url: &str, from: &str, to: &str) {
    sqlx::any::install_default_drivers();
    // On SQLite the read models' tables are in their own file, beside the store's.
    let url = infra::database_url::DatabaseUrl::parse(url)
        .unwrap()
        .read_models();
    let mut conn = sqlx::AnyConnection::connect(url.as_str()).await.unwrap();
    sqlx::query(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Runs batches until every projection has `head`.
async fn catch_up(models: &ReadModels, db: &Db, head: i64) {
    for _ in 0..100 {
        let status = models.status().await.unwrap();
        if status.iter().all(|s| s.position >= head) {
            return;
        }
        run_one_batch(models, db.store.as_ref()).await.unwrap();
    }
    panic!("not caught up: {:?}", models.status().await.unwrap());
}

async fn a_failing_read_model_rolls_back_the_whole_batch(db: Db) {
    let scenario = Scenario::new(20, 2);
    let head = scenario.append_to(db.store.as_ref(), 50).await;
    let models = read_models(&db).await;
    // `users` and `login_history` are written before `audit_log` in a batch.
    rename(&db.url, "audit_log_g1", "audit_log_away").await;
    let failed = run_one_batch(&models, db.store.as_ref()).await;
    assert!(failed.is_err(), "{failed:?}");
    let status = models.status().await.unwrap();
    assert!(status.iter().all(|s| s.position == 0), "{status:?}");
    assert!(
        models.user(user(0)).await.unwrap().is_none(),
        "the users read model kept nothing of the failed batch"
    );

    rename(&db.url, "audit_log_away", "audit_log_g1").await;
    catch_up(&models, &db, head).await;
    let alone = project(&db.another().await, &scenario).await;
    assert_eq!(models.dump().await.unwrap(), alone.dump().await.unwrap());
}

async fn instances_stepping_at_once_apply_each_event_once(db: Db) {
    // Several batches' worth.
    let scenario = Scenario::new(300, 4);
    assert!(scenario.entries.len() > 2000);
    let head = scenario.append_to(db.store.as_ref(), 50).await;
    let (one, two) = (read_models(&db).await, read_models(&db).await);
    for _ in 0..200 {
        let status = one.status().await.unwrap();
        if status.iter().all(|s| s.position >= head) {
            break;
        }
        let (a, b) = tokio::join!(
            run_one_batch(&one, db.store.as_ref()),
            run_one_batch(&two, db.store.as_ref())
        );
        a.unwrap();
        b.unwrap();
    }
    let alone = project(&db.another().await, &scenario).await;
    assert_eq!(one.dump().await.unwrap(), alone.dump().await.unwrap());
}

/// A batch that applied an erasure leaves the read models' WAL empty (SQLite, whose read models
/// keep a file and a WAL of their own): no page as it was before the erasure stays in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_with_an_erasure_empties_the_read_models_wal() {
    let Some(db) = <Db as testkit::Fixture>::start(testkit::Backend::Sqlite).await else {
        return;
    };
    let wal = format!(
        "{}-wal",
        infra::database_url::sqlite_read_models_url(&db.url).trim_start_matches("sqlite://")
    );
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let models = read_models(&db).await;
    // Nothing to apply yet: this step pays the purge every start owes (a crash may have cut
    // one short).
    assert!(!run_one_batch(&models, db.store.as_ref()).await.unwrap());
    // Users 0..12: nobody erased (the scenario erases every thirteenth user).
    let head = Scenario::new(12, 2).append_to(db.store.as_ref(), 50).await;
    catch_up(&models, &db, head).await;
    assert!(wal_size() > 0, "the batches wrote to the WAL");

    let head = Scenario::range(12..13, 2)
        .append_to(db.store.as_ref(), 50)
        .await;
    assert!(run_one_batch(&models, db.store.as_ref()).await.unwrap());
    let status = models.status().await.unwrap();
    assert!(status.iter().all(|s| s.position == head), "{status:?}");
    assert_eq!(wal_size(), 0, "emptied after the batch with the erasure");
}
