//! Wake-ups across instances. After appends commit, this instance announces them with one
//! `NOTIFY identity_events` at most every few milliseconds; a listener turns every
//! announcement (its own included) into a local wake-up.
//!
//! The NOTIFY is sent outside the append transaction on purpose: a NOTIFY inside it would take
//! PostgreSQL's global notify lock at commit and serialise every append.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use crate::store::signal::AppendSignal;

pub(super) const CHANNEL: &str = "identity_events";

/// Appends committed while one NOTIFY is sent, or during this pause after it, share the next.
const COALESCE: Duration = Duration::from_millis(5);
/// How long to wait before reconnecting a listener that failed.
const RETRY: Duration = Duration::from_secs(1);

/// The store's side: call `committed` after each append commits. Dropping it (with the store)
/// ends both background tasks.
pub(super) struct Notifier {
    local: watch::Sender<i64>,
}

impl Notifier {
    /// Spawns the announcing and the listening task (needs a Tokio runtime).
    pub fn start(pool: &PgPool, signal: &AppendSignal) -> Self {
        let (local, announcements) = watch::channel(0);
        let stop = local.subscribe();
        tokio::spawn(announce(pool.clone(), announcements));
        tokio::spawn(listen(pool.clone(), signal.clone(), stop));
        Self { local }
    }

    pub fn committed(&self, position: i64) {
        self.local
            .send_modify(|known| *known = (*known).max(position));
    }
}

async fn announce(pool: PgPool, mut appended: watch::Receiver<i64>) {
    while appended.changed().await.is_ok() {
        let position = *appended.borrow_and_update();
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(position.to_string())
            .execute(&pool)
            .await
        {
            // Other instances fall back to polling.
            tracing::debug!(error = %e, "cannot announce appended events");
        }
        tokio::time::sleep(COALESCE).await;
    }
}

/// What woke the listener up.
enum Wake {
    /// The store was dropped.
    Stop,
    /// Our own append (ignored here: the store already bumped the signal).
    Local,
    Notified(Result<sqlx::postgres::PgNotification, sqlx::Error>),
}

async fn listen(pool: PgPool, signal: AppendSignal, mut stop: watch::Receiver<i64>) {
    let mut listener: Option<PgListener> = None;
    loop {
        let Some(active) = listener.as_mut() else {
            match connect(&pool).await {
                Ok(l) => {
                    listener = Some(l);
                    // Announcements sent while we were not listening are lost: wake readers
                    // once so they look.
                    signal.bump(0);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot listen for appended events");
                    if wait_or_stop(&mut stop, RETRY).await {
                        return;
                    }
                }
            }
            continue;
        };
        let wake = tokio::select! {
            changed = stop.changed() => if changed.is_err() { Wake::Stop } else { Wake::Local },
            note = active.recv() => Wake::Notified(note),
        };
        match wake {
            Wake::Stop => return,
            Wake::Local => {}
            Wake::Notified(Ok(note)) => signal.bump(note.payload().parse().unwrap_or(0)),
            Wake::Notified(Err(e)) => {
                // The listener reconnects by itself on the next recv; what was announced in
                // between is lost, so wake readers anyway.
                tracing::debug!(error = %e, "listening for appended events failed");
                signal.bump(0);
                if wait_or_stop(&mut stop, RETRY).await {
                    return;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Sleeps for `pause`; true when the store was dropped meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<i64>, pause: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + pause;
    loop {
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { return true },
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
}
