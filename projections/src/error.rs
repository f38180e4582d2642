use infra::store::StoreError;

/// What can go wrong reading or building the read models.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A page cursor that we did not issue (or that was altered): the API answers 400.
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("unknown projection {0:?}")]
    UnknownProjection(String),
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("the projections did not catch up in time")]
    Timeout,
    #[error("read model data is malformed: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// A rebuild's background read ended abnormally (panicked, or the runtime is stopping).
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
}
