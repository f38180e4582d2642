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
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
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
