//! Wake-ups across instances. After appends commit, this instance announces them with one
//! `NOTIFY identity_events` at most every few milliseconds; a listener turns every
//! announcement (its own included) into a local wake-up.
//!
//! The NOTIFY is sent outside the append transaction on purpose: a NOTIFY inside it would take
//! PostgreSQL's global notify lock at commit and serialise every append.
//!
//! The listener has a one-connection pool of its own, and its `recv` is never cut short but by
//! the store's drop. sqlx's `PgListener` reconnects inside `recv`; cut short there, it hands
//! its new connection back to the pool it came from, subscribed (or about to be), without the
//! buffer that takes announcements: a connection of the store's pool in that state failed the
//! next append on it ("unexpected message: NotificationResponse", or "expected ParseComplete,
//! got NotificationResponse"), after a server restart or a killed listener, when every local
//! commit cut the reconnect short. The pool costs the server one connection per instance on
//! top of the store's.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::{oneshot, watch};

use crate::store::signal::AppendSignal;

pub(super) const CHANNEL: &str = "identity_events";

/// Appends committed while one NOTIFY is sent, or during this pause after it, share the next.
const COALESCE: Duration = Duration::from_millis(5);
/// How long to wait before reconnecting a listener that failed.
const RETRY: Duration = Duration::from_secs(1);
/// How long the listener waits for its connection; a server that does not answer sooner is
/// tried again after `RETRY`.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// The store's side: call `committed` after each append commits. Dropping it (with the store)
/// ends both background tasks.
pub(super) struct Notifier {
    local: watch::Sender<i64>,
    /// Dropped with the store: ends the listener.
    _stop: oneshot::Sender<()>,
}

impl Notifier {
    /// Spawns the announcing and the listening task (needs a Tokio runtime).
    pub fn start(pool: &PgPool, signal: &AppendSignal) -> Self {
        let (local, announcements) = watch::channel(0);
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(announce(pool.clone(), announcements));
        tokio::spawn(listen(listener_pool(pool), signal.clone(), stopped));
        Self { local, _stop: stop }
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

/// A pool of one connection to the store's database, opened when first needed, that only the
/// listener uses (see the module's doc).
fn listener_pool(store: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_WITHIN)
        .connect_lazy_with((*store.connect_options()).clone())
}

/// Turns announcements (our own included) into wake-ups until `stop` is dropped.
async fn listen(pool: PgPool, signal: AppendSignal, mut stop: oneshot::Receiver<()>) {
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
        let note = tokio::select! {
            _ = &mut stop => return,
            note = active.recv() => note,
        };
        match note {
            Ok(note) => signal.bump(note.payload().parse().unwrap_or(0)),
            Err(e) => {
                // sqlx reconnects by itself only after some I/O errors and keeps the connection
                // after others: start over with a new listener. What was announced in between
                // is lost, so wake readers anyway.
                tracing::debug!(error = %e, "listening for appended events failed");
                listener = None;
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
async fn wait_or_stop(stop: &mut oneshot::Receiver<()>, pause: Duration) -> bool {
    tokio::select! {
        _ = stop => true,
        () = tokio::time::sleep(pause) => false,
    }
}
