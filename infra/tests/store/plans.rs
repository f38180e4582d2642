//! Query plans that decide how the store behaves at scale, where a small test table would
//! never show the difference in time.

use infra::database_url::{Backend, DatabaseUrl};
use sqlx::{Connection, PgConnection, Row, SqliteConnection};

use super::Db;

/// Erasing a user releases their claims inside an append: looked up by user, not by a scan
/// of every claim (which would hold SQLite's one writer, or a PostgreSQL transaction id that
/// every reader waits behind, for as long as the scan takes).
pub async fn releasing_a_users_claims_looks_them_up_by_user(db: Db) {
    const DELETE: &str =
        "DELETE FROM claims WHERE user_id = '0190d1f2-0000-7000-8000-000000000000'";
    let url = DatabaseUrl::parse(&db.url).unwrap();
    let plan: Vec<String> = if url.backend() == Backend::Sqlite {
        let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {DELETE}"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.iter().map(|row| row.get("detail")).collect()
    } else {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        // With scans priced out, the plan uses an index if there is one.
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query_scalar(&format!("EXPLAIN {DELETE}"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    assert!(
        plan.iter().any(|line| line.contains("claims_by_user")),
        "{plan:#?}"
    );
}
