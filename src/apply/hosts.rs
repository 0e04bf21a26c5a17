//! The hosts of an apply: a connection is opened on a host's first use,
//! whatever stage that is, and opened again after it drops. No stage
//! depends on another having connected, so any subset of stages can run in
//! any later apply.

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::agent::wire::{AgentCall, AgentRequest, AgentResponse};
use crate::backend::host::{HostConnector, HostError, HostSession};
use crate::inventory::HostSettings;

pub struct HostPool {
    connector: Arc<dyn HostConnector>,
    hosts: Vec<HostSettings>,
    sessions: Vec<Mutex<Option<Arc<dyn HostSession>>>>,
}

impl HostPool {
    pub fn new(connector: Arc<dyn HostConnector>, hosts: &[HostSettings]) -> HostPool {
        HostPool {
            connector,
            hosts: hosts.to_vec(),
            sessions: hosts.iter().map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Sends one request to the agent of host `host`, connecting first if
    /// needed; a call that lost the connection makes the next one reconnect.
    pub async fn call(
        &self,
        host: usize,
        request: AgentRequest,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, HostError> {
        let session = self.session(host, cancel).await?;
        let result = session.call(&AgentCall::new(request), cancel).await;
        if let Err(error) = &result
            && error.drops_session()
        {
            let mut slot = self.sessions[host].lock().await;
            if slot
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &session))
            {
                *slot = None;
            }
        }
        result
    }

    async fn session(
        &self,
        host: usize,
        cancel: &CancellationToken,
    ) -> Result<Arc<dyn HostSession>, HostError> {
        let mut slot = self.sessions[host].lock().await;
        if let Some(session) = slot.as_ref() {
            return Ok(Arc::clone(session));
        }
        let session = tokio::select! {
            connected = self.connector.connect(&self.hosts[host]) => connected?,
            () = cancel.cancelled() => {
                return Err(HostError::Cancelled { host: self.hosts[host].name.clone() });
            }
        };
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }
}
