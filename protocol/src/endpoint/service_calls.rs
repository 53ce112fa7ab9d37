//! A grant's service interface (服务接口, Art. 22) through the endpoint, which holds the share
//! cases the calls are checked against ([`crate::service_interface`] keeps the calls, the
//! rate and the counts): the provider's department opens it, the requester's department
//! calls it, and the provider's node answers only the grant's requester region, only while
//! the grant is open as a service and within its term of use (使用时限).

use super::grant_delivery::DeliveryFailure;
use super::Endpoint;
use crate::catalog::SharingMethod;
use crate::manifest::Hash;
use crate::service_interface::{
    LookupAnswer, LookupQuery, LookupRefusal, ServiceMsg, ServiceUsage,
};
use crate::share::{DeliveryRoute, ShareAct, ShareCase, ShareState};
use crate::time::UnixMs;
use backflow_topology::RegionCode;

/// Whether `case` is a service interface open for calls at `now`.
fn service_open(case: &ShareCase, now: UnixMs) -> Result<(), LookupRefusal> {
    match case.state {
        ShareState::Suspended => return Err(LookupRefusal::Suspended),
        ShareState::Terminated | ShareState::Disposed => return Err(LookupRefusal::Ended),
        _ => {}
    }
    let open = case.request.method == SharingMethod::ServiceApi
        && case.state == ShareState::Delivered
        && case.delivery.is_some();
    if !open {
        return Err(LookupRefusal::NotGranted);
    }
    if now >= case.request.use_until {
        return Err(LookupRefusal::Expired);
    }
    Ok(())
}

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// The provider's `department` opens the service interface of `request` (granted, by
    /// 服务接口) once its data is loaded where the shell answers calls: the start, naming
    /// `addresses` (where the requester's node calls), is signed and sent to the requester;
    /// the case is delivered.
    pub fn open_service(
        &mut self,
        now: UnixMs,
        request: &Hash,
        department: &str,
        addresses: Vec<String>,
    ) -> Result<(), DeliveryFailure> {
        let short: String = request.iter().take(4).map(|b| format!("{b:02x}")).collect();
        let case = self
            .share
            .case(request)
            .ok_or_else(|| DeliveryFailure::UnknownRequest(short.clone()))?;
        if case.request.provider.region != self.region() {
            return Err(DeliveryFailure::NotTheProvider(short));
        }
        if case.state != ShareState::Granted {
            return Err(DeliveryFailure::NotGranted {
                request: short,
                state: case.state,
            });
        }
        let route = DeliveryRoute {
            manifest: None,
            addresses,
        };
        let identity = self.rf.identity();
        let act = ShareAct::StartDelivery { route: Some(route) };
        self.share.act(now, identity, request, department, act)?;
        Ok(())
    }

    /// This node's `department` calls the service interface of `request` (its grant) with
    /// `keys`: the answer comes as [`crate::service_interface::ServiceEvent::Answered`] with
    /// the returned id. The provider's node is dialled if not connected
    /// ([`Self::delivery_dials`]).
    pub fn call_service(
        &mut self,
        now: UnixMs,
        department: &str,
        request: &Hash,
        keys: Vec<String>,
    ) -> Result<u64, LookupRefusal> {
        let case = self.share.case(request).ok_or(LookupRefusal::NotGranted)?;
        let r = &case.request;
        if r.requester.region != self.region() || r.requester.department != department {
            return Err(LookupRefusal::NotTheRequester);
        }
        service_open(case, now)?;
        self.rights_open(case)?;
        let provider = r.provider.region;
        let connected = self.peer_of(provider).is_some();
        let query = LookupQuery {
            request: *request,
            keys,
        };
        self.service.call(now, provider, connected, query)
    }

    /// The shell's store answered the lookup `id` it was asked for.
    pub fn answer_service_call(
        &mut self,
        now: UnixMs,
        id: u64,
        result: Result<LookupAnswer, LookupRefusal>,
    ) {
        self.service.answer(now, id, result);
    }

    /// Whether the grant's requester may call: its sharing rights not suspended (Art. 27 ¶2).
    fn rights_open(&self, case: &ShareCase) -> Result<(), LookupRefusal> {
        if self.share.ended_by_authority(case).is_some() {
            return Err(LookupRefusal::Ended);
        }
        match self.share.rights().suspension(&case.request.requester) {
            Some(s) => Err(LookupRefusal::RightsSuspended { by: s.body.issuer }),
            None => Ok(()),
        }
    }

    /// The calls of a grant this node provides, counted.
    pub fn service_usage(&self, request: &Hash) -> Option<&ServiceUsage> {
        self.service.usage(request)
    }

    pub(super) fn handle_service_message(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        msg: ServiceMsg,
    ) {
        match msg {
            ServiceMsg::Lookup { id, query } => {
                let checked = match self.share.case(&query.request) {
                    None => Err(LookupRefusal::NotGranted),
                    Some(c) if c.request.provider.region != self.region() => {
                        Err(LookupRefusal::NotGranted)
                    }
                    // Only the grant's requester node: the connection is authenticated as
                    // its region.
                    Some(c) if c.request.requester.region != from => {
                        Err(LookupRefusal::NotTheRequester)
                    }
                    Some(c) => service_open(c, now).and_then(|()| self.rights_open(c)),
                };
                self.service.handle_lookup(now, from, id, query, checked);
            }
            ServiceMsg::Answer { id, result } => self.service.handle_answer(from, id, result),
        }
    }
}
