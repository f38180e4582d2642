//! The parts of an append both backends do alike: putting the batch in lock order, numbering
//! each stream's new events, and building the recorded events.

use chrono::SubsecRound;
use domain::{Metadata, StreamId, UserId};

use super::{AppendBatch, NewEvent, RecordedEvent, SideWrite, StoreError, StreamAppend};

/// An append, ready for a backend to write.
pub(super) struct PreparedAppend {
    /// The streams that have events, in batch order (the order their events get positions).
    pub streams: Vec<StreamAppend>,
    /// Indices into `streams`, sorted by stream id: the order in which stream rows are written,
    /// so that two appends touching the same streams cannot deadlock. The sort is stable, so a
    /// stream named twice is bumped in batch order.
    pub lock_order: Vec<usize>,
    /// Sorted by (kind, value) for the same reason; exact repeats removed.
    pub claims: Vec<ClaimRow>,
    pub release_claims_of: Option<UserId>,
    pub side_writes: Vec<SideWrite>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ClaimRow {
    pub kind: &'static str,
    pub value: String,
    pub owner: UserId,
}

impl PreparedAppend {
    pub fn new(batch: AppendBatch) -> Self {
        let streams: Vec<StreamAppend> = batch
            .streams
            .into_iter()
            .filter(|s| !s.events.is_empty())
            .collect();
        let mut lock_order: Vec<usize> = (0..streams.len()).collect();
        lock_order.sort_by(|&a, &b| streams[a].stream_id.cmp(&streams[b].stream_id));
        let mut claims: Vec<ClaimRow> = batch
            .claims
            .into_iter()
            .map(|(claim, owner)| ClaimRow {
                kind: claim.kind,
                value: claim.value,
                owner,
            })
            .collect();
        claims.sort();
        claims.dedup();
        Self {
            streams,
            lock_order,
            claims,
            release_claims_of: batch.release_claims_of,
            side_writes: batch.side_writes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.claims.is_empty() && self.side_writes.is_empty()
    }

    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }

    /// The stream named in a conflict the database reports without saying which stream.
    pub fn first_locked_stream(&self) -> Option<StreamId> {
        self.lock_order
            .first()
            .map(|&i| self.streams[i].stream_id.clone())
    }

    /// Each new event in batch order, with its stream and how many of that stream's new events
    /// come after it in this append (a stream named twice counts both occurrences): the
    /// backends number the event as the stream's new version minus that count.
    pub fn events_with_later(&self) -> impl Iterator<Item = (&StreamAppend, &NewEvent, i64)> {
        self.streams
            .iter()
            .enumerate()
            .flat_map(move |(i, stream)| {
                let later_occurrences: usize = self.streams[i + 1..]
                    .iter()
                    .filter(|s| s.stream_id == stream.stream_id)
                    .map(|s| s.events.len())
                    .sum();
                let n = stream.events.len();
                stream
                    .events
                    .iter()
                    .enumerate()
                    .map(move |(k, event)| (stream, event, (n - 1 - k + later_occurrences) as i64))
            })
    }

    /// The recorded events in batch order, numbered as the database numbered them: `written`
    /// holds each event's (position, stream version), in batch order.
    pub fn into_records(self, written: Vec<(i64, i64)>) -> Vec<RecordedEvent> {
        let mut first_versions = Vec::with_capacity(self.streams.len());
        let mut at = 0;
        for stream in &self.streams {
            first_versions.push(written.get(at).map_or(0, |&(_, version)| version));
            at += stream.events.len();
        }
        let mut events = Self::records(self.streams, &first_versions);
        for (event, (position, _)) in events.iter_mut().zip(written) {
            event.position = position;
        }
        events
    }

    /// The recorded events in batch order, given each stream's first new version (indexed like
    /// `streams`). Positions are left at 0. Times are cut to the microseconds both databases
    /// keep, so what `append` returns equals what is read back.
    fn records(streams: Vec<StreamAppend>, first_versions: &[i64]) -> Vec<RecordedEvent> {
        streams
            .into_iter()
            .zip(first_versions)
            .flat_map(|(stream, &first)| {
                let stream_id = stream.stream_id;
                stream
                    .events
                    .into_iter()
                    .zip(first..)
                    .map(move |(event, version)| RecordedEvent {
                        position: 0,
                        event_id: event.event_id,
                        stream_id: stream_id.clone(),
                        stream_version: version,
                        event_type: event.event_type,
                        schema_version: event.schema_version,
                        occurred_at: event.occurred_at.trunc_subsecs(6),
                        payload: event.payload,
                        metadata: event.metadata,
                    })
            })
            .collect()
    }
}

/// Brings a stored event to its type's current schema version (`domain::upcast`). Every event
/// a store hands out passes through here, read or just appended (after it was written as
/// given), so no reader ever sees an old payload shape.
pub(super) fn upcast(mut event: RecordedEvent) -> RecordedEvent {
    event.schema_version =
        domain::upcast::upcast(&event.event_type, event.schema_version, &mut event.payload);
    event
}

pub(super) fn metadata_to_json(metadata: &Metadata) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(metadata)
        .map_err(|e| StoreError::Corrupt(format!("metadata does not serialise: {e}")))
}

pub(super) fn schema_version_to_db(version: u32) -> Result<i32, StoreError> {
    i32::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("schema version {version} is out of range")))
}

pub(super) fn schema_version_from_db(version: i64) -> Result<u32, StoreError> {
    u32::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("schema version {version} is out of range")))
}
