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
    /// The live daily stats were built in another zone: this instance must not add to them.
    #[error(
        "the daily stats are built in the time zone {recorded}, and this instance's \
         IDENTITY_STATS_TIMEZONE is {ours}: restart it with {recorded}, or restart every \
         instance with {ours} (the first one rebuilds the stats)"
    )]
    StatsZoneChanged { recorded: String, ours: String },
    /// A live instance sharing the database counts days in another zone.
    #[error(
        "another running instance on this database has IDENTITY_STATS_TIMEZONE={theirs}, this \
         one {ours}: all instances must use one zone. To change it, stop the others first (an \
         instance that died is forgotten 30 s after its last sign of life)"
    )]
    StatsZoneInUse { theirs: String, ours: String },
    /// An older version still runs on the SQLite file whose read models this one would move.
    #[error(
        "an older identityd still runs on this SQLite file (it kept the read models inside it, \
         and announced itself less than 30 s ago): stop it first; this version moves the read \
         models to a file of their own"
    )]
    OlderVersionRunning,
    /// A rebuild's background read ended abnormally (panicked, or the runtime is stopping).
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
}
