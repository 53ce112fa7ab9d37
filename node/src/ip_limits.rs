//! Per-IP bound on inbound connections (#15 item 5): one host cannot take every connection
//! slot by dialling with many fresh peer ids (each a free ed25519 key), because each is refused
//! before its handshake once its address holds [`INBOUND_CONNECTIONS_PER_IP_MAX`].
//!
//! libp2p's `connection_limits` (used beside this, in `net.rs`) bounds totals and per peer id,
//! not per address, and no maintained crate does; so this small behaviour counts inbound
//! connections (pending ones included) per remote IP and denies the excess at
//! `handle_pending_inbound_connection`, before any TLS or noise work. Outbound connections are
//! not counted: a node dials only the addresses in its own configuration.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure,
    NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Inbound connections one IP address may hold (pending or established). A parent's children
/// each dial from their own host; several nodes behind one NAT or on one machine (a test
/// network, `backflow demo`) stay far below this, while a flood from one host is cut off.
pub const INBOUND_CONNECTIONS_PER_IP_MAX: usize = 256;

/// Refused: too many inbound connections from this address.
#[derive(Debug)]
pub struct TooManyFromIp {
    pub ip: IpAddr,
    pub max: usize,
}

impl std::fmt::Display for TooManyFromIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} already holds {} inbound connections, the most one address may",
            self.ip, self.max
        )
    }
}

impl std::error::Error for TooManyFromIp {}

/// The counting, apart from libp2p's plumbing.
#[derive(Debug)]
pub struct IpCounts {
    max: usize,
    per_ip: HashMap<IpAddr, usize>,
    by_connection: HashMap<ConnectionId, IpAddr>,
}

impl IpCounts {
    pub fn new(max: usize) -> IpCounts {
        IpCounts {
            max,
            per_ip: HashMap::new(),
            by_connection: HashMap::new(),
        }
    }

    /// Counts a new inbound connection from `ip`, or refuses it.
    pub fn open(&mut self, id: ConnectionId, ip: IpAddr) -> Result<(), TooManyFromIp> {
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.max {
            return Err(TooManyFromIp { ip, max: self.max });
        }
        *n += 1;
        self.by_connection.insert(id, ip);
        Ok(())
    }

    /// A counted connection ended (closed, or failed before it was established).
    pub fn close(&mut self, id: ConnectionId) {
        let Some(ip) = self.by_connection.remove(&id) else {
            return;
        };
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    pub fn count(&self, ip: &IpAddr) -> usize {
        self.per_ip.get(ip).copied().unwrap_or(0)
    }
}

/// The remote IP of an address (`/ip4/…` or `/ip6/…` first), if it has one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The behaviour: [`IpCounts`] fed from the swarm.
pub struct Behaviour {
    counts: IpCounts,
}

impl Behaviour {
    pub fn new(max: usize) -> Behaviour {
        Behaviour {
            counts: IpCounts::new(max),
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        match ip_of(remote_addr) {
            Some(ip) => self
                .counts
                .open(connection_id, ip)
                .map_err(ConnectionDenied::new),
            None => Ok(()),
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.counts.close(connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_at_most_its_share_and_gets_it_back() {
        let mut c = IpCounts::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let id = |i: usize| ConnectionId::new_unchecked(i);
        assert!(c.open(id(1), a).is_ok());
        assert!(c.open(id(2), a).is_ok());
        let refused = c.open(id(3), a).unwrap_err();
        assert_eq!(refused.ip, a);
        assert!(refused.to_string().contains("10.0.0.1"));
        // Another address is not affected.
        assert!(c.open(id(4), b).is_ok());
        // A closed (or failed) connection gives its slot back; unknown ids change nothing.
        c.close(id(1));
        c.close(id(99));
        assert_eq!(c.count(&a), 1);
        assert!(c.open(id(5), a).is_ok());
        assert_eq!(c.count(&a), 2);
    }

    #[test]
    fn ip_of_reads_ip4_and_ip6_addresses() {
        let v4: Multiaddr = "/ip4/192.0.2.7/tcp/7400".parse().unwrap();
        let v6: Multiaddr = "/ip6/::1/udp/7400/quic-v1".parse().unwrap();
        assert_eq!(ip_of(&v4), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(ip_of(&v6), Some("::1".parse().unwrap()));
        let dns: Multiaddr = "/dns4/example.org/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&dns), None);
    }
}
