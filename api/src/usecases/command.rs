//! The one way every write happens: load the aggregate, decide, append; when another writer
//! appended first (a version conflict), load and decide again on the new state. One retry
//! policy, one `tracing` span per command with its name, attempts and outcome.

use std::future::Future;

use infra::store::{AppendBatch, AppendError};
use tracing::Instrument;

use super::error::UseCaseError;
use super::services::Services;

/// Attempts before a command gives up with a conflict. Conflicts come from concurrent writers
/// of the same stream (a refresh racing a revocation, two first logins of one person); each
/// retry decides on the winner's events, so a handful always suffices in practice.
pub const MAX_ATTEMPTS: usize = 8;

/// What a command decided on the state it loaded.
pub enum Decision<T> {
    /// Nothing to record (the command's intent already holds): the answer as it stands.
    Unchanged(T),
    /// Record this batch; the answer once it is recorded.
    Append(AppendBatch, T),
}

/// A named command and how it treats a claim another writer took meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    name: &'static str,
    retry_taken_claims: bool,
}

impl Command {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            retry_taken_claims: false,
        }
    }

    /// A taken claim means a concurrent writer registered the same person (a first login on
    /// another instance): decide again, and find them. Otherwise it is a conflict.
    pub const fn retrying_taken_claims(mut self) -> Self {
        self.retry_taken_claims = true;
        self
    }

    /// Runs `decide` (load, then decide; given the attempt's number, from 1) and appends what
    /// it decided, deciding again after a conflict. Returns the answer.
    pub async fn execute<T, F, Fut>(self, state: &Services, decide: F) -> Result<T, UseCaseError>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<Decision<T>, UseCaseError>>,
    {
        Ok(self.execute_recorded(state, decide).await?.0)
    }

    /// [`Command::execute`], also returning the log position of the last event recorded
    /// (`None` when nothing was).
    pub async fn execute_recorded<T, F, Fut>(
        self,
        state: &Services,
        mut decide: F,
    ) -> Result<(T, Option<i64>), UseCaseError>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<Decision<T>, UseCaseError>>,
    {
        let span = tracing::info_span!(
            "command",
            command = self.name,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let run = async {
            for attempt in 1..=MAX_ATTEMPTS {
                tracing::Span::current().record("attempts", attempt);
                let (batch, answer) = match decide(attempt).await? {
                    Decision::Unchanged(answer) => return Ok((answer, None, "unchanged")),
                    Decision::Append(batch, answer) => (batch, answer),
                };
                match state.store.append(batch).await {
                    Ok(recorded) => {
                        let position = recorded.last().map(|e| e.position);
                        return Ok((answer, position, "recorded"));
                    }
                    Err(AppendError::VersionConflict(stream)) => {
                        tracing::debug!(%stream, "a concurrent writer won; deciding again");
                    }
                    Err(AppendError::ClaimTaken { kind }) if self.retry_taken_claims => {
                        tracing::debug!(kind, "a concurrent writer took the claim; deciding again");
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Err(UseCaseError::Conflict(
                "the record kept changing concurrently; retry".into(),
            ))
        };
        let result = run.instrument(span.clone()).await;
        let outcome = match &result {
            Ok((_, _, outcome)) => *outcome,
            Err(UseCaseError::Internal(_)) => "failed",
            Err(UseCaseError::Conflict(_)) => "conflict",
            Err(_) => "refused",
        };
        span.record("outcome", outcome);
        span.in_scope(|| tracing::debug!(outcome, "command finished"));
        result.map(|(answer, position, _)| (answer, position))
    }
}
