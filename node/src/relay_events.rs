//! The event loop's part in circuit relay ([`crate::relay`]): keeping this node's
//! reservations at its upstream nodes, and logging what the relay server and client report.

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::relay;
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, info, warn};

use crate::runtime::Runtime;

impl Runtime {
    /// Keeps a reservation at every admitted upstream node (at most one listener each);
    /// called when an upstream node is admitted and on the redial beat.
    pub(crate) fn reserve_relays(&mut self) {
        let me = self.ep.region();
        let wanted: Vec<(Multiaddr, PeerId)> = self
            .upstream
            .iter()
            .filter_map(|(addr, peer)| Some((addr.clone(), (*peer)?)))
            .filter(|(_, peer)| {
                self.swarm.is_connected(peer)
                    && self
                        .ep
                        .region_of(peer)
                        .is_some_and(|r| crate::handle::is_upstream(me, r))
                    && !self.relay.listeners.contains_key(peer)
            })
            .collect();
        for (addr, relay) in wanted {
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    debug!(%circuit, "reserving at the upstream relay");
                    self.relay.listeners.insert(relay, id);
                }
                Err(e) => warn!(%circuit, error = %e, "cannot listen through the upstream relay"),
            }
        }
    }

    /// A listener closed: if it was a reservation, it is made again at the next beat (while
    /// the relay is still connected and admitted).
    pub(crate) fn relay_listener_closed(&mut self, id: ListenerId) {
        self.relay.listeners.retain(|relay, l| {
            let gone = *l == id;
            if gone {
                debug!(%relay, "reservation at the upstream relay ended");
            }
            !gone
        });
    }

    pub(crate) fn on_relay_server(&mut self, ev: relay::Event) {
        match ev {
            relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed: false,
            } => debug!(peer = %src_peer_id, "relay reservation accepted"),
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                debug!(peer = %src_peer_id, "relay reservation refused")
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => info!(src = %src_peer_id, dst = %dst_peer_id, "relaying a circuit"),
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                ..
            } => debug!(src = %src_peer_id, dst = %dst_peer_id, "relay circuit refused"),
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => {
                debug!(src = %src_peer_id, dst = %dst_peer_id, error = ?error, "relayed circuit closed")
            }
            other => debug!(event = ?other, "relay"),
        }
    }

    pub(crate) fn on_relay_client(&mut self, ev: relay::client::Event) {
        match ev {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            } => info!(relay = %relay_peer_id, "reachable through the upstream relay"),
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                info!(relay = %relay_peer_id, "connected through a relay")
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                info!(src = %src_peer_id, "a peer connected through the upstream relay")
            }
            other => debug!(event = ?other, "relay client"),
        }
    }
}
