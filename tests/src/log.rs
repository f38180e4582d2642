//! Looks past the API: the event log and the database as an operator (or a thief) sees them.

use std::sync::Arc;

use infra::store::RecordedEvent;

use crate::{Backend, World};

impl World {
    /// The event store on the world's database (one pool for the whole test).
    pub async fn store(&self) -> Arc<dyn infra::store::Store> {
        let store = self.store.get_or_init(|| async {
            infra::store::connect(&self.database_url)
                .await
                .expect("open store")
        });
        store.await.clone()
    }

    /// Every event committed so far, in log order.
    pub async fn log(&self) -> Vec<RecordedEvent> {
        testkit::whole_log(self.store().await.as_ref(), &self.database_url).await
    }

    /// The events of the log of one type.
    pub async fn events_of_type(&self, event_type: &str) -> Vec<RecordedEvent> {
        let mut log = self.log().await;
        log.retain(|e| e.event_type == event_type);
        log
    }

    /// Everything the database holds, as text: the SQLite files (the store's and the read
    /// models', each with its WAL and shared memory), or a `pg_dump` of the PostgreSQL schema.
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
            let mut bytes = Vec::new();
            // The event store's file and the read models' beside it.
            for url in [
                url.to_owned(),
                infra::database_url::sqlite_read_models_url(url),
            ] {
                let path = infra::database_url::sqlite_file(&url).expect("a SQLite URL");
                // Both files exist once the service ran; the WAL and shared memory may not.
                bytes.extend(std::fs::read(&path).expect("the database file"));
                for suffix in ["-wal", "-shm"] {
                    if let Ok(more) = std::fs::read(format!("{}{suffix}", path.display())) {
                        bytes.extend(more);
                    }
                }
            }
            bytes
        }
        Backend::Postgres => testkit::pg_dump_schema(url).await.into_bytes(),
    }
}
