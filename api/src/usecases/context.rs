//! Who asks, from where, and in which request: what a command writes into its events'
//! metadata. Built by the caller (the HTTP layer, a CLI), known to no transport.

use std::net::IpAddr;

use domain::{Actor, AppId, Metadata};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Context {
    /// Who the events are recorded as caused by.
    pub actor: Actor,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The request that started the chain of events.
    pub correlation_id: Uuid,
}

impl Context {
    /// The same request, acting as `actor` (a login acts as the user it logs in).
    pub fn acting_as(&self, actor: Actor) -> Self {
        Self {
            actor,
            ..self.clone()
        }
    }

    /// Metadata for the events this context records, in `appid`'s app if any.
    pub fn metadata(&self, appid: Option<&AppId>) -> Metadata {
        Metadata {
            actor: self.actor.clone(),
            appid: appid.cloned(),
            client_ip: self.client_ip.map(|ip| ip.to_string()),
            user_agent: self.user_agent.clone(),
            correlation_id: self.correlation_id,
            causation_id: None,
        }
    }
}
