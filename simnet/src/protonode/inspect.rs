//! What a node shows the invariants at the end: the data it holds and its catalog versions.

use backflow_protocol::catalog::CatalogOrigin;
use backflow_protocol::manifest::Hash;
use backflow_topology::RegionCode;

use super::ProtoNode;
use crate::inspect::{Held, Inspect};
use crate::world::CHURN_DEPARTMENT;

impl Inspect for ProtoNode {
    fn held(&self) -> Held {
        // The manifests that concern this node: those whose scope contains it (a receiver) or
        // that it contains (a publisher above the scope).
        let relevant: Vec<Hash> = self
            .world
            .manifests
            .iter()
            .filter(|(scope, _)| scope.contains(self.me) || self.me.contains(*scope))
            .map(|(_, h)| *h)
            .collect();
        if relevant.is_empty() {
            return Held::default();
        }
        let rf = self.ep.as_ref().map(|ep| ep.return_flow());
        let mut held = Held {
            complete: relevant
                .iter()
                .all(|h| rf.is_some_and(|rf| rf.is_complete(h))),
            bytes: self.stored_bytes,
            records: 0,
            hash: None,
        };
        // What this node holds, from its durable store and the verified entries it received.
        for hash in &relevant {
            let Some(record) = self.store.records.get(hash) else {
                held.complete = false;
                continue;
            };
            for e in &record.entries {
                let full = e.bytes == 0
                    || self
                        .store
                        .held(e)
                        .is_some_and(|l| l.bytes_of(e.bytes) == e.bytes);
                if full {
                    held.records += e.records;
                }
                if e.region == self.me {
                    held.hash = Some(e.content_hash);
                }
            }
        }
        held
    }

    fn catalog_version(&self, origin: RegionCode) -> u64 {
        let origin = CatalogOrigin {
            region: origin,
            department: CHURN_DEPARTMENT.to_string(),
        };
        self.ep
            .as_ref()
            .and_then(|ep| ep.catalog_sync().origin(&origin))
            .map_or(0, |c| c.seq)
    }
}
