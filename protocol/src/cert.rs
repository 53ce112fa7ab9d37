//! Trust: jurisdiction certificates (管辖证书) chained to an offline root key (根密钥).
//!
//! The trust anchor, installed out of band in every node's configuration, is a **root key kept
//! offline**. It signs one kind of certificate only: the *national certificate*, which binds
//! the national node's (online) key to region `0` — subject and issuer region are both
//! national, the issuer key is the root. The national node certifies each province, a province
//! its cities, and so on down to townships. A certificate binds the subject's region code and
//! level, its ed25519 key and its libp2p peer id (opaque bytes — no libp2p dependency here), a
//! validity window, and the issuer's region and key.
//!
//! A chain runs from the anchor down: `[national, province, city, county, township]`, at
//! most [`CERT_CHAIN_LEN_MAX`] certificates below the national one; the national node's own
//! chain is `[national]`.
//! [`TrustStore::verify_chain`] walks it and rejects an issuer that is not the subject's
//! parent region, a subject outside its issuer's region, a national certificate anywhere but
//! first or not issued by the anchor, expired or not-yet-valid certificates, bad signatures,
//! and revoked keys. The root itself is never a node: a store that knows its anchor is a root
//! ([`TrustStore::new_root`], or any store once it has verified a national certificate issued
//! by its anchor) refuses an empty chain and a chain whose first certificate is not national
//! (a province certified by the root directly).
//!
//! Without a root (simulators, protocol tests, a deployment not yet moved to one), the anchor
//! may still be the national node's own key: [`NodeIdentity::national`], empty chain, and
//! provinces certified by the anchor directly. Such a store also accepts a chain that opens
//! with a national certificate *for its anchor key*: it trusts that key directly, so the
//! root's signature adds nothing it relies on (the window and revocation still apply). That is
//! what lets a deployment move to a root without a flag day: first the national node gets its
//! certificate and chains gain it at their head, then nodes switch their anchor to the root.
//!
//! Key rotation: a rotation certificate for a jurisdiction carries `replaces = old key` and is
//! signed both by the parent (like any certificate) and by the old key (proving the holder, not
//! only the parent, agreed). Once a store has seen a valid rotation certificate it refuses the
//! old key everywhere: in chains and as a signer.
//!
//! Rotating the national key is one root signature: a national certificate for the new key.
//! Certificates the old national key issued stay valid until they expire or the old key is
//! revoked, so provinces are re-certified by the new key at leisure; after a compromise the
//! root revokes the old key at once ([`Revocation::issue_by_root`]) — or issues the new
//! national certificate as a rotation certificate co-signed by the old key, which revokes it
//! wherever the new chain is seen. Rotating the anchor itself ([`TrustStore::rotate_anchor`])
//! hands trust from an old root to a new one: only the national certificate must then be
//! re-issued (every chain takes the new one at its head); the certificates below it stay valid.

use std::collections::BTreeSet;

use backflow_topology::{Level, RegionCode};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::codec::digest;
use crate::limits::{check_len, LimitError, CERT_CHAIN_LEN_MAX, PEER_ID_BYTES_MAX};
use crate::time::UnixMs;

const CERT_DOMAIN: &[u8] = b"backflow/cert/v1";
const ROTATION_DOMAIN: &[u8] = b"backflow/cert-rotation/v1";
const ANCHOR_ROTATION_DOMAIN: &[u8] = b"backflow/anchor-rotation/v1";
const REVOCATION_DOMAIN: &[u8] = b"backflow/revocation/v1";

/// Verified-signature cache entries per store. Bounded so a peer cycling through certificates
/// cannot grow memory; the cache is simply cleared when full (verification is only slower).
pub const TRUST_CACHE_ENTRIES_MAX: usize = 65_536;
/// Revoked keys a store remembers. Revocations are rare administrative acts; thousands is
/// plenty, and the bound keeps a store small.
pub const REVOKED_KEYS_MAX: usize = 65_536;

/// Certificates from the anchor down, anchor-most first: the national certificate (under an
/// offline root), then province, city, county, township. The national node's chain is its
/// national certificate alone — or empty where its key is itself the anchor (no root).
pub type CertChain = Vec<Certificate>;

/// The signed content of a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBody {
    pub subject: RegionCode,
    /// Redundant with `subject.level()` on purpose: a certificate states what it certifies.
    pub level: Level,
    pub subject_key: VerifyingKey,
    /// The subject node's libp2p peer id bytes (opaque here).
    pub peer_id: Vec<u8>,
    pub not_before: UnixMs,
    /// Exclusive.
    pub not_after: UnixMs,
    pub issuer: RegionCode,
    pub issuer_key: VerifyingKey,
    pub serial: u64,
    /// Key rotation: the subject's previous key, which must co-sign.
    pub replaces: Option<VerifyingKey>,
}

/// A certificate: body, issuer's signature and (for rotations) the old key's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub body: CertBody,
    pub issuer_signature: Signature,
    pub rotation_signature: Option<Signature>,
}

/// What a verified chain proves: this key speaks for this region until `not_after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub region: RegionCode,
    pub key: VerifyingKey,
    pub peer_id: Vec<u8>,
    pub not_after: UnixMs,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(
        "certificate for {subject}: chain is broken, expected issuer {expected}, found {found}"
    )]
    ChainBroken {
        subject: RegionCode,
        expected: RegionCode,
        found: RegionCode,
    },
    #[error("certificate for {subject}: issuer key is not the key certified for {issuer}")]
    IssuerKeyMismatch {
        subject: RegionCode,
        issuer: RegionCode,
    },
    #[error("certificate for {subject} claims a region outside its issuer {issuer}")]
    OutsideIssuerRegion {
        subject: RegionCode,
        issuer: RegionCode,
    },
    #[error("certificate for {subject} issued by {issuer}, which is not its parent region")]
    IssuerNotParent {
        subject: RegionCode,
        issuer: RegionCode,
    },
    #[error("certificate for {subject} states level {level} but the code is {actual}")]
    LevelMismatch {
        subject: RegionCode,
        level: Level,
        actual: Level,
    },
    #[error("certificate for {subject} has an empty validity window")]
    EmptyWindow { subject: RegionCode },
    #[error("certificate for {subject} is not valid before {not_before} (now {now})")]
    NotYetValid {
        subject: RegionCode,
        not_before: UnixMs,
        now: UnixMs,
    },
    #[error("certificate for {subject} expired at {not_after} (now {now})")]
    Expired {
        subject: RegionCode,
        not_after: UnixMs,
        now: UnixMs,
    },
    #[error("certificate for {subject} has a bad issuer signature")]
    BadSignature { subject: RegionCode },
    #[error("rotation certificate for {subject} lacks a valid signature by the old key")]
    BadRotationSignature { subject: RegionCode },
    #[error("key for {subject} is revoked")]
    Revoked { subject: RegionCode },
    #[error("signature by {signer} does not verify")]
    BadMessageSignature { signer: RegionCode },
    #[error("too many revoked keys (limit {max})")]
    RevocationListFull { max: usize },
    #[error(
        "a national certificate may only open a chain (the root certifies the national key); \
         found one at position {index}"
    )]
    NationalNotFirst { index: usize },
    #[error(
        "certificate for {subject} is issued by the root directly; the root certifies only \
         the national key, which certifies the provinces"
    )]
    RootCertifiesOnlyNational { subject: RegionCode },
    #[error(
        "chain starts at {subject} without the national certificate; the anchor is an offline \
         root, so every chain opens with the national certificate it issued"
    )]
    NationalCertificateMissing { subject: RegionCode },
    #[error(
        "the trust anchor is an offline root: it certifies the national key and is never a \
         node's own key"
    )]
    RootIsNotANode,
    #[error("certificate for {subject} is not a national certificate")]
    NotNational { subject: RegionCode },
    #[error("certificate for {subject} certifies another key")]
    OtherKey { subject: RegionCode },
}

/// Checks the size limits of a chain (called by the wire decoder): at most
/// [`CERT_CHAIN_LEN_MAX`] certificates below national (province to township), after the
/// national certificate that opens a chain under an offline root — five in all.
pub fn check_chain_limits(chain: &[Certificate]) -> Result<(), LimitError> {
    let national = chain
        .first()
        .is_some_and(|c| c.body.subject == RegionCode::NATIONAL);
    check_len(
        "certificates below the national certificate",
        chain.len() - usize::from(national),
        CERT_CHAIN_LEN_MAX,
    )?;
    for cert in chain {
        check_len("peer id bytes", cert.body.peer_id.len(), PEER_ID_BYTES_MAX)?;
    }
    Ok(())
}

impl CertBody {
    fn digest(&self) -> [u8; 32] {
        digest(CERT_DOMAIN, self)
    }
}

/// Parameters for issuing a certificate.
#[derive(Clone, Debug)]
pub struct CertRequest {
    pub subject: RegionCode,
    pub subject_key: VerifyingKey,
    pub peer_id: Vec<u8>,
    pub not_before: UnixMs,
    pub not_after: UnixMs,
    pub serial: u64,
}

impl Certificate {
    /// The parent `issuer` (holding `issuer_key`) certifies `req.subject`. Refuses to issue what
    /// a verifier would reject structurally (non-child subject, empty window, long peer id).
    pub fn issue(
        issuer: RegionCode,
        issuer_key: &SigningKey,
        req: CertRequest,
    ) -> Result<Certificate, CertError> {
        let body = Self::body(issuer, issuer_key, req, None)?;
        let issuer_signature = issuer_key.sign(&body.digest());
        Ok(Certificate {
            body,
            issuer_signature,
            rotation_signature: None,
        })
    }

    /// The offline root certifies the national node's key: the national certificate, the first
    /// of every chain. `req.subject` must be national and `req.subject_key` not the root's own
    /// (the root is never a node).
    pub fn issue_national(
        root_key: &SigningKey,
        req: CertRequest,
    ) -> Result<Certificate, CertError> {
        if req.subject != RegionCode::NATIONAL {
            return Err(CertError::RootCertifiesOnlyNational {
                subject: req.subject,
            });
        }
        Self::issue(RegionCode::NATIONAL, root_key, req)
    }

    /// A rotation certificate: the parent certifies the new key and the old key co-signs.
    /// For the national key the parent is the root (`issuer` national): the new national
    /// certificate then revokes the old national key wherever it is seen.
    pub fn issue_rotation(
        issuer: RegionCode,
        issuer_key: &SigningKey,
        old_key: &SigningKey,
        req: CertRequest,
    ) -> Result<Certificate, CertError> {
        let body = Self::body(issuer, issuer_key, req, Some(old_key.verifying_key()))?;
        let d = body.digest();
        Ok(Certificate {
            issuer_signature: issuer_key.sign(&d),
            rotation_signature: Some(old_key.sign(&digest(ROTATION_DOMAIN, &d))),
            body,
        })
    }

    fn body(
        issuer: RegionCode,
        issuer_key: &SigningKey,
        req: CertRequest,
        replaces: Option<VerifyingKey>,
    ) -> Result<CertBody, CertError> {
        let body = CertBody {
            subject: req.subject,
            level: req.subject.level(),
            subject_key: req.subject_key,
            peer_id: req.peer_id,
            not_before: req.not_before,
            not_after: req.not_after,
            issuer,
            issuer_key: issuer_key.verifying_key(),
            serial: req.serial,
            replaces,
        };
        check_len("peer id bytes", body.peer_id.len(), PEER_ID_BYTES_MAX)?;
        structural_check(&body)?;
        if body.subject == RegionCode::NATIONAL && body.subject_key == body.issuer_key {
            return Err(CertError::RootIsNotANode);
        }
        Ok(body)
    }
}

/// Checks that need no keys: region nesting, level, window. The issuer is the subject's
/// parent region — except in the national certificate, the one whose subject has no parent:
/// subject and issuer are both national (the issuer key, the root's, is checked by the walk).
fn structural_check(body: &CertBody) -> Result<(), CertError> {
    let (subject, issuer) = (body.subject, body.issuer);
    if !issuer.contains(subject) {
        return Err(CertError::OutsideIssuerRegion { subject, issuer });
    }
    let national_form = subject == RegionCode::NATIONAL && issuer == RegionCode::NATIONAL;
    if !national_form && subject.parent() != Some(issuer) {
        return Err(CertError::IssuerNotParent { subject, issuer });
    }
    if body.level != subject.level() {
        return Err(CertError::LevelMismatch {
            subject,
            level: body.level,
            actual: subject.level(),
        });
    }
    if body.not_before >= body.not_after {
        return Err(CertError::EmptyWindow { subject });
    }
    Ok(())
}

/// A memo of signatures that verified: digests of (key, message digest, signature) triples.
/// Whether a signature verifies is a pure function of the triple, so several trust stores may
/// share one memo ([`TrustStore::with_shared_memo`]) — e.g. a simulator running thousands of
/// nodes in one process then checks a signature relayed to all of them once. Revocations stay
/// per store: a store refuses a revoked key before it consults the memo. Clones share the
/// memo. Bounded like a store's own memo: cleared when it holds [`TRUST_CACHE_ENTRIES_MAX`].
#[derive(Clone, Debug, Default)]
pub struct SignatureMemo(std::sync::Arc<std::sync::Mutex<BTreeSet<[u8; 32]>>>);

impl SignatureMemo {
    pub fn new() -> SignatureMemo {
        SignatureMemo::default()
    }

    /// Triples remembered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<[u8; 32]>> {
        // A set of digests is valid whatever a panicking holder left in it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A store's memo of verified signatures: its own, or one shared with other stores.
#[derive(Clone, Debug)]
enum Memo {
    Own(BTreeSet<[u8; 32]>),
    Shared(SignatureMemo),
}

impl Memo {
    fn contains(&self, triple: &[u8; 32]) -> bool {
        match self {
            Memo::Own(set) => set.contains(triple),
            Memo::Shared(memo) => memo.lock().contains(triple),
        }
    }

    /// Remembers a verified triple; the memo is simply cleared when full.
    fn insert(&mut self, triple: [u8; 32]) {
        fn bounded(set: &mut BTreeSet<[u8; 32]>, triple: [u8; 32]) {
            if set.len() >= TRUST_CACHE_ENTRIES_MAX {
                set.clear();
            }
            set.insert(triple);
        }
        match self {
            Memo::Own(set) => bounded(set, triple),
            Memo::Shared(memo) => bounded(&mut memo.lock(), triple),
        }
    }
}

/// The trust anchor plus what this node has learned: revoked keys, whether the anchor is an
/// offline root, and a cache of signatures already verified. One per node, shared by its state
/// machines (passed as `&mut`).
#[derive(Clone, Debug)]
pub struct TrustStore {
    anchor: VerifyingKey,
    /// The anchor is known to be an offline root: chains must open with a national
    /// certificate. Set by [`TrustStore::new_root`], or learned from the first national
    /// certificate the anchor is seen to have issued (like a rotation, a fact that stays).
    anchor_is_root: bool,
    revoked: BTreeSet<[u8; 32]>,
    /// Digests of (body digest, signature, key) triples that verified.
    verified: Memo,
}

impl TrustStore {
    /// A store trusting `anchor`: an offline root, or (without a root) the national node's
    /// own key. Which one it is the store learns from the first national certificate issued
    /// by the anchor that it verifies: from then on it treats the anchor as a root.
    pub fn new(anchor: VerifyingKey) -> TrustStore {
        TrustStore {
            anchor,
            anchor_is_root: false,
            revoked: BTreeSet::new(),
            verified: Memo::Own(BTreeSet::new()),
        }
    }

    /// A store whose anchor is an offline root from the start: every chain must open with a
    /// national certificate issued by `root`.
    pub fn new_root(root: VerifyingKey) -> TrustStore {
        TrustStore {
            anchor_is_root: true,
            ..TrustStore::new(root)
        }
    }

    /// A store whose memo of verified signatures is `memo`, shared with every other store
    /// made with a clone of it (see [`SignatureMemo`]); revocations and the anchor stay this
    /// store's own.
    pub fn with_shared_memo(anchor: VerifyingKey, memo: SignatureMemo) -> TrustStore {
        TrustStore {
            anchor,
            anchor_is_root: false,
            revoked: BTreeSet::new(),
            verified: Memo::Shared(memo),
        }
    }

    /// The trust anchor: the offline root key (or, without a root, the national key).
    pub fn anchor(&self) -> VerifyingKey {
        self.anchor
    }

    /// Whether this store knows its anchor to be an offline root (see [`TrustStore::new`]).
    pub fn anchor_is_root(&self) -> bool {
        self.anchor_is_root
    }

    pub fn is_revoked(&self, key: &VerifyingKey) -> bool {
        self.revoked.contains(key.as_bytes())
    }

    /// Revokes a key (out-of-band revocation list, or a verified rotation).
    pub fn revoke(&mut self, key: &VerifyingKey) -> Result<(), CertError> {
        if self.revoked.len() >= REVOKED_KEYS_MAX && !self.is_revoked(key) {
            return Err(CertError::RevocationListFull {
                max: REVOKED_KEYS_MAX,
            });
        }
        self.revoked.insert(key.to_bytes());
        Ok(())
    }

    /// Rotates the anchor: the old anchor signs the new key, and is refused afterwards. With
    /// an offline root (the new anchor is a root too) only the national certificate must be
    /// re-issued by the new root — every chain takes it at its head, the certificates below
    /// it stay valid. Without a root (the anchor is the national key) every province must be
    /// re-certified by the new national key.
    pub fn rotate_anchor(
        &mut self,
        new_anchor: VerifyingKey,
        signature_by_old: &Signature,
    ) -> Result<(), CertError> {
        let d = digest(ANCHOR_ROTATION_DOMAIN, new_anchor.as_bytes());
        self.anchor
            .verify(&d, signature_by_old)
            .map_err(|_| CertError::BadRotationSignature {
                subject: RegionCode::NATIONAL,
            })?;
        let old = self.anchor;
        self.revoke(&old)?;
        self.anchor = new_anchor;
        Ok(())
    }

    /// What the old anchor signs to hand over to `new_anchor`.
    pub fn sign_anchor_rotation(old: &SigningKey, new_anchor: &VerifyingKey) -> Signature {
        old.sign(&digest(ANCHOR_ROTATION_DOMAIN, new_anchor.as_bytes()))
    }

    /// Verifies a chain from the anchor down to its leaf at time `now`. A valid rotation
    /// certificate in the chain revokes the key it replaces (from now on).
    ///
    /// The walk starts at the national region with the anchor as the issuing key. A national
    /// certificate (subject and issuer national) may only come first: the anchor certifies
    /// the national key, which then issues the provinces' certificates. A chain without one
    /// starts at the provinces, issued by the anchor itself — valid only while the store does
    /// not know its anchor to be a root. A national certificate for the anchor key itself is
    /// trusted directly by a store that does not know its anchor to be a root (see the module
    /// documentation), and refused by one that does.
    pub fn verify_chain(
        &mut self,
        chain: &[Certificate],
        now: UnixMs,
    ) -> Result<VerifiedIdentity, CertError> {
        check_chain_limits(chain)?;
        if self.is_revoked(&self.anchor) {
            return Err(CertError::Revoked {
                subject: RegionCode::NATIONAL,
            });
        }
        if chain.is_empty() && self.anchor_is_root {
            return Err(CertError::RootIsNotANode);
        }
        let mut region = RegionCode::NATIONAL;
        let mut key = self.anchor;
        let mut peer_id: &[u8] = &[];
        let mut not_after = UnixMs::MAX;
        for (index, cert) in chain.iter().enumerate() {
            let b = &cert.body;
            let subject = b.subject;
            let national = subject == RegionCode::NATIONAL;
            if national && index > 0 {
                return Err(CertError::NationalNotFirst { index });
            }
            if !national && index == 0 && self.anchor_is_root {
                return Err(if b.issuer_key == self.anchor {
                    CertError::RootCertifiesOnlyNational { subject }
                } else {
                    CertError::NationalCertificateMissing { subject }
                });
            }
            // The anchor itself certified as the national key: a store that does not know
            // its anchor to be a root trusts that key directly, whoever signed it.
            let anchor_itself = national && b.subject_key == self.anchor;
            if anchor_itself && self.anchor_is_root {
                return Err(CertError::RootIsNotANode);
            }
            if b.issuer != region {
                return Err(CertError::ChainBroken {
                    subject,
                    expected: region,
                    found: b.issuer,
                });
            }
            if b.issuer_key != key && !anchor_itself {
                return Err(CertError::IssuerKeyMismatch {
                    subject,
                    issuer: region,
                });
            }
            structural_check(b)?;
            if now < b.not_before {
                return Err(CertError::NotYetValid {
                    subject,
                    not_before: b.not_before,
                    now,
                });
            }
            if now >= b.not_after {
                return Err(CertError::Expired {
                    subject,
                    not_after: b.not_after,
                    now,
                });
            }
            if self.is_revoked(&b.subject_key) {
                return Err(CertError::Revoked { subject });
            }
            let d = b.digest();
            if !anchor_itself {
                if !self.check_signature(&b.issuer_key, &d, &cert.issuer_signature) {
                    return Err(CertError::BadSignature { subject });
                }
                if national {
                    // The anchor signed a national certificate: it is a root.
                    self.anchor_is_root = true;
                }
            }
            // (A certificate trusted directly, its issuer's signature unchecked, revokes
            // nothing.)
            if let Some(old) = b.replaces.as_ref().filter(|_| !anchor_itself) {
                // The old key is revoked by this very rotation (or may have been revoked
                // already, e.g. after a compromise): its co-signature still proves consent,
                // and the parent's signature is what grants the new key.
                let ok = cert.rotation_signature.is_some_and(|sig| {
                    self.check_signature_ignoring_revocation(
                        old,
                        &digest(ROTATION_DOMAIN, &d),
                        &sig,
                    )
                });
                if !ok {
                    return Err(CertError::BadRotationSignature { subject });
                }
                if old != &b.subject_key {
                    self.revoke(old)?;
                }
            }
            region = subject;
            key = b.subject_key;
            peer_id = &b.peer_id;
            not_after = not_after.min(b.not_after);
        }
        Ok(VerifiedIdentity {
            region,
            key,
            peer_id: peer_id.to_vec(),
            not_after,
        })
    }

    /// Verifies a chain and that its leaf key signed `message_digest`.
    pub fn verify_signed(
        &mut self,
        chain: &[Certificate],
        now: UnixMs,
        message_digest: &[u8; 32],
        signature: &Signature,
    ) -> Result<VerifiedIdentity, CertError> {
        let identity = self.verify_chain(chain, now)?;
        if !self.check_signature(&identity.key, message_digest, signature) {
            return Err(CertError::BadMessageSignature {
                signer: identity.region,
            });
        }
        Ok(identity)
    }

    /// Verifies a signed document that is *relayed* after signing (catalog versions; manifests
    /// instead may not outlive their signer's chain): valid if the chain verifies now, or —
    /// when a certificate has merely expired since — if it verified at `signed_at` (so
    /// `signed_at` lies inside every certificate's validity) and `now` is within `grace_ms`
    /// of it. Revocation always applies. Without this, a jurisdiction whose certificate lapses
    /// while its catalog version is still travelling up would lose that version for good; the
    /// grace bounds how far an expired (not revoked) key could backdate (README, trust notes).
    pub fn verify_signed_relayed(
        &mut self,
        chain: &[Certificate],
        now: UnixMs,
        signed_at: UnixMs,
        grace_ms: u64,
        message_digest: &[u8; 32],
        signature: &Signature,
    ) -> Result<VerifiedIdentity, CertError> {
        match self.verify_signed(chain, now, message_digest, signature) {
            Err(CertError::Expired { .. })
                if signed_at <= now && now.since_ms(signed_at) <= grace_ms =>
            {
                self.verify_signed(chain, signed_at, message_digest, signature)
            }
            other => other,
        }
    }

    /// Whether `key` (not revoked) signed `msg`: for keys certified outside a chain (a
    /// department's, [`crate::department::DepartmentCert`]).
    pub fn check_key_signature(
        &mut self,
        key: &VerifyingKey,
        msg: &[u8; 32],
        sig: &Signature,
    ) -> bool {
        self.check_signature(key, msg, sig)
    }

    /// Verifies a signature, remembering successes (bounded) so a relayed chain is checked once.
    fn check_signature(&mut self, key: &VerifyingKey, msg: &[u8; 32], sig: &Signature) -> bool {
        !self.is_revoked(key) && self.check_signature_ignoring_revocation(key, msg, sig)
    }

    fn check_signature_ignoring_revocation(
        &mut self,
        key: &VerifyingKey,
        msg: &[u8; 32],
        sig: &Signature,
    ) -> bool {
        let mut h = blake3::Hasher::new();
        h.update(key.as_bytes());
        h.update(msg);
        h.update(&sig.to_bytes());
        let memo = *h.finalize().as_bytes();
        if self.verified.contains(&memo) {
            return true;
        }
        // verify_strict: rejects weak keys and malleable signatures.
        let ok = key.verify_strict(msg, sig).is_ok();
        if ok {
            self.verified.insert(memo);
        }
        ok
    }
}

/// A signed revocation: an ancestor jurisdiction declares a descendant's key void (e.g. after
/// a compromise). Distributed by the shells out of band (CLI, configuration, gossip) and
/// applied with [`TrustStore::apply_revocation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub subject: RegionCode,
    pub key: VerifyingKey,
    pub at: UnixMs,
    pub issuer_chain: CertChain,
    pub signature: Signature,
}

impl Revocation {
    /// `issuer` revokes `key` of the descendant region `subject`.
    pub fn issue(
        issuer: &NodeIdentity,
        subject: RegionCode,
        key: VerifyingKey,
        at: UnixMs,
    ) -> Result<Revocation, CertError> {
        if subject == issuer.region || !issuer.region.contains(subject) {
            return Err(CertError::OutsideIssuerRegion {
                subject,
                issuer: issuer.region,
            });
        }
        Ok(Revocation {
            subject,
            key,
            at,
            issuer_chain: issuer.chain.clone(),
            signature: issuer.sign(&digest(REVOCATION_DOMAIN, &(subject, key, at))),
        })
    }

    /// The offline root revokes a national key (after a compromise, or once a rotation is
    /// complete): subject national, no issuer chain — the anchor's signature is the proof.
    pub fn issue_by_root(root_key: &SigningKey, key: VerifyingKey, at: UnixMs) -> Revocation {
        let subject = RegionCode::NATIONAL;
        Revocation {
            subject,
            key,
            at,
            issuer_chain: Vec::new(),
            signature: root_key.sign(&digest(REVOCATION_DOMAIN, &(subject, key, at))),
        }
    }
}

impl TrustStore {
    /// Verifies a revocation (issuer chain valid now, issuer a strict ancestor of the subject,
    /// signature) and revokes the key. A national key is revoked by the anchor itself
    /// ([`Revocation::issue_by_root`]: empty issuer chain, signed by the anchor).
    pub fn apply_revocation(&mut self, r: &Revocation, now: UnixMs) -> Result<(), CertError> {
        let d = digest(REVOCATION_DOMAIN, &(r.subject, r.key, r.at));
        if r.subject == RegionCode::NATIONAL && r.issuer_chain.is_empty() {
            let anchor = self.anchor;
            if self.is_revoked(&anchor) {
                return Err(CertError::Revoked {
                    subject: RegionCode::NATIONAL,
                });
            }
            if !self.check_signature(&anchor, &d, &r.signature) {
                return Err(CertError::BadMessageSignature {
                    signer: RegionCode::NATIONAL,
                });
            }
            return self.revoke(&r.key);
        }
        let issuer = self.verify_signed(&r.issuer_chain, now, &d, &r.signature)?;
        if r.subject == issuer.region || !issuer.region.contains(r.subject) {
            return Err(CertError::OutsideIssuerRegion {
                subject: r.subject,
                issuer: issuer.region,
            });
        }
        self.revoke(&r.key)
    }
}

/// A node's own signing identity: its region, key and chain. Used by the state machines to
/// sign receipts and by shells to sign catalog updates and manifests.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub region: RegionCode,
    pub key: SigningKey,
    pub chain: CertChain,
}

impl NodeIdentity {
    /// The national node whose key is itself the anchor (no offline root: simulators,
    /// protocol tests): its chain is empty. A deployment uses
    /// [`NodeIdentity::national_certified`].
    pub fn national(key: SigningKey) -> NodeIdentity {
        NodeIdentity {
            region: RegionCode::NATIONAL,
            key,
            chain: Vec::new(),
        }
    }

    /// The national node certified by the offline root: its chain is its national
    /// certificate ([`Certificate::issue_national`]), which must be for `key`. Checked here
    /// structurally only; the chain is verified against the anchor like any other.
    pub fn national_certified(
        key: SigningKey,
        national_cert: Certificate,
    ) -> Result<NodeIdentity, CertError> {
        let b = &national_cert.body;
        if b.subject != RegionCode::NATIONAL || b.issuer != RegionCode::NATIONAL {
            return Err(CertError::NotNational { subject: b.subject });
        }
        if b.subject_key != key.verifying_key() {
            return Err(CertError::OtherKey { subject: b.subject });
        }
        structural_check(b)?;
        Ok(NodeIdentity {
            region: RegionCode::NATIONAL,
            key,
            chain: vec![national_cert],
        })
    }

    /// Signs a digest with this node's key.
    pub fn sign(&self, message_digest: &[u8; 32]) -> Signature {
        self.key.sign(message_digest)
    }

    /// Issues a certificate for a child region and returns the child's identity chain
    /// (this node's chain plus the new certificate: under a root, a province's chain is
    /// `[national, province]`).
    pub fn certify_child(
        &self,
        child_key: &SigningKey,
        peer_id: Vec<u8>,
        not_before: UnixMs,
        not_after: UnixMs,
        child: RegionCode,
        serial: u64,
    ) -> Result<NodeIdentity, CertError> {
        let cert = Certificate::issue(
            self.region,
            &self.key,
            CertRequest {
                subject: child,
                subject_key: child_key.verifying_key(),
                peer_id,
                not_before,
                not_after,
                serial,
            },
        )?;
        let mut chain = self.chain.clone();
        chain.push(cert);
        Ok(NodeIdentity {
            region: child,
            key: child_key.clone(),
            chain,
        })
    }
}

#[cfg(test)]
mod memo_tests {
    use super::*;

    const NOW: UnixMs = UnixMs(1_767_225_600_000);
    const DAY: u64 = 24 * 60 * 60 * 1000;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    /// national → 11 → 1101 → 110101: a chain of three certificates.
    fn county() -> (VerifyingKey, NodeIdentity) {
        let national = NodeIdentity::national(key(1));
        let mut id = national.clone();
        for (n, code) in [(2, "11"), (3, "1101"), (4, "110101")] {
            id = id
                .certify_child(
                    &key(n),
                    Vec::new(),
                    NOW.minus_ms(DAY),
                    NOW.plus_ms(DAY),
                    code.parse().unwrap(),
                    u64::from(n),
                )
                .unwrap();
        }
        (national.key.verifying_key(), id)
    }

    #[test]
    fn stores_sharing_a_memo_verify_a_signature_once_and_keep_their_own_revocations() {
        let (anchor, county) = county();
        let memo = SignatureMemo::new();
        let mut a = TrustStore::with_shared_memo(anchor, memo.clone());
        let mut b = TrustStore::with_shared_memo(anchor, memo.clone());
        assert!(memo.is_empty());
        a.verify_chain(&county.chain, NOW).unwrap();
        assert_eq!(memo.len(), 3, "one entry per certificate signature");
        // The other store finds all three in the shared memo: nothing new is remembered.
        b.verify_chain(&county.chain, NOW).unwrap();
        assert_eq!(memo.len(), 3);
        // A store of its own (`new`) shares nothing.
        let mut own = TrustStore::new(anchor);
        own.verify_chain(&county.chain, NOW).unwrap();
        assert_eq!(memo.len(), 3);

        // Revocations stay per store, though the signature is in the shared memo.
        b.revoke(&county.chain[1].body.subject_key).unwrap();
        assert!(matches!(
            b.verify_chain(&county.chain, NOW),
            Err(CertError::Revoked { .. })
        ));
        a.verify_chain(&county.chain, NOW).unwrap();

        // A bad signature is never remembered, and fails for every sharer.
        let mut forged = county.chain.clone();
        forged[2].issuer_signature = key(9).sign(&forged[2].body.digest());
        assert!(matches!(
            a.verify_chain(&forged, NOW),
            Err(CertError::BadSignature { .. })
        ));
        assert_eq!(memo.len(), 3);
    }

    #[test]
    fn a_shared_memo_keeps_the_bound() {
        let memo = SignatureMemo::new();
        let mut m = Memo::Shared(memo.clone());
        for i in 0..TRUST_CACHE_ENTRIES_MAX as u64 {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&i.to_le_bytes());
            m.insert(d);
        }
        assert_eq!(memo.len(), TRUST_CACHE_ENTRIES_MAX);
        // Full: cleared, then the new entry goes in.
        m.insert([0xff; 32]);
        assert_eq!(memo.len(), 1);
        assert!(m.contains(&[0xff; 32]));
    }
}
