//! A department's sharing rights (政务数据共享权限) suspended by a data-sharing authority
//! (政务数据共享主管部门), network-wide (Art. 27 ¶2: 政务数据共享主管部门或者政务数据提供部门应当
//! 暂停其政务数据共享权限，并督促限期整改).
//!
//! A provider suspends the one grant it gave ([`super::ShareAct::Suspend`], a case act); an
//! authority suspends everything a requester department receives through sharing. Its act
//! ([`SignedRightsAct`]) is signed by the jurisdiction key of the department's own region or
//! of a region above it — an authority supervises only departments within its jurisdiction —
//! and every node enforces it from the moment it holds it:
//!
//! - the department files no share request (its own node refuses), and no provider grants it
//!   one, starts or corrects a delivery to it, or consents to widen what it holds;
//! - no delivery to it goes on: its grants' delivery connections close, and the provider's
//!   service interface refuses its calls;
//! - its own node serves its users none of the data granted to it (export, service calls) and
//!   passes none of it on.
//!
//! What it may still do: rectify, dispose of data, answer, open disputes — the acts that
//! bring it back into line. The same authority (same region) lifts its suspension with a
//! reinstatement (恢复); suspensions by two authorities are lifted one by one. If the
//! rectification period passes without the department putting things right (拒不整改或者
//! 整改不到位), that authority may terminate the sharing instead (终止共享,
//! [`RightsDecision::Terminate`]): every grant requested before it ends everywhere.
//!
//! # How it spreads
//! A provider anywhere in the country may meet the department, so an act goes to every
//! admitted peer — tree neighbours and grant connections — but the one it came from, and a
//! node passes on only acts new to it, so the flood ends by itself. A peer admitted later is
//! sent every act held: a node that was offline catches up at its next connection; and every
//! [`RIGHTS_RESYNC_MS`] each node sends what it holds to its neighbours again, so an act lost
//! on the way (a full control queue drops its oldest frame) arrives within minutes.
//!
//! # Which act is in force
//! Acts of one authority about one department are numbered 1, 2, 3…; the highest number held
//! is in force, and an older one arriving late changes nothing (nor can a replayed suspension
//! undo a reinstatement).

use std::collections::BTreeMap;
use std::sync::Arc;

use backflow_topology::RegionCode;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use super::case::{check_approval, check_text, ShareError};
use crate::catalog::CatalogOrigin;
use crate::cert::{check_chain_limits, CertChain, CertError, NodeIdentity, TrustStore};
use crate::codec::digest;
use crate::limits::{check_len, Bounded, LimitError};
use crate::time::{UnixMs, DAY_MS};

const RIGHTS_DOMAIN: &[u8] = b"backflow/sharing-rights/v1";

/// (department, authority) pairs one node holds acts for. Suspensions are rare (a handful a
/// year per province); this bounds what peers can make a node store.
pub const RIGHTS_HELD_MAX: usize = 16_384;

/// Acts in one message: each is a signature and a chain of at most four certificates, so 64
/// stay far below a frame.
pub const RIGHTS_PER_MESSAGE_MAX: usize = 64;

/// How long after it was signed an act still spreads when its authority's certificate has
/// merely expired since (not revoked): a node that was offline for a while still learns of a
/// suspension in force.
pub const RIGHTS_RELAY_GRACE_MS: u64 = 90 * DAY_MS;

/// How often a node sends every act it holds to its tree neighbours again. An act is sent
/// once per neighbour, unacknowledged, and a peer's control queue drops its oldest frame when
/// full (`crate::outbox`); this bounds how long a node may miss one under load to minutes —
/// a neighbour takes only what is newer than what it holds, checked before any signature.
pub const RIGHTS_RESYNC_MS: u64 = 10 * 60 * 1_000;

/// How far in the future an act's time may lie (clocks of two nodes differ).
pub const RIGHTS_CLOCK_SKEW_MS_MAX: u64 = 5 * 60 * 1_000;

/// What the authority decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RightsDecision {
    /// 暂停政务数据共享权限: for misuse (擅自超出使用范围、共享目的使用, or 擅自提供给第三方),
    /// to be rectified by `rectify_by` (限期整改).
    Suspend {
        reason: String,
        rectify_by: UnixMs,
        approved_by: String,
    },
    /// The suspension lifted (恢复共享权限), e.g. after rectification.
    Reinstate { note: String, approved_by: String },
    /// The sharing terminated (终止共享): the department did not rectify, or not enough, by
    /// the deadline of this authority's suspension (拒不整改或者整改不到位). Every grant it
    /// had requested by then ends at every node — nothing more is delivered or answered, its
    /// node uses none of that data — and the suspension is over: a new request is judged
    /// afresh.
    Terminate { reason: String, approved_by: String },
}

/// An authority's act on a department's sharing rights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsActBody {
    pub department: CatalogOrigin,
    /// The authority: the region whose jurisdiction key signs.
    pub issuer: RegionCode,
    /// This authority's 1st, 2nd… act about this department.
    pub ordinal: u32,
    pub at: UnixMs,
    pub decision: RightsDecision,
}

/// [`RightsActBody`] signed by the issuing authority's jurisdiction key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRightsAct {
    pub body: RightsActBody,
    pub issuer_chain: CertChain,
    pub signature: Signature,
}

/// Why an act on sharing rights was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RightsError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    Text(#[from] ShareError),
    #[error("the authority of {issuer} has no jurisdiction over a department of {department}")]
    OutsideJurisdiction {
        department: RegionCode,
        issuer: RegionCode,
    },
    #[error("the act names {named} as its authority but is signed by {signer}")]
    WrongSigner {
        named: RegionCode,
        signer: RegionCode,
    },
    #[error("an act signed at Unix ms {at}, in the future")]
    FromTheFuture { at: UnixMs },
    #[error("a department needs a name")]
    NoDepartment,
    #[error("department {department:?} of {region} is suspended by this authority already")]
    AlreadySuspended {
        department: String,
        region: RegionCode,
    },
    #[error("department {department:?} of {region} is not suspended by this authority")]
    NotSuspended {
        department: String,
        region: RegionCode,
    },
    #[error("this node holds acts on {max} departments' sharing rights already")]
    TooMany { max: usize },
    #[error(
        "the rectification period (整改期限) runs until Unix ms {until}: the sharing is \
         terminated only when the department did not rectify by then (Art. 27: 拒不整改或者整改不到位)"
    )]
    RectificationRuns { until: u64 },
}

impl SignedRightsAct {
    /// `identity`'s authority decides on `department`'s rights.
    pub fn sign(identity: &NodeIdentity, body: RightsActBody) -> SignedRightsAct {
        debug_assert_eq!(body.issuer, identity.region);
        SignedRightsAct {
            signature: identity.sign(&digest(RIGHTS_DOMAIN, &body)),
            issuer_chain: identity.chain.clone(),
            body,
        }
    }

    /// Whether it suspends.
    pub fn suspends(&self) -> bool {
        matches!(self.body.decision, RightsDecision::Suspend { .. })
    }

    fn check_fields(&self) -> Result<(), RightsError> {
        let b = &self.body;
        if b.department.department.trim().is_empty() {
            return Err(RightsError::NoDepartment);
        }
        check_text("department", &b.department.department)?;
        match &b.decision {
            RightsDecision::Suspend {
                reason,
                approved_by,
                ..
            } => {
                if reason.trim().is_empty() {
                    return Err(ShareError::WithoutReason {
                        act: "a suspension of sharing rights",
                    }
                    .into());
                }
                check_text("suspension reason", reason)?;
                check_approval(approved_by)?;
            }
            RightsDecision::Reinstate { note, approved_by } => {
                check_text("reinstatement note", note)?;
                check_approval(approved_by)?;
            }
            RightsDecision::Terminate {
                reason,
                approved_by,
            } => {
                if reason.trim().is_empty() {
                    return Err(ShareError::WithoutReason {
                        act: "a termination of sharing",
                    }
                    .into());
                }
                check_text("termination reason", reason)?;
                check_approval(approved_by)?;
            }
        }
        if !b.issuer.contains(b.department.region) {
            return Err(RightsError::OutsideJurisdiction {
                department: b.department.region,
                issuer: b.issuer,
            });
        }
        Ok(())
    }

    /// Checks fields, time, the authority's chain and signature, and its jurisdiction.
    pub fn verify(&self, trust: &mut TrustStore, now: UnixMs) -> Result<(), RightsError> {
        self.check_limits()?;
        self.check_fields()?;
        let b = &self.body;
        if b.at > now.plus_ms(RIGHTS_CLOCK_SKEW_MS_MAX) {
            return Err(RightsError::FromTheFuture { at: b.at });
        }
        let d = digest(RIGHTS_DOMAIN, b);
        let signer = trust.verify_signed_relayed(
            &self.issuer_chain,
            now,
            b.at,
            RIGHTS_RELAY_GRACE_MS,
            &d,
            &self.signature,
        )?;
        if signer.region != b.issuer {
            return Err(RightsError::WrongSigner {
                named: b.issuer,
                signer: signer.region,
            });
        }
        Ok(())
    }
}

impl Bounded for SignedRightsAct {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_chain_limits(&self.issuer_chain)
    }
}

/// A batch of acts on sharing rights, to every admitted peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RightsMsg {
    pub acts: Vec<Arc<SignedRightsAct>>,
}

impl Bounded for RightsMsg {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_len(
            "rights acts per message",
            self.acts.len(),
            RIGHTS_PER_MESSAGE_MAX,
        )?;
        self.acts.iter().try_for_each(|a| a.check_limits())
    }
}

/// The acts in force on this node: per (department, authority), the latest.
#[derive(Clone, Debug, Default)]
pub struct SharingRights {
    held: BTreeMap<(CatalogOrigin, RegionCode), Arc<SignedRightsAct>>,
}

impl SharingRights {
    /// Takes a verified act if it is newer than the one held for its department and
    /// authority. Returns whether it was.
    pub fn take(&mut self, act: Arc<SignedRightsAct>) -> Result<bool, RightsError> {
        let key = (act.body.department.clone(), act.body.issuer);
        match self.held.get(&key) {
            Some(held) if held.body.ordinal >= act.body.ordinal => return Ok(false),
            None if self.held.len() >= RIGHTS_HELD_MAX => {
                return Err(RightsError::TooMany {
                    max: RIGHTS_HELD_MAX,
                })
            }
            _ => {}
        }
        self.held.insert(key, act);
        Ok(true)
    }

    /// A suspension of `department`'s rights in force, if any (the earliest authority's).
    pub fn suspension(&self, department: &CatalogOrigin) -> Option<&SignedRightsAct> {
        self.of(department).find(|a| a.suspends())
    }

    /// The acts in force about `department`, one per authority, national's first.
    fn of<'a>(
        &'a self,
        department: &CatalogOrigin,
    ) -> impl Iterator<Item = &'a SignedRightsAct> + use<'a> {
        // National orders first (regions sort by level, then code): the department's range.
        let department = department.clone();
        let from = (department.clone(), RegionCode::NATIONAL);
        self.held
            .range(from..)
            .take_while(move |((d, _), _)| *d == department)
            .map(|(_, a)| &**a)
    }

    /// When `department`'s sharing was terminated by an authority (the latest termination in
    /// force): every grant it requested until then has ended.
    pub fn terminated_at(&self, department: &CatalogOrigin) -> Option<UnixMs> {
        self.of(department)
            .filter(|a| matches!(a.body.decision, RightsDecision::Terminate { .. }))
            .map(|a| a.body.at)
            .max()
    }

    /// The act of `issuer` about `department` in force, if any.
    pub fn latest(
        &self,
        department: &CatalogOrigin,
        issuer: RegionCode,
    ) -> Option<&SignedRightsAct> {
        self.held.get(&(department.clone(), issuer)).map(|a| &**a)
    }

    /// Every act in force (the latest per department and authority).
    pub fn acts(&self) -> impl Iterator<Item = &Arc<SignedRightsAct>> {
        self.held.values()
    }

    /// Every act held, as messages of at most [`RIGHTS_PER_MESSAGE_MAX`].
    pub fn messages(&self) -> Vec<RightsMsg> {
        let all: Vec<Arc<SignedRightsAct>> = self.held.values().cloned().collect();
        all.chunks(RIGHTS_PER_MESSAGE_MAX)
            .map(|c| RightsMsg { acts: c.to_vec() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn suspend(identity: &NodeIdentity, dept: &CatalogOrigin, ordinal: u32) -> SignedRightsAct {
        SignedRightsAct::sign(
            identity,
            RightsActBody {
                department: dept.clone(),
                issuer: identity.region,
                ordinal,
                at: UnixMs(1_000 * DAY_MS),
                decision: RightsDecision::Suspend {
                    reason: "擅自提供给第三方".into(),
                    rectify_by: UnixMs(1_010 * DAY_MS),
                    approved_by: "主任".into(),
                },
            },
        )
    }

    #[test]
    fn only_an_authority_over_the_department_suspends_it_and_the_latest_act_is_in_force() {
        let t0 = UnixMs(1_000 * DAY_MS);
        let national = NodeIdentity::national(key(1));
        let mut trust = TrustStore::new(national.key.verifying_key());
        let child = |region: &str, seed: u8| {
            national
                .certify_child(
                    &key(seed),
                    vec![],
                    t0,
                    t0.plus_ms(400 * DAY_MS),
                    code(region),
                    1,
                )
                .unwrap()
        };
        let (bj, gd) = (child("11", 2), child("44", 3));
        let dept = CatalogOrigin {
            region: code("110101"),
            department: "区民政局".into(),
        };
        let by_bj = suspend(&bj, &dept, 1);
        by_bj.verify(&mut trust, t0).unwrap();
        // 广东 has no jurisdiction over a 北京 department.
        let mut by_gd = suspend(&gd, &dept, 1);
        assert!(matches!(
            by_gd.verify(&mut trust, t0),
            Err(RightsError::OutsideJurisdiction { .. })
        ));
        // Naming another authority than the signer's.
        by_gd.body.issuer = code("11");
        assert!(by_gd.verify(&mut trust, t0).is_err());
        // Edited after signing.
        let mut edited = by_bj.clone();
        edited.body.department.department = "区公安局".into();
        assert!(matches!(
            edited.verify(&mut trust, t0),
            Err(RightsError::Cert(CertError::BadMessageSignature { .. }))
        ));
        // From the future.
        assert!(matches!(
            by_bj.verify(&mut trust, UnixMs(t0.0 - DAY_MS)),
            Err(RightsError::FromTheFuture { .. })
        ));

        let mut rights = SharingRights::default();
        assert!(rights.take(Arc::new(by_bj.clone())).unwrap());
        assert!(rights.suspension(&dept).is_some());
        let other = CatalogOrigin {
            region: code("110101"),
            department: "区卫健委".into(),
        };
        assert!(rights.suspension(&other).is_none());
        let lifted = SignedRightsAct::sign(
            &bj,
            RightsActBody {
                department: dept.clone(),
                issuer: code("11"),
                ordinal: 2,
                at: t0,
                decision: RightsDecision::Reinstate {
                    note: "整改到位".into(),
                    approved_by: "主任".into(),
                },
            },
        );
        assert!(rights.take(Arc::new(lifted)).unwrap());
        assert!(rights.suspension(&dept).is_none());
        // The old suspension replayed changes nothing.
        assert!(!rights.take(Arc::new(by_bj)).unwrap());
        assert!(rights.suspension(&dept).is_none());
        // National's own suspension stands beside 北京's.
        assert!(rights.take(Arc::new(suspend(&national, &dept, 1))).unwrap());
        assert_eq!(
            rights.suspension(&dept).unwrap().body.issuer,
            RegionCode::NATIONAL
        );
        assert_eq!(rights.messages().len(), 1);
        assert_eq!(rights.messages()[0].acts.len(), 2);
    }
}
