//! Looks past the API: the event log and the database as an operator (or a thief) sees them.

use std::sync::Arc;

use infra::store::RecordedEvent;

use crate::{Backend, World};

impl World {
    pub async fn store(&self) -> Arc<dyn infra::store::Store> {
        infra::store::connect(&self.database_url)
            .await
            .expect("open store")
    }

    /// Every event committed so far, in log order.
    pub async fn log(&self) -> Vec<RecordedEvent> {
        testkit::wait_until_log_readable(&self.database_url).await;
        let store = self.store().await;
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = store.read_all(after, 1000).await.expect("read_all");
            let Some(last) = page.last() else {
                return all;
            };
            after = last.position;
            all.extend(page);
        }
    }

    /// The events of the log of one type.
    pub async fn events_of_type(&self, event_type: &str) -> Vec<RecordedEvent> {
        let mut log = self.log().await;
        log.retain(|e| e.event_type == event_type);
        log
    }

    /// Everything the database holds, as text: the SQLite files (database, WAL, shared
    /// memory), or a `pg_dump` of the PostgreSQL schema.
    pub async fn database_text(&self) -> String {
        database_text(&self.database_url).await
    }

    /// [`World::database_text`] as bytes, for looking for binary secrets.
    pub async fn database_bytes(&self) -> Vec<u8> {
        database_bytes(&self.database_url).await
    }
}

/// [`World::database_text`] of any test database.
pub async fn database_text(url: &str) -> String {
    String::from_utf8_lossy(&database_bytes(url).await).into_owned()
}

async fn database_bytes(url: &str) -> Vec<u8> {
    match testkit::backend_of(url) {
        Backend::Sqlite => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                if let Ok(more) = std::fs::read(format!("{path}{suffix}")) {
                    bytes.extend(more);
                }
            }
            bytes
        }
        Backend::Postgres => testkit::pg_dump_schema(url).await.into_bytes(),
    }
}
