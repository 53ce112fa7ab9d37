//! The protocol nodes' world, built once per run and shared read-only by every node: keys
//! derived from the seed, certificate chains from the national anchor down (what each node's
//! transport authenticates and its hello carries), the publisher's signed manifests, the
//! tuning and routing every endpoint starts with, and one signature memo per province.

use std::collections::BTreeMap;
use std::sync::Arc;

use backflow_protocol::catalog::{CatalogOrigin, DataType};
use backflow_protocol::cert::{CertChain, CertRequest, Certificate, NodeIdentity, SignatureMemo};
use backflow_protocol::endpoint::{auth_of_key, EndpointConfig, PeerAuth, Saved};
use backflow_protocol::manifest::{
    build_manifest, Hash, ManifestError, PartitionEntry, Schema, SchemaField, SignedManifest,
};
use backflow_protocol::return_flow::{DataRouting, ReturnFlowError};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::tuning::Tuning;
use backflow_protocol::{Endpoint, TrustStore};
use backflow_topology::{Level, RegionCode, Topology};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::dataset::Layout;
use crate::error::SimError;
use crate::run_config::{Routing, RunConfig};
use crate::time::Micros;

/// Simulated time zero: 2026-01-01T00:00:00Z. Certificates and manifests are valid around it.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
/// The department whose catalog changes in the churn scenario, and the publishing one.
pub const CHURN_DEPARTMENT: &str = "civil-affairs";
const PUBLISHER_DEPARTMENT: &str = "statistics";
/// Every node's catalog log id. A crash keeps the log (simnet's store is durable), so the id
/// never has to change.
pub const CATALOG_LOG_ID: u64 = 1;

/// A signed manifest and the partition entries it covers, as the publisher hands them over.
pub type Publication = (SignedManifest, Vec<PartitionEntry>);

/// Read-only data shared by all protocol nodes of a run.
pub struct World {
    /// Region of each node, sorted (the topology's order: node `i` runs `codes[i]`).
    codes: Vec<RegionCode>,
    keys: Vec<SigningKey>,
    /// Each node's own certificate (`None` for national) and its parent's index: a chain is
    /// its parent's chain plus its own certificate, put together when needed (keeping every
    /// chain whole would hold each certificate once per descendant).
    certs: Vec<Option<(usize, Certificate)>>,
    anchor: VerifyingKey,
    /// One memo of verified signatures per province subtree (and one for national), or one
    /// for the whole country ([`MemoScope`]), shared
    /// by the trust stores of its nodes; see [`World::endpoint_config`].
    memos: BTreeMap<RegionCode, SignatureMemo>,
    /// Every manifest of the run's dataset: (scope, hash). One, unless the protocol refused a
    /// manifest that large and it was split by region (see [`build`]).
    pub manifests: Vec<(RegionCode, Hash)>,
    /// What every endpoint starts with: the run's tuning (simnet's options layered on top)
    /// and data-plane routing, the same on every node (as the protocol requires).
    tuning: Tuning,
    routing: DataRouting,
    /// Timers beyond this are not scheduled (the run ends before; e.g. manifest expiry).
    pub timer_cap_us: Micros,
    /// Simulated time zero, Unix ms ([`EPOCH_MS`] unless the scenario sets its own, e.g. the
    /// sharing scenario's window): certificates are valid from a day before to a year after.
    pub epoch_ms: u64,
    memo_scope: MemoScope,
}

/// Which trust stores share a memo of verified signatures (wall-clock only: whether a
/// signature verifies is a pure function; the simulated CPU is the cost model's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoScope {
    /// One per province subtree and one for national: a return-flow's signatures are relayed
    /// to every node of a province.
    Province,
    /// One for the whole country: a share act crosses two provinces and national, and is
    /// checked once instead of three times.
    Country,
}

/// What [`build`] makes: the world, and at the publisher's index what it publishes.
pub struct Built {
    pub world: Arc<World>,
    pub publisher: Option<(usize, Vec<Publication>)>,
}

impl World {
    pub fn codes(&self) -> &[RegionCode] {
        &self.codes
    }

    /// The protocol's time at simulated time `us`.
    pub fn now_ms(&self, us: Micros) -> UnixMs {
        UnixMs(self.epoch_ms + us / crate::time::MICROS_PER_MS)
    }

    /// Simulated time of a protocol instant (0 before the epoch).
    pub fn to_us(&self, t: UnixMs) -> Micros {
        t.0.saturating_sub(self.epoch_ms)
            .saturating_mul(crate::time::MICROS_PER_MS)
    }

    /// The tuning every endpoint starts with.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    pub fn index_of(&self, region: RegionCode) -> Option<usize> {
        self.codes.binary_search(&region).ok()
    }

    /// Node `i`'s signing identity: its region, key and chain.
    pub fn identity(&self, i: usize) -> NodeIdentity {
        NodeIdentity {
            region: self.codes[i],
            key: self.keys[i].clone(),
            chain: self.chain(i),
        }
    }

    /// Node `i`'s certificate chain (anchor-most first), as its hello carries it.
    pub fn chain(&self, i: usize) -> CertChain {
        let mut chain: CertChain = std::iter::successors(self.certs[i].as_ref(), |(parent, _)| {
            self.certs[*parent].as_ref()
        })
        .map(|(_, cert)| cert.clone())
        .collect();
        chain.reverse();
        chain
    }

    /// What a transport connection to node `i` authenticates: its key (no separate peer id:
    /// the certificates carry none).
    pub fn auth(&self, i: usize) -> PeerAuth {
        auth_of_key(&self.keys[i].verifying_key())
    }

    /// How node `i`'s endpoint is set up, at start and after every restart. Its trust store
    /// is its own (anchor, revocations) but shares its province's memo of verified
    /// signatures: a signature relayed to every node there is checked once per province,
    /// not once per node (wall-clock only: the memo is a pure function, and the CPU the
    /// simulated nodes pay is the engine's cost model, not this).
    pub fn endpoint_config(&self, i: usize) -> EndpointConfig {
        let me = self.codes[i];
        let key = match self.memo_scope {
            MemoScope::Province => memo_key(me),
            MemoScope::Country => RegionCode::NATIONAL,
        };
        let memo = self.memos.get(&key).cloned().unwrap_or_default();
        EndpointConfig {
            identity: self.identity(i),
            trust: TrustStore::with_shared_memo(self.anchor, memo),
            tuning: self.tuning.clone(),
            routing: self.routing.clone(),
            catalog_log_id: CATALOG_LOG_ID,
        }
    }
}

/// The memo a region's trust store shares: its province's (national's own for national).
fn memo_key(region: RegionCode) -> RegionCode {
    region
        .ancestor_at(Level::Province)
        .unwrap_or(RegionCode::NATIONAL)
}

/// Builds the world: keys from the seed, certificates from the national anchor down, and
/// (at the publisher) the signed manifests of the dataset.
pub fn build(topo: &Topology, layout: &Layout, config: &RunConfig) -> Result<Built, SimError> {
    build_at(topo, layout, config, EPOCH_MS, MemoScope::Province)
}

/// [`build`] with simulated time zero at `epoch_ms` (Unix ms) and signature memos shared
/// over `memo_scope`.
pub fn build_at(
    topo: &Topology,
    layout: &Layout,
    config: &RunConfig,
    epoch_ms: u64,
    memo_scope: MemoScope,
) -> Result<Built, SimError> {
    let codes = topo.codes();
    let key_for = |code: RegionCode| {
        let mut h = blake3::Hasher::new();
        h.update(b"backflow-simnet/node-key/v1");
        h.update(&config.seed.to_le_bytes());
        h.update(&code.digits().to_le_bytes());
        h.update(&[code.level().depth()]);
        SigningKey::from_bytes(h.finalize().as_bytes())
    };
    let not_before = UnixMs(epoch_ms - DAY_MS);
    let not_after = UnixMs(epoch_ms + 365 * DAY_MS);
    // Keys and certificates are independent per node, so they are made on all cores (setup
    // only; the event loop stays single-threaded). Results land by index: deterministic.
    let parents: Vec<Option<usize>> = codes
        .iter()
        .map(|c| c.parent().and_then(|p| codes.binary_search(&p).ok()))
        .collect();
    if let Some(orphan) = (1..codes.len()).find(|&i| parents[i].is_none()) {
        return Err(SimError::Orphan(codes[orphan]));
    }
    let keys: Vec<SigningKey> = par_map(codes.len(), |i| key_for(codes[i]));
    let certs: Vec<Option<Result<Certificate, SimError>>> = par_map(codes.len(), |i| {
        parents[i].map(|pi| {
            Certificate::issue(
                codes[pi],
                &keys[pi],
                CertRequest {
                    subject: codes[i],
                    subject_key: keys[i].verifying_key(),
                    peer_id: Vec::new(),
                    not_before,
                    not_after,
                    serial: i as u64,
                },
            )
            .map_err(|error| SimError::Certify {
                region: codes[i],
                error,
            })
        })
    });
    let certs: Vec<Option<(usize, Certificate)>> = certs
        .into_iter()
        .zip(&parents)
        .map(|(cert, parent)| match (cert, parent) {
            (Some(cert), Some(pi)) => Ok(Some((*pi, cert?))),
            // National: its key is the anchor.
            _ => Ok(None),
        })
        .collect::<Result<_, SimError>>()?;
    let anchor = keys[0].verifying_key();
    let tuning = config.node_tuning();
    let routing = match config.routing {
        // Provinces announce straight to their counties (and to their cities, for the
        // cities' own partitions); fallback as in skip-level.
        Routing::Direct => DataRouting::tree()
            .with_direct(Level::Province, Level::County)
            .map_err(SimError::Routing)?,
        Routing::Strict | Routing::SkipLevel => DataRouting::tree(),
    };
    let memos: BTreeMap<RegionCode, SignatureMemo> = codes
        .iter()
        .filter(|c| match memo_scope {
            MemoScope::Province => c.level() <= Level::Province,
            MemoScope::Country => c.level() == Level::National,
        })
        .map(|&c| (c, SignatureMemo::new()))
        .collect();
    let mut world = World {
        codes: codes.to_vec(),
        keys,
        certs,
        anchor,
        memos,
        manifests: Vec::new(),
        tuning,
        routing,
        timer_cap_us: config.limits.horizon_us,
        epoch_ms,
        memo_scope,
    };
    let publisher = match config.publisher {
        Some(publisher) => {
            let (pi, published) = publications(&world, topo, layout, publisher)?;
            world.manifests = published
                .iter()
                .map(|(m, _)| (m.manifest.scope, m.manifest.hash()))
                .collect();
            Some((pi, published))
        }
        None => None,
    };
    Ok(Built {
        world: Arc::new(world),
        publisher,
    })
}

/// The publisher's signed manifests: one for its whole region if the protocol accepts it; if
/// it refuses one as too large (more partitions than one manifest or announce may carry, as
/// in big synthetic fan-outs), one per child region instead, recursively.
fn publications(
    world: &World,
    topo: &Topology,
    layout: &Layout,
    publisher: RegionCode,
) -> Result<(usize, Vec<Publication>), SimError> {
    let codes = topo.codes();
    let schema = Schema {
        header: b"village,payload\n".to_vec(),
        name: "simnet-records".to_string(),
        fields: vec![
            SchemaField {
                name: "village".to_string(),
                data_type: DataType::RegionCode,
            },
            SchemaField {
                name: "payload".to_string(),
                data_type: DataType::Binary,
            },
        ],
    };
    let schema_hash = schema.hash();
    let entry_of = |i: usize, c: RegionCode| PartitionEntry {
        region: c,
        content_hash: layout.parts[i].hash,
        bytes: layout.parts[i].bytes,
        records: layout.parts[i].records,
        schema_hash,
    };
    let pi = world.index_of(publisher).unwrap_or(0);
    let identity = world.identity(pi);
    let mut published = Vec::new();
    let mut todo = vec![publisher];
    while let Some(scope) = todo.pop() {
        // Too many partitions for one manifest: split by child region, if there are any.
        let split = |todo: &mut Vec<RegionCode>| {
            let children = topo.children(scope);
            todo.extend(children.iter().rev());
            !children.is_empty()
        };
        let entries: Vec<PartitionEntry> = codes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.level() == Level::Township && scope.contains(**c))
            .map(|(i, &c)| entry_of(i, c))
            .collect();
        let dataset = if scope == publisher {
            layout.dataset_id.clone()
        } else {
            format!("{}@{scope}", layout.dataset_id)
        };
        let built = build_manifest(
            dataset,
            1,
            CatalogOrigin {
                region: publisher,
                department: PUBLISHER_DEPARTMENT.to_string(),
            },
            scope,
            UnixMs(world.epoch_ms),
            UnixMs(world.epoch_ms + 30 * DAY_MS),
            None,
            schema.clone(),
            &entries,
        );
        let manifest = match built {
            Ok(m) => m,
            Err(ManifestError::Limit(_)) if split(&mut todo) => continue,
            Err(error) => return Err(SimError::BuildManifest { scope, error }),
        };
        let signed = SignedManifest::sign(manifest, &identity)
            .map_err(|error| SimError::SignManifest { scope, error })?;
        // Dry run on a throwaway endpoint, so a manifest the protocol refuses is a clear
        // error (or a split), not a dead run.
        let mut probe = Endpoint::<RegionCode>::new(
            UnixMs(world.epoch_ms),
            world.endpoint_config(pi),
            Saved::default(),
        )
        .map_err(|error| SimError::NodeStart {
            region: publisher,
            error,
        })?
        .0;
        match probe.publish(UnixMs(world.epoch_ms), signed.clone(), entries.clone()) {
            Ok(_) => published.push((signed, entries)),
            Err(ReturnFlowError::Manifest(ManifestError::Limit(_))) if split(&mut todo) => {}
            Err(error) => return Err(SimError::PublishRefused { scope, error }),
        }
    }
    Ok((pi, published))
}

/// `(0..n).map(f)` computed on up to 4 threads, in order.
fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get().min(4));
    if threads < 2 || n < 1_024 {
        return (0..n).map(f).collect();
    }
    let chunk = n.div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(n))
                        .map(f)
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Spread;
    use crate::run_config::TopologySpec;

    /// Chains are put together from each node's own certificate; they verify to the anchor
    /// and name the node's key, as the transport will authenticate it.
    #[test]
    fn every_chain_verifies_to_the_anchor_and_binds_the_nodes_key() {
        let cfg = RunConfig::return_flow(TopologySpec::parse("synthetic:2,2,2,2").unwrap(), 5);
        let topo = cfg.topology.build(cfg.seed).unwrap();
        let layout = Layout::new(&topo, RegionCode::NATIONAL, "t", 1 << 20, 100, Spread::Even);
        let world = build(&topo, &layout, &cfg).unwrap().world;
        let mut trust = TrustStore::new(world.anchor);
        for (i, &code) in topo.codes().iter().enumerate() {
            let chain = world.chain(i);
            assert_eq!(chain.len(), code.level().depth() as usize, "{code}");
            let id = trust.verify_chain(&chain, UnixMs(EPOCH_MS)).unwrap();
            assert_eq!(id.region, code);
            assert_eq!(id.key.to_bytes(), world.auth(i).key);
        }
        assert_eq!(world.manifests.len(), 1);
    }
}
