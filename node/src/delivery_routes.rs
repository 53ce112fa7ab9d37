//! Where a grant's delivery connects (Art. 22): the addresses a provider's node lists in its
//! signed start — direct ones first, then relayed ones through its upstream nodes
//! ([`crate::relay`]) — and the dials a requester's node makes to every provider whose data
//! it still fetches.

use std::collections::HashMap;

use backflow_protocol::share::{DELIVERY_ADDRESSES_MAX, DELIVERY_ADDRESS_BYTES_MAX};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use tracing::debug;

use crate::clock::now_ms;
use crate::net::{is_loopback, is_unspecified};
use crate::runtime::Runtime;

impl Runtime {
    /// Providers whose granted data this node fetches (Art. 22) and is not connected to:
    /// dialled directly, at the addresses their signed start named, each only under its own
    /// peer id.
    pub(crate) fn dial_deliveries(&mut self) {
        for d in self.ep.delivery_dials(now_ms()) {
            let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
            for a in &d.addresses {
                let Ok(addr) = a.parse::<Multiaddr>() else {
                    continue;
                };
                if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                    by_peer.entry(peer).or_default().push(addr);
                }
            }
            for (peer, addrs) in by_peer {
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(region = %d.region, error = %e, "delivery dial failed");
                }
            }
        }
    }

    /// Where a requester's node connects to fetch a delivery from this node: the addresses
    /// this node listens on (each naming its peer id), direct ones first, at most
    /// [`DELIVERY_ADDRESSES_MAX`].
    pub(crate) fn delivery_addresses(&self) -> Vec<String> {
        let me = *self.swarm.local_peer_id();
        let mut addrs: Vec<Multiaddr> = self
            .swarm
            .external_addresses()
            .chain(self.swarm.listeners())
            .filter(|a| !is_unspecified(a))
            .cloned()
            .collect();
        // Loopback only where it is all there is (nodes on one host): elsewhere it names the
        // requester's own host, whose node would answer the dial instead.
        if addrs.iter().any(|a| !is_loopback(a)) {
            addrs.retain(|a| !is_loopback(a));
        }
        // Each once (a listen address is an external one too), direct addresses first,
        // relayed ones ([`crate::relay`]) after them.
        let mut seen = std::collections::HashSet::new();
        addrs.retain(|a| seen.insert(a.clone()));
        addrs.sort_by_key(crate::relay::is_relayed);
        addrs
            .into_iter()
            .map(|a| a.with_p2p(me).unwrap_or_else(|a| a).to_string())
            .filter(|a| a.len() <= DELIVERY_ADDRESS_BYTES_MAX)
            .take(DELIVERY_ADDRESSES_MAX)
            .collect()
    }
}
