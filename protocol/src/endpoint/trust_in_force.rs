//! Trust in force on a running endpoint: revocations learned (issued here, handed in, or
//! heard from a peer), persisted and passed on along the revoked region's line
//! ([`crate::revocation_gossip`]), and admitted peers' chains checked again on every
//! revocation and at their deadlines. Admission at connect time stays in `endpoint.rs`.

use ed25519_dalek::VerifyingKey;

use super::{AdmissionError, Endpoint, Event, Output, RevokeError, Storage, HELLO_MS_MAX};
use crate::cert::{CertChain, CertError, Revocation};
use crate::revocation_gossip::{in_line, RevocationMsg};
use crate::time::UnixMs;
use crate::wire::Message;
use crate::RegionCode;

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// Accepts a revocation if it is new and verifies: persist it, pass it on to every
    /// admitted peer in line with its subject (but the one it came from), and re-check every
    /// admitted peer. Returns whether it was new.
    pub(super) fn learn_revocation(
        &mut self,
        now: UnixMs,
        r: &Revocation,
        from: Option<RegionCode>,
    ) -> Result<bool, CertError> {
        if self.trust.is_revoked(&r.key) {
            // Known (also: revoked by a rotation certificate); keep the signed form if new
            // here, for peers that have not heard of it.
            if !self.revocations.contains_key(r.key.as_bytes()) && from.is_none() {
                self.revocations.insert(r.key.to_bytes(), r.clone());
                self.out
                    .push_back(Output::Storage(Storage::Revocation(r.clone())));
            }
            return Ok(false);
        }
        if let Err(error) = self.trust.apply_revocation(r, now) {
            if let Some(from) = from {
                self.out.push_back(Output::Event(Event::RevocationRejected {
                    from,
                    subject: r.subject,
                    error: error.clone(),
                }));
            }
            return Err(error);
        }
        self.revocations.insert(r.key.to_bytes(), r.clone());
        self.out
            .push_back(Output::Storage(Storage::Revocation(r.clone())));
        self.out.push_back(Output::Event(Event::RevocationApplied {
            subject: r.subject,
            key: r.key.to_bytes(),
            from,
        }));
        let targets: Vec<(P, RegionCode)> = self
            .admitted()
            // Not the revoked node itself: it is dropped next, and learns from the refusals.
            .filter(|(_, region)| {
                Some(*region) != from && *region != r.subject && in_line(r.subject, *region)
            })
            .collect();
        for (peer, to) in targets {
            self.out.push_back(Output::Send {
                to,
                peer: Some(peer),
                msg: Message::Revocations(RevocationMsg {
                    revocations: vec![r.clone()],
                }),
            });
        }
        self.recheck_peers(now, false);
        if let Err(error) = self.trust.verify_chain(&self.rf.identity().chain, now) {
            self.out
                .push_back(Output::Event(Event::OwnChainInvalid { error }));
        }
        Ok(true)
    }

    /// Checks admitted peers' chains again — all of them, or (`only_due`) those whose
    /// `not_after` has come — and refuses (and disconnects) each one whose chain no longer
    /// verifies; with `only_due`, also each peer not admitted by its hello deadline.
    pub(super) fn recheck_peers(&mut self, now: UnixMs, only_due: bool) {
        let due: Vec<(P, Option<CertChain>)> = self
            .peers
            .iter()
            .filter(|(_, p)| !only_due || p.not_after <= now)
            .map(|(peer, p)| (*peer, p.region.map(|_| p.chain.clone())))
            .collect();
        for (peer, chain) in due {
            let Some(chain) = chain else {
                if only_due {
                    self.refuse(peer, AdmissionError::HelloTimeout { ms: HELLO_MS_MAX });
                }
                continue;
            };
            match self.trust.verify_chain(&chain, now) {
                Ok(id) => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.not_after = id.not_after;
                    }
                }
                Err(error) => self.refuse(peer, AdmissionError::Chain(error)),
            }
        }
    }

    /// This node revokes the key of `subject`, a region strictly below it: `key`, or if `None`
    /// the key of the peer of that region connected now. The revocation is applied, persisted
    /// and spread like one heard from a peer (see [`crate::revocation_gossip`]).
    pub fn revoke(
        &mut self,
        now: UnixMs,
        subject: RegionCode,
        key: Option<VerifyingKey>,
    ) -> Result<Revocation, RevokeError> {
        let key = match key {
            Some(k) => k,
            None => self
                .peer_of(subject)
                .and_then(|p| self.peers.get(&p))
                .and_then(|p| VerifyingKey::from_bytes(&p.auth.key).ok())
                .ok_or(RevokeError::NoKnownKey { region: subject })?,
        };
        let r = Revocation::issue(self.rf.identity(), subject, key, now)?;
        self.learn_revocation(now, &r, None)?;
        Ok(r)
    }

    /// A revocation handed in by the shell (e.g. the offline root's revocation of a national
    /// key, from a file): verified, applied, persisted and spread. Returns whether it was new.
    pub fn submit_revocation(&mut self, now: UnixMs, r: &Revocation) -> Result<bool, CertError> {
        self.learn_revocation(now, r, None)
    }

    /// Every revocation in force here.
    pub fn revocations(&self) -> impl Iterator<Item = &Revocation> {
        self.revocations.values()
    }
}
