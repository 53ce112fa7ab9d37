//! Circuit relay for deliveries of granted data (Art. 22 共享数据交付) between nodes that have
//! no direct route to each other — two provinces' data centres on private networks, say, that
//! both reach national. libp2p's circuit relay v2 (`libp2p-relay`, the protocol's reference
//! implementation, not hand-written here) forwards the bytes of one connection through a third
//! node; the connection's TLS 1.3 (or noise) runs end to end between the two parties inside
//! the circuit, so the relay forwards ciphertext and can read nothing.
//!
//! How the tree uses it:
//! - Every node names the addresses it listens on as its external addresses
//!   (`net::listen_addr_added`): a relay hands those to the nodes reserving there, and
//!   libp2p refuses reservations while a relay has none.
//! - Every node keeps a reservation (预约) at each of its upstream nodes once it has admitted
//!   them (`Runtime::reserve_relays`, in [`crate::relay_events`]). Its relayed address
//!   (`<upstream address>/p2p/<upstream>/p2p-circuit/p2p/<this node>`) is then among the
//!   addresses it lists when it starts a delivery (`Runtime::delivery_addresses`), after its
//!   direct ones.
//! - A requester dials every listed address at once (libp2p's concurrent dial). Where no
//!   direct address answers, the circuit does: through a connection the requester already
//!   holds when the relay is its own parent too (their common ancestor: two provinces under
//!   national, two counties under one city), or one it opens to the relay's address.
//! - Who may use a node as a relay is decided by its endpoint's admission, not by the relay
//!   protocol: reservations only from admitted peers below this node (its children and, in a
//!   skip-level fallback, their descendants), circuits only from admitted peers
//!   ([`RelayAdmission`]). A stranger is refused before any byte is forwarded. And the party
//!   dialled still admits the connection only under a grant, as it does a direct one.
//!
//! Limits: single hop (libp2p relays one hop; two parties whose only common ancestor is above
//! both parents need one direct path), and every count and duration below is bounded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backflow_topology::RegionCode;
use libp2p::multiaddr::Protocol;
use libp2p::relay;
use libp2p::{Multiaddr, PeerId};

/// Reservations this node holds for others at once: its children (a county has at most a few
/// hundred townships) and, in a skip-level fallback, some of their descendants.
pub const RELAY_RESERVATIONS_MAX: usize = 2_048;
/// Reservations one peer may hold here (one per connection it keeps to this node).
pub const RELAY_RESERVATIONS_PER_PEER_MAX: usize = 4;
/// A reservation lasts this long; the reserving node renews it before it ends.
pub const RELAY_RESERVATION_DURATION_MS: u64 = 60 * 60 * 1000;
/// Circuits through this node at once, and per source peer. A delivery uses one circuit.
pub const RELAY_CIRCUITS_MAX: usize = 64;
pub const RELAY_CIRCUITS_PER_PEER_MAX: usize = 8;
/// One circuit is closed after this long or this many bytes each way; the requester then
/// dials again and resumes (the groups it verified are kept), so a long delivery goes on
/// while no circuit can hold the relay's bandwidth forever. libp2p's defaults (2 min,
/// 128 KiB) are sized for a hole-punching handshake, not for data.
pub const RELAY_CIRCUIT_DURATION_MS_MAX: u64 = 4 * 60 * 60 * 1000;
pub const RELAY_CIRCUIT_BYTES_MAX: u64 = 64 << 30;

/// Which peers may reserve at or relay through this node: the endpoint's admission, shared
/// with the relay behaviour (which asks synchronously, inside the swarm's poll).
#[derive(Clone, Default)]
pub struct RelayAdmission {
    inner: Arc<Mutex<Admitted>>,
}

#[derive(Default)]
struct Admitted {
    /// Admitted peers below this node: may reserve.
    below: HashSet<PeerId>,
    /// Every admitted peer: may open circuits.
    any: HashSet<PeerId>,
}

impl RelayAdmission {
    /// The endpoint admitted `peer` as `region`; `me` is this node's region.
    pub fn admit(&self, me: RegionCode, peer: PeerId, region: RegionCode) {
        let mut a = self.lock();
        a.any.insert(peer);
        if region != me && me.contains(region) {
            a.below.insert(peer);
        } else {
            a.below.remove(&peer);
        }
    }

    /// `peer` is no longer admitted (refused, revoked or gone).
    pub fn remove(&self, peer: &PeerId) {
        let mut a = self.lock();
        a.any.remove(peer);
        a.below.remove(peer);
    }

    pub fn may_reserve(&self, peer: &PeerId) -> bool {
        self.lock().below.contains(peer)
    }

    pub fn may_open_circuit(&self, peer: &PeerId) -> bool {
        self.lock().any.contains(peer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admitted> {
        // A panic while holding this lock leaves two sets of peer ids, always consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// libp2p-relay's hook for admission: it calls its "rate limiters" for every reservation and
/// circuit request, and refuses when one says no.
struct Gate {
    admission: RelayAdmission,
    reservation: bool,
}

impl relay::RateLimiter for Gate {
    fn try_next(&mut self, peer: PeerId, _addr: &Multiaddr, _now: Instant) -> bool {
        if self.reservation {
            self.admission.may_reserve(&peer)
        } else {
            self.admission.may_open_circuit(&peer)
        }
    }
}

/// The relay server's configuration: libp2p's per-peer and per-IP rate limits kept, ours
/// added before them, and every limit above.
pub fn server_config(admission: &RelayAdmission) -> relay::Config {
    let mut cfg = relay::Config {
        max_reservations: RELAY_RESERVATIONS_MAX,
        max_reservations_per_peer: RELAY_RESERVATIONS_PER_PEER_MAX,
        reservation_duration: Duration::from_millis(RELAY_RESERVATION_DURATION_MS),
        max_circuits: RELAY_CIRCUITS_MAX,
        max_circuits_per_peer: RELAY_CIRCUITS_PER_PEER_MAX,
        max_circuit_duration: Duration::from_millis(RELAY_CIRCUIT_DURATION_MS_MAX),
        max_circuit_bytes: RELAY_CIRCUIT_BYTES_MAX,
        ..relay::Config::default()
    };
    cfg.reservation_rate_limiters.insert(
        0,
        Box::new(Gate {
            admission: admission.clone(),
            reservation: true,
        }),
    );
    cfg.circuit_src_rate_limiters.insert(
        0,
        Box::new(Gate {
            admission: admission.clone(),
            reservation: false,
        }),
    );
    cfg
}

/// Whether `addr` goes through a relay.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The event loop's relay state: who may use this node as a relay, and this node's own
/// reservations at its upstream nodes (the listener of each, by relay).
#[derive(Default)]
pub struct RelayState {
    pub admission: RelayAdmission,
    pub(crate) listeners: HashMap<PeerId, libp2p::core::transport::ListenerId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    #[test]
    fn only_admitted_peers_below_may_reserve_and_only_admitted_ones_relay() {
        let me = RegionCode::parse("44").unwrap();
        let a = RelayAdmission::default();
        let (child, parent, sibling, stranger) = (peer(), peer(), peer(), peer());
        a.admit(me, child, RegionCode::parse("4419").unwrap());
        a.admit(me, parent, RegionCode::parse("0").unwrap());
        a.admit(me, sibling, RegionCode::parse("11").unwrap());
        assert!(a.may_reserve(&child));
        assert!(!a.may_reserve(&parent));
        assert!(!a.may_reserve(&sibling));
        assert!(!a.may_reserve(&stranger));
        for p in [child, parent, sibling] {
            assert!(a.may_open_circuit(&p));
        }
        assert!(!a.may_open_circuit(&stranger));
        a.remove(&child);
        assert!(!a.may_reserve(&child) && !a.may_open_circuit(&child));
        // Admitted again under another region (a rotated key's new certificate): re-judged.
        a.admit(me, sibling, RegionCode::parse("4401").unwrap());
        assert!(a.may_reserve(&sibling));
    }

    #[test]
    fn the_gate_asks_admission_for_each_kind_of_request() {
        use relay::RateLimiter;
        let me = RegionCode::parse("0").unwrap();
        let a = RelayAdmission::default();
        let child = peer();
        let addr: Multiaddr = "/ip4/10.0.0.2/tcp/7000".parse().unwrap();
        let cfg = server_config(&a);
        assert_eq!(cfg.max_circuit_bytes, RELAY_CIRCUIT_BYTES_MAX);
        let mut reserve = Gate {
            admission: a.clone(),
            reservation: true,
        };
        let mut circuit = Gate {
            admission: a.clone(),
            reservation: false,
        };
        assert!(!reserve.try_next(child, &addr, Instant::now()));
        assert!(!circuit.try_next(child, &addr, Instant::now()));
        a.admit(me, child, RegionCode::parse("44").unwrap());
        assert!(reserve.try_next(child, &addr, Instant::now()));
        assert!(circuit.try_next(child, &addr, Instant::now()));
    }

    #[test]
    fn relayed_addresses_are_told_apart() {
        let direct: Multiaddr = "/ip4/10.0.0.2/tcp/7000".parse().unwrap();
        let relayed = direct
            .clone()
            .with(Protocol::P2p(peer()))
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(peer()));
        assert!(!is_relayed(&direct));
        assert!(is_relayed(&relayed));
    }
}
