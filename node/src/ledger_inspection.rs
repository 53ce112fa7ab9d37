//! Ledger inspection (查阅, Art. 29) in the node: as the node inspected, it reads the page an
//! inspector may see from its log — each entry's stored leaf bytes with its inclusion proof
//! against the head its parent witnessed — and hands it to the endpoint, which routes it back;
//! as the inspector, it passes the operator's query to the endpoint and the checked answer to
//! the waiting API call (the views are `ledger_api`'s). The rules and the proofs' checks are the protocol's
//! (`backflow_protocol::ledger::inspection`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, Context, Result};
use backflow_protocol::department::DepartmentCert;
use backflow_protocol::ledger::entry::LedgerEntry;
use backflow_protocol::ledger::inspection::{
    grant_subject, InspectPage, InspectRefusal, InspectScope, InspectedRecords, InspectionAsked,
    ProvenEntry, INSPECT_ANSWER_ENTRY_BYTES_MAX, INSPECT_SCAN_ENTRIES_MAX,
};
use backflow_protocol::ledger::merkle;
use backflow_protocol::ledger::seal::SealSigner;
use backflow_protocol::time::UnixMs;
use backflow_topology::RegionCode;
use tracing::{info, warn};

use crate::ledger::{entry_key, seq_of, StoredNodes, ENTRY_PREFIX};
use crate::ledger_api::{InspectFailure, InspectReply, InspectionView};
use crate::ledger_seal::SealProver;
use crate::runtime::Runtime;
use crate::store::{Store, CF_LEDGER};

/// Reads the page `asked` names: entries of its scope from `asked.from` below the witnessed
/// head's size, at most `asked.limit` of them and [`INSPECT_ANSWER_ENTRY_BYTES_MAX`] bytes,
/// after reading at most [`INSPECT_SCAN_ENTRIES_MAX`] entries; `next` says where to go on.
/// Each entry comes with its seal ([`crate::ledger_seal`]), and the page with the
/// certificates of the departments among `departments` that sealed any of them.
pub fn inspection_page(
    store: &Store,
    asked: &InspectionAsked,
    departments: &HashMap<&str, &DepartmentCert>,
) -> Result<InspectPage> {
    let size = asked.head.head.head.size;
    let subject = match &asked.scope {
        InspectScope::Grant(g) => Some(grant_subject(g)),
        InspectScope::All => None,
    };
    let nodes = StoredNodes(store);
    let mut prover = SealProver::new(store, asked.head.head.head.region);
    let mut certs: BTreeMap<&str, DepartmentCert> = BTreeMap::new();
    let mut entries = Vec::new();
    let (mut bytes, mut scanned) = (0usize, 0u64);
    let mut next = None;
    for item in store.iter_from(CF_LEDGER, &entry_key(asked.from)) {
        let (key, leaf) = item?;
        if key.first() != Some(&ENTRY_PREFIX) {
            break;
        }
        let seq = seq_of(&key)?;
        if seq >= size {
            break;
        }
        let full = entries.len() >= asked.limit as usize
            || bytes + leaf.len() > INSPECT_ANSWER_ENTRY_BYTES_MAX
            || scanned >= INSPECT_SCAN_ENTRIES_MAX;
        if full {
            next = Some(seq);
            break;
        }
        scanned += 1;
        let entry = LedgerEntry::decode(&leaf)
            .with_context(|| format!("ledger entry {seq} does not decode"))?;
        if subject.as_ref().is_some_and(|s| entry.subject != *s) {
            continue;
        }
        let proof = merkle::inclusion_proof(seq, size, &nodes)
            .map_err(|e| anyhow!("the inclusion proof of entry {seq}: {e}"))?;
        let seal = prover.proof(seq, entry.department.as_deref())?;
        if let Some(SealSigner::Department(d)) = seal.as_ref().map(|s| &s.seal.body.signer) {
            if let Some((name, cert)) = departments.get_key_value(d.as_str()) {
                certs.entry(name).or_insert_with(|| (*cert).clone());
            }
        }
        bytes += leaf.len();
        entries.push(ProvenEntry {
            leaf: leaf.to_vec(),
            proof,
            seal,
        });
    }
    Ok(InspectPage {
        head: asked.head.clone(),
        entries,
        next,
        departments: certs.into_values().collect(),
    })
}

impl Runtime {
    /// The operator asks for `target`'s records (of `grant`, a share request id or prefix, or
    /// all of them); `reply` gets the checked answer.
    pub(crate) fn start_inspection(
        &mut self,
        now: UnixMs,
        target: RegionCode,
        grant: Option<String>,
        from: u64,
        limit: u32,
        reply: InspectReply,
    ) {
        let scope = match grant {
            None => InspectScope::All,
            Some(g) => match crate::share_api::request_id(&self.ep, &g) {
                Ok(id) => InspectScope::Grant(id),
                Err(e) => {
                    let _ = reply.send(Err(InspectFailure::Refused(format!("{e:#}"))));
                    return;
                }
            },
        };
        match self.ep.inspect_ledger(now, target, scope, from, limit) {
            Ok(id) => {
                self.inspections_waiting.insert(id, reply);
            }
            Err(e @ InspectRefusal::NotAllowed { .. }) => {
                let _ = reply.send(Err(InspectFailure::Refused(e.to_string())));
            }
            Err(e) => {
                let _ = reply.send(Err(InspectFailure::Failed(e.to_string())));
            }
        }
    }

    /// An inspector may read `asked`: read it and answer.
    pub(crate) fn answer_inspection(&mut self, asked: InspectionAsked) {
        let certs = crate::ledger_seal::certs(self.ep.share_service().departments());
        let page = inspection_page(&self.store, &asked, &certs).map_err(|e| {
            warn!(error = %format!("{e:#}"), "a ledger inspection could not be read");
            "this node's ledger could not be read".to_string()
        });
        if let Ok(p) = &page {
            info!(
                inspector = %asked.inspector,
                entries = p.entries.len(),
                "ledger inspected (查阅)"
            );
        }
        self.ep.answer_inspection(asked.id, asked.inspector, page);
    }

    /// The answer to this node's query `id`, checked by the endpoint.
    pub(crate) fn inspection_answered(
        &mut self,
        id: u64,
        result: Result<InspectedRecords, String>,
    ) {
        if let Some(reply) = self.inspections_waiting.remove(&id) {
            let _ = reply.send(
                result
                    .as_ref()
                    .map(InspectionView::of)
                    .map_err(|why| InspectFailure::Failed(why.clone())),
            );
        }
    }
}
