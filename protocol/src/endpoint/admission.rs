//! Peer admission: which transport peers the endpoint speaks for. A peer is admitted once its
//! [`Hello`] chain verifies, its leaf key is the one the transport authenticated and its region
//! is in line with this node's (or it is the other party of a grant being delivered); until
//! then, and after it is refused, its frames are dropped. Keeping admitted peers' trust in
//! force afterwards is [`super::trust_in_force`]'s.

use std::fmt::Debug;

use backflow_topology::RegionCode;
use ed25519_dalek::VerifyingKey;

use super::{Endpoint, Event, Output, Peer, HELLO_MS_MAX, PEERS_MAX};
use crate::cert::CertError;
use crate::revocation_gossip::messages_for;
use crate::time::UnixMs;
use crate::wire::{Hello, Message};

/// What the transport proved about a peer before any frame: the ed25519 key its handshake
/// authenticated and its transport-level id (e.g. a libp2p peer id's bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAuth {
    pub key: [u8; 32],
    pub peer_id: Vec<u8>,
}

/// Why a peer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("certificate chain does not verify: {0}")]
    Chain(#[from] CertError),
    #[error("certificate for {region} belongs to another peer (key or peer id differ)")]
    WrongPeer { region: RegionCode },
    #[error("peer claims this node's own region {region}")]
    OwnRegion { region: RegionCode },
    #[error("region {region} is neither an ancestor nor a descendant of {me}")]
    NotInLine { region: RegionCode, me: RegionCode },
    #[error("too many peers (limit {max})")]
    TooManyPeers { max: usize },
    #[error("a hello arrived before the transport reported the connection")]
    NotConnected,
    #[error("no valid hello within {ms} ms of connecting")]
    HelloTimeout { ms: u64 },
}
/// The identity a transport authenticates for a key, as simnet and the tests model it: the
/// key itself and no separate peer id.
pub fn auth_of_key(key: &VerifyingKey) -> PeerAuth {
    PeerAuth {
        key: key.to_bytes(),
        peer_id: Vec::new(),
    }
}

impl<P: Copy + Ord + Debug> Endpoint<P> {
    /// A transport connection to `peer` is up and authenticated `auth`. The shell sends
    /// [`Self::hello`] on it; the peer is admitted when its own hello verifies.
    /// A peer not admitted within [`HELLO_MS_MAX`] is refused and disconnected.
    pub fn handle_connected(&mut self, now: UnixMs, peer: P, auth: PeerAuth) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= PEERS_MAX {
            self.refuse(peer, AdmissionError::TooManyPeers { max: PEERS_MAX });
            return;
        }
        match self.peers.get_mut(&peer) {
            // Another connection of the same transport identity: same key, same admission.
            Some(p) if p.auth == auth => {}
            Some(p) => {
                p.auth = auth;
                p.chain.clear();
                p.not_after = now.plus_ms(HELLO_MS_MAX);
                if let Some(r) = p.region.take() {
                    self.unmap(peer, r);
                }
            }
            None => {
                self.peers.insert(
                    peer,
                    Peer {
                        auth,
                        region: None,
                        chain: Vec::new(),
                        not_after: now.plus_ms(HELLO_MS_MAX),
                        by_grant: false,
                    },
                );
            }
        }
    }

    /// Every connection to `peer` is gone.
    pub fn handle_disconnected(&mut self, peer: P) {
        if let Some(Peer {
            region: Some(r), ..
        }) = self.peers.remove(&peer)
        {
            self.unmap(peer, r);
        }
    }
    pub(super) fn handle_hello(&mut self, now: UnixMs, peer: P, hello: Hello) {
        match self.admit(now, &peer, &hello) {
            Ok((region, not_after, by_grant)) => {
                let p = self.peers.get_mut(&peer).expect("admit checked the peer");
                p.chain = hello.chain;
                p.not_after = not_after;
                p.by_grant = by_grant;
                if let Some(old) = p.region.replace(region) {
                    if old != region {
                        self.unmap(peer, old);
                    }
                }
                self.by_region.insert(region, peer);
                self.rf.handle_peer_admitted(now, region);
                self.cs.handle_peer_admitted(now, region);
                self.out
                    .push_back(Output::Event(Event::PeerAdmitted { peer, region }));
                self.service.handle_connected(region);
                if by_grant {
                    return;
                }
                self.share.handle_reachable(region, true);
                self.search.handle_reachable(region, true);
                // What it may have missed while apart: every revocation in its line.
                for msg in messages_for(self.revocations.values(), region) {
                    self.out.push_back(Output::Send {
                        to: region,
                        peer: Some(peer),
                        msg: Message::Revocations(msg),
                    });
                }
            }
            Err(error) => self.refuse(peer, error),
        }
    }

    /// Verifies a peer's chain, its binding to the transport and its place in the tree.
    fn admit(
        &mut self,
        now: UnixMs,
        peer: &P,
        hello: &Hello,
    ) -> Result<(RegionCode, UnixMs, bool), AdmissionError> {
        let auth = &self
            .peers
            .get(peer)
            .ok_or(AdmissionError::NotConnected)?
            .auth;
        let id = self.trust.verify_chain(&hello.chain, now)?;
        let region = id.region;
        if id.key.to_bytes() != auth.key || (!id.peer_id.is_empty() && id.peer_id != auth.peer_id) {
            return Err(AdmissionError::WrongPeer { region });
        }
        let me = self.rf.region();
        if region == me {
            return Err(AdmissionError::OwnRegion { region });
        }
        if me.contains(region) || region.contains(me) {
            return Ok((region, id.not_after, false));
        }
        // Outside the tree only the other party of a grant being delivered (Art. 22).
        if self.is_delivery_peer(now, region) {
            return Ok((region, id.not_after, true));
        }
        Err(AdmissionError::NotInLine { region, me })
    }

    pub(super) fn refuse(&mut self, peer: P, error: AdmissionError) {
        if let Some(Peer {
            region: Some(r), ..
        }) = self.peers.remove(&peer)
        {
            self.unmap(peer, r);
        }
        self.out
            .push_back(Output::Event(Event::PeerRefused { peer, error }));
        self.out.push_back(Output::Disconnect { peer });
    }

    fn unmap(&mut self, peer: P, region: RegionCode) {
        if self.by_region.get(&region) == Some(&peer) {
            self.by_region.remove(&region);
            // (A region reaches the sharing service only on the tree; removing one that did
            // not is a no-op.)
            self.share.handle_reachable(region, false);
            self.search.handle_reachable(region, false);
        }
    }
}
