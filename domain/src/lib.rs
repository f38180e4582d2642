//! The identity domain: value types, events and aggregates. Pure: no IO, no async, no clock.
//!
//! Aggregates follow the decide/evolve shape: `decide_*` turns a command and the current state
//! into events (or a refusal), `evolve` folds an event into the state, `replay` folds a stream.

pub mod device;
pub mod envelope;
pub mod event_facts;
pub mod event_schema;
pub mod events;
pub mod ids;
pub mod personal;
pub mod profile;
pub mod recorded;
pub mod session;
pub mod upcast;
pub mod user;

pub use device::Device;
pub use envelope::{Actor, Metadata};
pub use events::{
    AppEvent, Authorization, DomainEvent, RejectionReason, RevocationReason, SealedPersonalData,
    SessionEvent, UnionIdSource, UserEvent,
};
pub use ids::{
    AppId, AvatarId, EventId, InvalidValue, OpenId, SessionId, StreamId, UnionId, UserId,
    WeChatCode, MAX_WECHAT_ID_LEN,
};
pub use recorded::Recorded;
pub use session::{Session, SessionError, SessionLifetime};
pub use user::{Claim, RecordWeChatLogin, User, UserError};
