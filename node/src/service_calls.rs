//! The event loop's part in service interfaces (服务接口, Art. 22): a department of this node
//! calls a grant's service (the protocol sends the call straight to the provider's node,
//! dialled at once if not connected), and the calls this node answers as a provider are
//! looked up in its store ([`crate::service_store`]) on the blocking pool and come back as
//! [`Work::ServiceAnswered`]. The grant checks, the rate and the counts are the protocol's
//! (`backflow_protocol::service_interface`).

use anyhow::{anyhow, Result};
use backflow_protocol::manifest::Hash;
use backflow_protocol::service_interface::{LookupRefusal, ServiceEvent};

use tracing::{info, warn};

use crate::clock::now_ms;
use crate::dataplane::Work;
use crate::handle::LookupReply;
use crate::runtime::Runtime;
use crate::share_api::ShareView;

impl Runtime {
    /// A service interface this node provides loses its loaded data once the sharing has
    /// ended (terminated, disposed of, past its term, Art. 27); the case keeps the record.
    pub(crate) fn drop_ended_service(
        &mut self,
        request: &Hash,
        state: backflow_protocol::share::ShareState,
    ) {
        use backflow_protocol::share::ShareState as S;
        if !matches!(state, S::Terminated | S::Disposed | S::Expired) {
            return;
        }
        let me = self.ep.region();
        let provides = self
            .ep
            .share_service()
            .case(request)
            .is_some_and(|c| c.request.provider.region == me);
        if !provides {
            return;
        }
        match crate::service_store::drop_service(&self.store, request) {
            Ok(Some(records)) => {
                info!(request = %hex::encode(&request[..8]), records, "the sharing ended: the service interface's loaded data is deleted")
            }
            Ok(None) => {}
            Err(e) => {
                warn!(request = %hex::encode(&request[..8]), error = %format!("{e:#}"), "the loaded data of an ended service interface was not deleted")
            }
        }
    }

    /// This node's `department` calls the service interface of request `id`: the reply comes
    /// with the answer or a refusal.
    pub(crate) fn call_service(
        &mut self,
        department: &str,
        id: &str,
        keys: Vec<String>,
        reply: LookupReply,
    ) {
        let request = match crate::share_api::request_id(&self.ep, id) {
            Ok(r) => r,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        match self.ep.call_service(now_ms(), department, &request, keys) {
            Ok(call) => {
                self.service_calls.insert(call, reply);
                self.drain();
                // Waiting for the provider's node: dial it now, not at the next redial beat.
                self.dial_deliveries();
            }
            Err(refusal) => {
                let _ = reply.send(Err(anyhow!("{refusal}")));
            }
        }
    }

    /// The provider's `department` opens the service of `request`, its data loaded and
    /// synced: the start is signed, persisted and sent; the case is delivered.
    pub(crate) fn open_service(&mut self, department: &str, request: &Hash) -> Result<ShareView> {
        let now = now_ms();
        let addresses = self.delivery_addresses();
        self.ep
            .open_service(now, request, department, addresses)
            .map_err(|e| anyhow!("the service interface was not opened: {e}"))?;
        // Durable before the department hears it is open.
        self.drain();
        self.make_durable();
        crate::share_api::show(&self.ep, now, &hex::encode(request))
    }

    pub(crate) fn on_service_event(&mut self, ev: ServiceEvent) {
        match ev {
            ServiceEvent::Asked { id, request, keys } => {
                let store = self.store.clone();
                let work = self.data.work.clone();
                tokio::task::spawn_blocking(move || {
                    let result = crate::service_store::lookup(&store, &request, &keys)
                        .map_err(|e| LookupRefusal::Failed(format!("{e:#}")));
                    let _ = work.blocking_send(Work::ServiceAnswered { id, result });
                });
            }
            ServiceEvent::Answered { id, result } => {
                if let Some(reply) = self.service_calls.remove(&id) {
                    let _ = reply.send(result.map_err(|refusal| anyhow!("{refusal}")));
                }
            }
        }
    }
}
