//! The acts of the sharing service (共享服务): what a department (or its node) does to a share
//! request ([`ShareActBody`], [`ShareActKind`]), signed by the department's own key or the
//! node's jurisdiction key ([`SignedShareAct`]) and verified at every hop, the messages that
//! carry them between neighbouring nodes ([`ShareMsg`]), and why one is not taken
//! ([`ShareRejection`]). The service that routes and applies them is [`super::ShareService`].

use std::sync::Arc;

use backflow_topology::RegionCode;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use super::returned::ReturnedCorrectionRequest;
use super::{Party, ShareAct, ShareCase, ShareError, ShareRequest};
use crate::catalog::{CatalogOrigin, SharingAttribute};
use crate::cert::{check_chain_limits, CertChain, CertError, NodeIdentity, TrustStore};
use crate::codec::{digest, encoded_len};
use crate::department::{DepartmentCert, DepartmentError, DepartmentIdentity};
use crate::limits::{check_len, Bounded, LimitError, FRAME_BYTES_MAX};
use crate::manifest::Hash;
use crate::time::UnixMs;

const ACT_DOMAIN: &[u8] = b"backflow/share-act/v1";

/// Which party of `case` the department `by` is.
pub(super) fn party_of(case: &ShareCase, by: &CatalogOrigin) -> Result<Party, ShareRejection> {
    if *by == case.request.provider {
        Ok(Party::Provider)
    } else if *by == case.request.requester {
        Ok(Party::Requester)
    } else {
        Err(ShareRejection::NotAParty)
    }
}

/// `by`'s act `kind` on `request`, for the party at `to`, done and signed now: by the
/// department (`Some`) or by the node itself (`None`, [`ShareActKind::is_node_act`]).
pub(super) fn sign_act(
    identity: &NodeIdentity,
    department: Option<&DepartmentIdentity>,
    now: UnixMs,
    request: Hash,
    by: CatalogOrigin,
    to: RegionCode,
    kind: ShareActKind,
) -> Arc<SignedShareAct> {
    let body = ShareActBody {
        request,
        by,
        to,
        at: now,
        kind,
    };
    Arc::new(match department {
        Some(d) => SignedShareAct::sign_by_department(body, identity, d),
        None => SignedShareAct::sign(body, identity),
    })
}

/// What the provider's node answers, by itself, to a request for an entry its catalog does
/// not hold: a refusal with that reason (both copies apply this same act).
pub(super) fn not_in_catalog_refusal() -> ShareAct {
    ShareAct::Refuse {
        reasons: "the provider's catalog holds no such entry (目录中无此条目)".to_string(),
        approved_by: "政务数据目录 (catalog)".to_string(),
    }
}
/// How far in the future a signed act's time may lie (clocks differ between nodes).
pub const SHARE_CLOCK_SKEW_MS_MAX: u64 = 5 * 60_000;

/// What a department (or, for [`ShareActKind::is_node_act`], its node) does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareActBody {
    /// The request ([`ShareRequest::id`]).
    pub request: Hash,
    /// The acting department.
    pub by: CatalogOrigin,
    /// The other party's region: where the act goes.
    pub to: RegionCode,
    /// When it was done: both copies of the case apply it at this time.
    pub at: UnixMs,
    pub kind: ShareActKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareActKind {
    /// The requester files the request (with the entry's attribute as the catalog it chose
    /// from states it; the provider's own catalog decides).
    File {
        request: Box<ShareRequest>,
        attribute: SharingAttribute,
    },
    /// The provider's node received the filing; `attribute` is the entry's as the provider's
    /// own catalog states it, which both copies of the case then hold.
    Received {
        attribute: SharingAttribute,
    },
    /// The provider's node refuses a filing for an entry its catalog does not hold (both
    /// copies apply [`not_in_catalog_refusal`]).
    NotInCatalog,
    /// The requester's node verified every byte of the delivery `manifest` (batch exchange,
    /// Art. 22): the data is delivered (both copies apply [`ShareAct::Delivered`]).
    DeliveryVerified {
        manifest: Hash,
    },
    /// The provider's node renewed the delivery under `manifest` (its term of use outlasts
    /// one manifest's validity): both copies apply [`ShareAct::RenewDelivery`].
    DeliveryRenewed {
        manifest: Hash,
    },
    Act(ShareAct),
    /// A department files a correction request against returned data
    /// ([`super::returned`]): `request` names the body's id; the act goes to the publisher.
    FileReturnedCorrection {
        request: Box<ReturnedCorrectionRequest>,
    },
    /// The publisher's department answers a correction request against returned data.
    AnswerReturnedCorrection {
        corrected_in: Option<u64>,
        reason: String,
        approved_by: String,
    },
}

impl ShareActKind {
    /// Acts the node does by itself, signed by its jurisdiction key; every other act is a
    /// department's, signed by the department's own key.
    pub fn is_node_act(&self) -> bool {
        self.node_party().is_some() || self.is_authority_act()
    }

    /// The coordinating authority's act on a dispute (Art. 28): a node act of the parties'
    /// lowest common superior, the one node that is no party.
    pub fn is_authority_act(&self) -> bool {
        matches!(self, ShareActKind::Act(ShareAct::Coordinate { .. }))
    }

    /// Whose node does this act by itself: the provider's (receipt, not-in-catalog refusal)
    /// or the requester's (a delivery verified).
    pub fn node_party(&self) -> Option<Party> {
        match self {
            ShareActKind::Received { .. } | ShareActKind::NotInCatalog => Some(Party::Provider),
            ShareActKind::DeliveryVerified { .. } => Some(Party::Requester),
            ShareActKind::DeliveryRenewed { .. } => Some(Party::Provider),
            ShareActKind::File { .. }
            | ShareActKind::Act(_)
            | ShareActKind::FileReturnedCorrection { .. }
            | ShareActKind::AnswerReturnedCorrection { .. } => None,
        }
    }

    /// What this act does to an existing case: the case act, and the provider's attribute it
    /// sets first (a `Received`). `None` for a filing, which creates the case.
    pub(super) fn case_act(&self) -> Option<(ShareAct, Option<SharingAttribute>)> {
        match self {
            ShareActKind::File { .. }
            | ShareActKind::FileReturnedCorrection { .. }
            | ShareActKind::AnswerReturnedCorrection { .. } => None,
            ShareActKind::Received { attribute } => {
                Some((ShareAct::Receive, Some(attribute.clone())))
            }
            ShareActKind::NotInCatalog => Some((not_in_catalog_refusal(), None)),
            ShareActKind::DeliveryVerified { .. } => Some((ShareAct::Delivered, None)),
            ShareActKind::DeliveryRenewed { manifest } => Some((
                ShareAct::RenewDelivery {
                    manifest: *manifest,
                },
                None,
            )),
            ShareActKind::Act(a) => Some((a.clone(), None)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedShareAct {
    pub body: ShareActBody,
    /// The jurisdiction's chain: the signer of a node act, the certifier of a department.
    pub signer: CertChain,
    /// The acting department's certificate (under the chain's key); `None` for a node act.
    pub department: Option<DepartmentCert>,
    /// By the department's key, or for a node act by the jurisdiction key.
    pub signature: Signature,
}

impl Bounded for SignedShareAct {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_chain_limits(&self.signer)?;
        if let Some(d) = &self.department {
            d.check_limits()?;
        }
        check_len(
            "share act bytes",
            encoded_len(&self.body),
            FRAME_BYTES_MAX / 4,
        )
    }
}

impl SignedShareAct {
    /// A node act ([`ShareActKind::is_node_act`]), signed by the jurisdiction key.
    pub fn sign(body: ShareActBody, identity: &NodeIdentity) -> SignedShareAct {
        SignedShareAct {
            signature: identity.sign(&digest(ACT_DOMAIN, &body)),
            body,
            signer: identity.chain.clone(),
            department: None,
        }
    }

    /// A department's act, signed by its key; `identity` is its node's (the certifier).
    pub fn sign_by_department(
        body: ShareActBody,
        identity: &NodeIdentity,
        department: &DepartmentIdentity,
    ) -> SignedShareAct {
        SignedShareAct {
            signature: department.sign(&digest(ACT_DOMAIN, &body)),
            body,
            signer: identity.chain.clone(),
            department: Some(department.cert.clone()),
        }
    }

    /// The act's identity (what acknowledgements name).
    pub fn id(&self) -> Hash {
        digest(ACT_DOMAIN, &self.body)
    }

    pub(super) fn verify(&self, trust: &mut TrustStore, now: UnixMs) -> Result<(), ShareRejection> {
        self.check_limits()?;
        let by = &self.body.by;
        let who = match &self.department {
            None => {
                if !self.body.kind.is_node_act() {
                    return Err(ShareRejection::NotSignedByTheDepartment {
                        department: by.department.clone(),
                    });
                }
                trust.verify_signed(&self.signer, now, &self.id(), &self.signature)?
            }
            Some(cert) => {
                if self.body.kind.is_node_act() {
                    return Err(ShareRejection::NodeActByADepartment);
                }
                let who = trust.verify_chain(&self.signer, now)?;
                cert.verify(trust, &who, now)?;
                if cert.body.department != by.department {
                    return Err(ShareRejection::OtherDepartment {
                        by: by.department.clone(),
                        signer: cert.body.department.clone(),
                    });
                }
                if !trust.check_key_signature(&cert.body.key, &self.id(), &self.signature) {
                    return Err(ShareRejection::BadDepartmentSignature {
                        department: by.department.clone(),
                    });
                }
                who
            }
        };
        if who.region != by.region {
            return Err(ShareRejection::WrongSigner {
                by: by.region,
                signer: who.region,
            });
        }
        if self.body.at > now.plus_ms(SHARE_CLOCK_SKEW_MS_MAX) {
            return Err(ShareRejection::FromTheFuture { at: self.body.at });
        }
        Ok(())
    }
}

/// Messages between neighbouring nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShareMsg {
    Act(Arc<SignedShareAct>),
    /// Hop-by-hop: the act ([`SignedShareAct::id`]) is persisted here.
    Ack {
        act: Hash,
    },
    /// Authorities' acts on departments' sharing rights, flooded to every node
    /// ([`super::rights`]).
    Rights(super::RightsMsg),
}

impl Bounded for ShareMsg {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            ShareMsg::Act(a) => a.check_limits(),
            ShareMsg::Ack { .. } => Ok(()),
            ShareMsg::Rights(m) => m.check_limits(),
        }
    }
}

/// Why an act was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareRejection {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("an act of a department of {by} signed by {signer}")]
    WrongSigner { by: RegionCode, signer: RegionCode },
    #[error(transparent)]
    Department(#[from] DepartmentError),
    #[error("an act of department {department:?} not signed by the department's own key")]
    NotSignedByTheDepartment { department: String },
    #[error("an act of the node itself signed by a department's key")]
    NodeActByADepartment,
    #[error("an act of department {by:?} signed by department {signer:?}")]
    OtherDepartment { by: String, signer: String },
    #[error("an act of department {department:?} with a bad signature")]
    BadDepartmentSignature { department: String },
    #[error("an act signed at {at}, in the future")]
    FromTheFuture { at: UnixMs },
    #[error("no such request here")]
    UnknownRequest,
    #[error("the department is not a party to this request")]
    NotAParty,
    #[error("the request's filing names another identity than its content")]
    MismatchedFiling,
    #[error("this node holds {max} share requests already")]
    TooManyCases { max: usize },
    #[error("a request is received by the provider's node when it arrives, not by a department")]
    ReceivedByTheNode,
    #[error("the delivery verified is not the one this request's provider started")]
    NotThisDelivery,
    #[error("this node is not the requester's, or the request has no delivery started")]
    NoDeliveryHere,
    #[error(
        "the sharing rights (政务数据共享权限) of department {department} of {region} are \
         suspended by the authority of {by} (Art. 27): it is granted and delivered nothing \
         until reinstated"
    )]
    RightsSuspended {
        department: String,
        region: RegionCode,
        by: RegionCode,
    },
    #[error(
        "the sharing of department {department} of {region} was terminated by an authority at \
         Unix ms {} (终止共享, Art. 27): its grants requested by then have ended", at.0
    )]
    SharingTerminated {
        department: String,
        region: RegionCode,
        at: UnixMs,
    },
    #[error(transparent)]
    Case(#[from] ShareError),
    #[error(
        "this node holds no return-flow dataset {dataset}: a correction request names returned \
         data it holds (a grant's delivery is corrected with share correct)"
    )]
    ReturnedDataNotHeld { dataset: String },
    #[error(
        "\"corrected\" names the version that carries the correction: publish the corrected \
         dataset first (backflow publish, a version after {version}), then answer"
    )]
    CorrectedVersionNotPublished { version: u64 },
}
