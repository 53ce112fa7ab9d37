//! Inspection of another node's ledger over the network (查阅, Art. 29: 政务数据共享主管部门和
//! 政务数据提供部门可以查阅政务数据需求部门有关记录 — the sharing authority and the providing
//! department may inspect the requesting department's records).
//!
//! Who may ask, checked by the node whose ledger it is (the *target*):
//! - the provider of a grant ([`InspectScope::Grant`]): the node of the grant's provider
//!   region reads the entries of that grant (its share acts, deliveries, service calls and the
//!   requester's use records: every entry whose subject is the grant's id), nothing else;
//! - an authority above the target ([`InspectScope::All`]): a node whose region contains the
//!   target's reads every entry.
//!
//! How it holds: the query is signed by the inspector's jurisdiction key (its chain travels
//! with it), so the target knows who asks however many hops it took. The answer is a page of
//! entries, each with its RFC 6962 inclusion proof against the target's **witnessed** head —
//! signed by the target and countersigned by its parent ([`super::witnessing`]) — and the
//! target's chain, whose last certificate names the parent's key. So no hop can alter an
//! entry, and the target cannot answer from a history other than the one its parent
//! witnessed: an entry shown is the entry the log holds at that position, for good. An
//! authority reading every entry of a range also sees that none is missing (positions are
//! contiguous). A provider's page holds only its grant's entries, so an entry the target
//! leaves out of it is not detected by the provider — the authority above, reading the
//! whole range, would see it.
//!
//! Each entry also comes with its seal ([`super::seal`]): the inspector checks it under the key
//! of the department that logged it — its certificate, issued by the target's jurisdiction key,
//! travels in the page — or of the target node itself, so an entry is shown as the act of the
//! department or node that signed it, and a use record (使用记录) as the department's own.
//!
//! Entries appended after the last witnessed head are not shown until the parent witnesses
//! them (within a minute of the next head: [`super::witnessing`]).
//!
//! Routing: queries and answers go hop by hop along the region tree, each to the nearest
//! connected node on the path toward its addressee (as share acts go), never through a
//! connection opened for a grant's delivery. Only the inspector keeps state: its pending
//! queries, bounded ([`INSPECTIONS_PENDING_MAX`]), each answered — with records, a refusal
//! or a timeout ([`INSPECT_TIMEOUT_MS`]) — never left hanging.

use std::collections::BTreeMap;

use backflow_topology::RegionCode;
use ed25519_dalek::{Signature, Verifier};
use serde::{Deserialize, Serialize};

use super::entry::LedgerEntry;
use super::head::WitnessedHead;
use super::merkle::{leaf_hash, Hash, PROOF_HASHES_MAX};
use super::seal::{SealProof, SealSigner};
use super::verify::verify_inclusion;
use crate::cert::{check_chain_limits, CertChain, NodeIdentity, TrustStore};
use crate::codec::digest;
use crate::department::DepartmentCert;
use crate::limits::{check_len, Bounded, LimitError, FRAME_BYTES_MAX, TEXT_BYTES_MAX};
use crate::time::UnixMs;

use super::entry::LEDGER_ENTRY_BYTES_MAX;

const INSPECT_QUERY_DOMAIN: &[u8] = b"backflow/ledger/inspect/v1";

/// Entries in one answer.
pub const INSPECT_ENTRIES_MAX: u32 = 256;
/// Bytes of entries in one answer: half a frame, so entries, proofs and the chain fit.
pub const INSPECT_ANSWER_ENTRY_BYTES_MAX: usize = FRAME_BYTES_MAX / 2;
/// Entries the target reads for one page of a grant's records; the page says where to go on
/// (`next`), so a long log is read a bounded slice at a time.
pub const INSPECT_SCAN_ENTRIES_MAX: u64 = 65_536;
/// Queries a node has in flight as inspector.
pub const INSPECTIONS_PENDING_MAX: usize = 64;
/// A query not answered by then is reported as timed out.
pub const INSPECT_TIMEOUT_MS: u64 = 30_000;
/// Hops a query or an answer may take (a township to national and down to another township
/// is 8); one that has taken more is dropped.
pub const INSPECT_HOPS_MAX: u8 = 16;
/// How far a query's time may be from the target's clock (a replayed query is old).
pub const INSPECT_CLOCK_SKEW_MS_MAX: u64 = 5 * 60_000;

/// What an inspector reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InspectScope {
    /// The provider of this grant (its share request id): the grant's entries.
    Grant(Hash),
    /// An authority above the target: every entry.
    All,
}

/// A query, as the inspector signs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectQuery {
    /// The inspector's number for it (answers carry it back).
    pub id: u64,
    pub inspector: RegionCode,
    pub target: RegionCode,
    pub scope: InspectScope,
    /// The first entry position to read.
    pub from: u64,
    /// Entries at most ([`INSPECT_ENTRIES_MAX`]).
    pub limit: u32,
    /// When it was asked, Unix ms.
    pub time_ms: u64,
}

/// A query signed by the inspector node's jurisdiction key, with its chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInspectQuery {
    pub query: InspectQuery,
    pub signer: CertChain,
    pub signature: Signature,
}

impl SignedInspectQuery {
    pub fn sign(query: InspectQuery, identity: &NodeIdentity) -> SignedInspectQuery {
        let signature = identity.sign(&digest(INSPECT_QUERY_DOMAIN, &query));
        SignedInspectQuery {
            query,
            signer: identity.chain.clone(),
            signature,
        }
    }

    /// Checks the signature under the chain, and that the chain speaks for the inspector.
    pub fn verify(&self, trust: &mut TrustStore, now: UnixMs) -> Result<(), InspectRefusal> {
        let verified = trust
            .verify_chain(&self.signer, now)
            .map_err(|e| InspectRefusal::BadQuery(e.to_string()))?;
        if verified.region != self.query.inspector {
            return Err(InspectRefusal::BadQuery(format!(
                "signed by {}, not by the inspector {}",
                verified.region, self.query.inspector
            )));
        }
        verified
            .key
            .verify(&digest(INSPECT_QUERY_DOMAIN, &self.query), &self.signature)
            .map_err(|_| InspectRefusal::BadQuery("the query's signature does not verify".into()))
    }
}

/// One entry as logged (its leaf bytes), its inclusion proof and its seal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenEntry {
    #[serde(with = "serde_bytes")]
    pub leaf: Vec<u8>,
    pub proof: Vec<Hash>,
    /// Who logged it, signed ([`super::seal`]); required — `None` only so that a page
    /// without one is refused by name rather than undecodable.
    pub seal: Option<SealProof>,
}

/// A page of records as the target's shell reads it: the entries, proved against `head`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectPage {
    pub head: WitnessedHead,
    pub entries: Vec<ProvenEntry>,
    /// Where the next page starts, if the witnessed log goes on past what was read.
    pub next: Option<u64>,
    /// The certificates of the departments whose seals the entries carry.
    pub departments: Vec<DepartmentCert>,
}

/// Why a query was not answered with records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InspectRefusal {
    #[error("the query is malformed or not signed by the inspector: {0}")]
    BadQuery(String),
    #[error("{inspector} may not inspect this ledger: {why}")]
    NotAllowed { inspector: RegionCode, why: String },
    #[error("the ledger has no head its parent witnessed yet")]
    NotWitnessed,
    #[error("no node on the way to {0} is connected")]
    Unreachable(RegionCode),
    #[error("this node has {INSPECTIONS_PENDING_MAX} inspections in flight")]
    Busy,
    #[error("no answer within {INSPECT_TIMEOUT_MS} ms")]
    TimedOut,
    #[error("the ledger could not be read: {0}")]
    Failed(String),
}

/// The target's answer, addressed back to the inspector. Not signed as a whole: the records
/// prove themselves (see the module docs); a refusal is a statement, not evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectAnswer {
    pub id: u64,
    pub inspector: RegionCode,
    pub target: RegionCode,
    /// The page, and the target's chain (which names its parent's key).
    pub result: Result<(InspectPage, CertChain), InspectRefusal>,
}

impl Bounded for SignedInspectQuery {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_chain_limits(&self.signer)?;
        check_len(
            "inspected entries",
            self.query.limit as usize,
            INSPECT_ENTRIES_MAX as usize,
        )
    }
}

impl Bounded for InspectAnswer {
    fn check_limits(&self) -> Result<(), LimitError> {
        match &self.result {
            Ok((page, chain)) => {
                check_chain_limits(chain)?;
                check_len(
                    "inspected entries",
                    page.entries.len(),
                    INSPECT_ENTRIES_MAX as usize,
                )?;
                check_len(
                    "inspected departments",
                    page.departments.len(),
                    INSPECT_ENTRIES_MAX as usize,
                )?;
                for d in &page.departments {
                    d.check_limits()?;
                }
                let mut bytes = 0;
                for e in &page.entries {
                    check_len("ledger entry bytes", e.leaf.len(), LEDGER_ENTRY_BYTES_MAX)?;
                    check_len("inclusion proof hashes", e.proof.len(), PROOF_HASHES_MAX)?;
                    if let Some(seal) = &e.seal {
                        seal.check_limits()?;
                    }
                    bytes += e.leaf.len();
                }
                check_len(
                    "inspected entry bytes",
                    bytes,
                    INSPECT_ANSWER_ENTRY_BYTES_MAX,
                )
            }
            Err(refusal) => check_len(
                "inspection refusal bytes",
                format!("{refusal}").len(),
                TEXT_BYTES_MAX,
            ),
        }
    }
}

/// Whether `inspector` may read `scope` of the ledger of `target` — the grant rule needs the
/// grant's parties, which only the caller knows (`grant_parties`: provider and requester
/// regions of the grant, if this node knows the grant).
pub fn may_inspect(
    inspector: RegionCode,
    target: RegionCode,
    scope: &InspectScope,
    grant_parties: Option<(RegionCode, RegionCode)>,
) -> Result<(), InspectRefusal> {
    let refuse = |why: &str| {
        Err(InspectRefusal::NotAllowed {
            inspector,
            why: why.to_string(),
        })
    };
    match scope {
        InspectScope::All if inspector != target && inspector.contains(target) => Ok(()),
        InspectScope::All => refuse("only an authority above this region reads every record"),
        InspectScope::Grant(_) => match grant_parties {
            None => refuse("this node knows no such grant"),
            Some((_, requester)) if requester != target => {
                refuse("this node is not the grant's requester")
            }
            Some((provider, _)) if provider != inspector => {
                refuse("only the grant's provider reads its records")
            }
            Some(_) => Ok(()),
        },
    }
}

/// Why an answer's records do not prove themselves.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("the target's chain: {0}")]
    Chain(String),
    #[error("the head is not the target's witnessed by its parent: {0}")]
    Head(String),
    #[error("entry {index} of the answer: {why}")]
    Entry { index: usize, why: String },
    #[error("the page goes on at {next}, not after its last entry")]
    Next { next: u64 },
}

/// Checks an answer's page at the inspector: the target's chain verifies now, the head is the
/// target's, signed by it and countersigned by its parent (the chain's issuer), and every
/// entry is the target's, in the scope asked, at increasing positions from `query.from`,
/// included in the head and sealed by the department it names (its certificate checked under
/// the target's chain) or by the target. Returns the entries and who sealed each.
pub fn check_page(
    trust: &mut TrustStore,
    now: UnixMs,
    query: &InspectQuery,
    page: &InspectPage,
    chain: &CertChain,
) -> Result<(Vec<LedgerEntry>, Vec<SealSigner>), RecordsError> {
    let target = query.target;
    let verified = trust
        .verify_chain(chain, now)
        .map_err(|e| RecordsError::Chain(e.to_string()))?;
    if verified.region != target {
        return Err(RecordsError::Chain(format!(
            "it speaks for {}, not {target}",
            verified.region
        )));
    }
    let Some(last) = chain.last() else {
        return Err(RecordsError::Chain(
            "it is empty: no parent witnesses".into(),
        ));
    };
    let head = &page.head;
    if head.head.head.region != target || head.witness != last.body.issuer {
        return Err(RecordsError::Head(format!(
            "a head of {} witnessed by {}",
            head.head.head.region, head.witness
        )));
    }
    head.verify(&verified.key, &last.body.issuer_key)
        .map_err(|e| RecordsError::Head(e.to_string()))?;
    let (size, root) = (head.head.head.size, head.head.head.root);
    let subject = match query.scope {
        InspectScope::Grant(g) => Some(grant_subject(&g)),
        InspectScope::All => None,
    };
    if page.entries.len() > query.limit as usize {
        return Err(RecordsError::Entry {
            index: query.limit as usize,
            why: "more entries than asked for".into(),
        });
    }
    let mut entries = Vec::with_capacity(page.entries.len());
    let mut sealed_by = Vec::with_capacity(page.entries.len());
    let mut at = query.from;
    for (index, proven) in page.entries.iter().enumerate() {
        let bad = |why: String| RecordsError::Entry { index, why };
        let entry = LedgerEntry::decode(&proven.leaf).map_err(|e| bad(e.to_string()))?;
        if entry.seq < at {
            return Err(bad(format!("position {} is out of order", entry.seq)));
        }
        if subject.is_none() && entry.seq != at {
            return Err(bad(format!("entries {at}..{} are missing", entry.seq)));
        }
        if entry.region != target {
            return Err(bad(format!("an entry of {}", entry.region)));
        }
        if subject.as_ref().is_some_and(|s| *s != entry.subject) {
            return Err(bad("an entry of another subject".into()));
        }
        let leaf = leaf_hash(&proven.leaf);
        verify_inclusion(&leaf, entry.seq, size, &proven.proof, &root)
            .map_err(|e| bad(format!("position {}: {e}", entry.seq)))?;
        let Some(seal) = &proven.seal else {
            return Err(bad(format!("position {} carries no seal", entry.seq)));
        };
        let key = match &seal.seal.body.signer {
            SealSigner::Node => verified.key,
            SealSigner::Department(name) => {
                let cert = page
                    .departments
                    .iter()
                    .find(|c| c.body.department == *name)
                    .ok_or_else(|| {
                        bad(format!(
                            "sealed by department {name:?}, whose certificate the page lacks"
                        ))
                    })?;
                cert.verify(trust, &verified, now)
                    .map_err(|e| bad(e.to_string()))?;
                cert.body.key
            }
        };
        seal.check(&entry, &leaf, &key)
            .map_err(|e| bad(format!("position {}: its seal: {e}", entry.seq)))?;
        at = entry.seq + 1;
        entries.push(entry);
        sealed_by.push(seal.seal.body.signer.clone());
    }
    match page.next {
        Some(next) if next < at || next > size => return Err(RecordsError::Next { next }),
        // All records, and no more pages: the page must reach the head's end.
        None if subject.is_none() && at < size => {
            return Err(RecordsError::Entry {
                index: entries.len(),
                why: format!("entries {at}..{size} are missing"),
            })
        }
        _ => {}
    }
    Ok((entries, sealed_by))
}

/// The inspector's side: queries in flight.
#[derive(Clone, Debug, Default)]
pub struct Inspections {
    next_id: u64,
    pending: BTreeMap<u64, (InspectQuery, UnixMs)>,
}

impl Inspections {
    /// A new query (not yet signed) from `inspector` to `target`, due by `now` +
    /// [`INSPECT_TIMEOUT_MS`].
    pub fn start(
        &mut self,
        now: UnixMs,
        inspector: RegionCode,
        target: RegionCode,
        scope: InspectScope,
        from: u64,
        limit: u32,
    ) -> Result<InspectQuery, InspectRefusal> {
        if self.pending.len() >= INSPECTIONS_PENDING_MAX {
            return Err(InspectRefusal::Busy);
        }
        self.next_id += 1;
        let query = InspectQuery {
            id: self.next_id,
            inspector,
            target,
            scope,
            from,
            limit: limit.clamp(1, INSPECT_ENTRIES_MAX),
            time_ms: now.0,
        };
        self.pending
            .insert(query.id, (query.clone(), now.plus_ms(INSPECT_TIMEOUT_MS)));
        Ok(query)
    }

    /// The query an answer from `target` with `id` answers, taken out of pending.
    pub fn take(&mut self, id: u64, target: RegionCode) -> Option<InspectQuery> {
        match self.pending.get(&id) {
            Some((q, _)) if q.target == target => self.pending.remove(&id).map(|(q, _)| q),
            _ => None,
        }
    }

    /// Forgets a query that could not be sent.
    pub fn cancel(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// Queries past their deadline, taken out of pending.
    pub fn expired(&mut self, now: UnixMs) -> Vec<InspectQuery> {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.pending.remove(&id).map(|(q, _)| q))
            .collect()
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<UnixMs> {
        self.pending.values().map(|(_, d)| *d).min()
    }
}

/// At the target: an allowed query its shell answers with
/// [`crate::endpoint::Endpoint::answer_inspection`], reading the entries of `scope` from
/// `from` (at most `limit`, [`INSPECT_ANSWER_ENTRY_BYTES_MAX`] bytes and
/// [`INSPECT_SCAN_ENTRIES_MAX`] entries read) below `head`'s size, each with its inclusion
/// proof against `head`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectionAsked {
    pub id: u64,
    pub inspector: RegionCode,
    pub scope: InspectScope,
    pub from: u64,
    pub limit: u32,
    pub head: WitnessedHead,
}

/// At the inspector: what came of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    pub id: u64,
    pub target: RegionCode,
    /// The records, proved; or why there are none (a refusal, a timeout, or an answer that
    /// does not prove itself).
    pub result: Result<InspectedRecords, String>,
}

/// Records that proved themselves against `head`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectedRecords {
    pub head: WitnessedHead,
    pub entries: Vec<LedgerEntry>,
    /// Who sealed each entry (in `entries`' order), as checked.
    pub sealed_by: Vec<SealSigner>,
    pub next: Option<u64>,
}

/// The subject a grant's entries are logged under: its id in lower-case hex.
pub fn grant_subject(grant: &Hash) -> String {
    grant.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn who_may_inspect_what() {
        let (county, city, province, other) =
            (code("110101"), code("1101"), code("11"), code("44"));
        // Every authority above reads everything; nobody else, the node itself neither.
        for above in [city, province, RegionCode::NATIONAL] {
            assert!(may_inspect(above, county, &InspectScope::All, None).is_ok());
        }
        for not_above in [county, other, code("110101001")] {
            assert!(may_inspect(not_above, county, &InspectScope::All, None).is_err());
        }
        // A grant's records: only its provider, only at its requester.
        let grant = InspectScope::Grant([1; 32]);
        assert!(may_inspect(other, county, &grant, Some((other, county))).is_ok());
        assert!(may_inspect(city, county, &grant, Some((other, county))).is_err());
        assert!(may_inspect(other, city, &grant, Some((other, county))).is_err());
        assert!(may_inspect(other, county, &grant, None).is_err());
    }

    #[test]
    fn answers_and_queries_over_their_limits_are_refused() {
        let entry = |bytes: usize| ProvenEntry {
            leaf: vec![0; bytes],
            proof: Vec::new(),
            seal: None,
        };
        let head: WitnessedHead = WitnessedHead {
            head: super::super::head::SignedTreeHead {
                head: super::super::head::TreeHead {
                    region: code("110101"),
                    size: 1,
                    root: [0; 32],
                    time_ms: 0,
                },
                signature: Signature::from_bytes(&[0; 64]),
            },
            witness: code("1101"),
            witness_signature: Signature::from_bytes(&[0; 64]),
        };
        let answer = |entries: Vec<ProvenEntry>| InspectAnswer {
            id: 1,
            inspector: RegionCode::NATIONAL,
            target: code("110101"),
            result: Ok((
                InspectPage {
                    head: head.clone(),
                    entries,
                    next: None,
                    departments: Vec::new(),
                },
                Vec::new(),
            )),
        };
        assert!(answer(vec![entry(100); 10]).check_limits().is_ok());
        // Too many entries, one too large, too many bytes in all, a proof too long.
        assert!(answer(vec![entry(1); INSPECT_ENTRIES_MAX as usize + 1])
            .check_limits()
            .is_err());
        assert!(answer(vec![entry(LEDGER_ENTRY_BYTES_MAX + 1)])
            .check_limits()
            .is_err());
        let many = INSPECT_ANSWER_ENTRY_BYTES_MAX / LEDGER_ENTRY_BYTES_MAX + 1;
        assert!(answer(vec![entry(LEDGER_ENTRY_BYTES_MAX); many])
            .check_limits()
            .is_err());
        let long_proof = ProvenEntry {
            leaf: vec![0; 10],
            proof: vec![[0; 32]; PROOF_HASHES_MAX + 1],
            seal: None,
        };
        assert!(answer(vec![long_proof]).check_limits().is_err());
        // A query asking for more than a page holds.
        let identity = NodeIdentity::national(ed25519_dalek::SigningKey::from_bytes(&[3; 32]));
        let query = InspectQuery {
            id: 1,
            inspector: RegionCode::NATIONAL,
            target: code("110101"),
            scope: InspectScope::All,
            from: 0,
            limit: INSPECT_ENTRIES_MAX + 1,
            time_ms: 0,
        };
        assert!(SignedInspectQuery::sign(query, &identity)
            .check_limits()
            .is_err());
    }

    #[test]
    fn pending_queries_are_bounded_and_time_out() {
        let mut p = Inspections::default();
        let (me, target) = (RegionCode::NATIONAL, code("110101"));
        for _ in 0..INSPECTIONS_PENDING_MAX {
            p.start(UnixMs(0), me, target, InspectScope::All, 0, 10_000)
                .unwrap();
        }
        assert_eq!(
            p.start(UnixMs(0), me, target, InspectScope::All, 0, 10),
            Err(InspectRefusal::Busy)
        );
        // An answer from another region than asked is not taken for it.
        assert!(p.take(1, code("44")).is_none());
        let q = p.take(1, target).unwrap();
        assert_eq!(q.limit, INSPECT_ENTRIES_MAX, "a limit is clamped to a page");
        assert_eq!(p.poll_timeout(), Some(UnixMs(INSPECT_TIMEOUT_MS)));
        assert!(p.expired(UnixMs(INSPECT_TIMEOUT_MS - 1)).is_empty());
        assert_eq!(
            p.expired(UnixMs(INSPECT_TIMEOUT_MS)).len(),
            INSPECTIONS_PENDING_MAX - 1
        );
        assert_eq!(p.poll_timeout(), None);
    }
}
