//! An in-process network of real nodes on loopback: each with its own key, certificate chain
//! (a fresh offline root, held in memory only while the network starts, certifies the national
//! key, which certifies the provinces, and so on down the tree), RocksDB directory and libp2p
//! swarm on `127.0.0.1:<ephemeral>` (TCP, or QUIC with [`LocalNet::start_on`]). Used by
//! `backflow demo`, the integration tests and the benchmarks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use backflow_protocol::calendar::WorkingCalendar;
use backflow_protocol::cert::{CertRequest, Certificate, NodeIdentity};
use backflow_protocol::time::DAY_MS;
use backflow_topology::{RegionCode, Topology};
use ed25519_dalek::SigningKey;
use rand::rngs::OsRng;

use crate::node::{now_ms, peer_id_of, start, NodeHandle, NodeSetup, Tuning};

/// Which libp2p transport the local nodes listen on (each node speaks both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// TCP with TLS 1.3 (or noise) and yamux.
    #[default]
    Tcp,
    /// QUIC v1 over UDP.
    Quic,
}

impl Transport {
    /// An ephemeral loopback listen address for this transport.
    pub fn loopback(self) -> libp2p::Multiaddr {
        let a = match self {
            Transport::Tcp => "/ip4/127.0.0.1/tcp/0",
            Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        };
        a.parse().expect("a valid multiaddr literal")
    }
}

impl std::str::FromStr for Transport {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Transport::Tcp),
            "quic" => Ok(Transport::Quic),
            _ => bail!("unknown transport {s:?} (expected tcp or quic)"),
        }
    }
}

pub struct LocalNet {
    pub nodes: BTreeMap<RegionCode, NodeHandle>,
    tasks: BTreeMap<RegionCode, tokio::task::JoinHandle<Result<()>>>,
    identities: BTreeMap<RegionCode, NodeIdentity>,
    upstreams: BTreeMap<RegionCode, Vec<libp2p::Multiaddr>>,
    /// Where each stopped node listened: it restarts there, as a real node does on its
    /// configured address (peers that were told it — a grant's route — reach it again).
    listened: BTreeMap<RegionCode, Vec<libp2p::Multiaddr>>,
    anchor: ed25519_dalek::VerifyingKey,
    dir: std::path::PathBuf,
    tuning: Tuning,
    /// Departments added per node (name, key), certified again after a restart.
    departments: BTreeMap<RegionCode, Vec<(String, SigningKey)>>,
    transport: Transport,
    calendar: WorkingCalendar,
}

impl LocalNet {
    /// Starts one node per region. `regions` must be closed under parent (every region's
    /// parent is in the list) and contain national.
    pub async fn start(regions: &[RegionCode], dir: &Path, tuning: Tuning) -> Result<LocalNet> {
        Self::start_on(regions, dir, tuning, Transport::Tcp).await
    }

    /// [`LocalNet::start`] with every node listening on `transport`.
    pub async fn start_on(
        regions: &[RegionCode],
        dir: &Path,
        tuning: Tuning,
        transport: Transport,
    ) -> Result<LocalNet> {
        Self::start_with(regions, dir, tuning, transport, WorkingCalendar::official()).await
    }

    /// [`LocalNet::start_on`] with every node counting working days on `calendar`.
    pub async fn start_with(
        regions: &[RegionCode],
        dir: &Path,
        tuning: Tuning,
        transport: Transport,
        calendar: WorkingCalendar,
    ) -> Result<LocalNet> {
        let topo = Topology::china();
        let mut sorted: Vec<RegionCode> = regions.to_vec();
        sorted.sort();
        sorted.dedup();
        if sorted.first() != Some(&RegionCode::NATIONAL) {
            bail!("a local network needs the national node");
        }
        for r in &sorted {
            if topo.get(*r).is_none() {
                bail!("unknown region {r}");
            }
            if let Some(p) = r.parent() {
                if sorted.binary_search(&p).is_err() {
                    bail!("region {r} has no parent node ({p}) in the network");
                }
            }
        }
        let now = now_ms();
        let (anchor, national) = root_certified_national(now)?;
        let mut identities: BTreeMap<RegionCode, NodeIdentity> = BTreeMap::new();
        identities.insert(RegionCode::NATIONAL, national);
        // Sorted by (level, code): parents are certified before their children.
        for (serial, r) in sorted.iter().skip(1).enumerate() {
            let parent = &identities[&r.parent().expect("non-national")];
            let key = SigningKey::generate(&mut OsRng);
            let peer = peer_id_of(&key.verifying_key())?;
            let id = parent.certify_child(
                &key,
                peer.to_bytes(),
                now.minus_ms(60_000),
                now.plus_ms(365 * DAY_MS),
                *r,
                serial as u64 + 1,
            )?;
            identities.insert(*r, id);
        }
        let mut nodes: BTreeMap<RegionCode, NodeHandle> = BTreeMap::new();
        let mut tasks = BTreeMap::new();
        let mut upstreams = BTreeMap::new();
        for r in &sorted {
            // Upstream: parent first, then further ancestors for skip-level fallback.
            let upstream: Vec<libp2p::Multiaddr> = r
                .ancestors()
                .filter_map(|a| nodes.get(&a))
                .filter_map(|h| h.listen_addrs.first().cloned())
                .collect();
            let setup = NodeSetup {
                identity: identities[r].clone(),
                anchor,
                db_path: dir.join(format!("node-{r}")),
                listen: vec![transport.loopback()],
                upstream: upstream.clone(),
                tuning: tuning.clone(),
                calendar: calendar.clone(),
                fault_tamper_serve: false,
            };
            let (handle, task) = start(setup)
                .await
                .with_context(|| format!("starting node {r}"))?;
            nodes.insert(*r, handle);
            tasks.insert(*r, task);
            upstreams.insert(*r, upstream);
        }
        Ok(LocalNet {
            nodes,
            tasks,
            identities,
            upstreams,
            listened: BTreeMap::new(),
            anchor,
            dir: dir.to_path_buf(),
            tuning,
            transport,
            calendar,
            departments: BTreeMap::new(),
        })
    }

    /// Node `region` hosts department `name` (a fresh key, kept for restarts), as
    /// `backflow dept add` does at a real node.
    pub async fn add_department(&mut self, region: RegionCode, name: &str) -> Result<()> {
        let key = SigningKey::generate(&mut OsRng);
        let node = self
            .nodes
            .get(&region)
            .with_context(|| format!("no running node {region}"))?;
        node.add_department(name.to_string(), key.clone()).await?;
        self.departments
            .entry(region)
            .or_default()
            .push((name.to_string(), key));
        Ok(())
    }

    /// The trust anchor every node was started with: the root's public key (the root's
    /// secret key was dropped once it had certified the national key).
    pub fn anchor(&self) -> ed25519_dalek::VerifyingKey {
        self.anchor
    }

    /// Stops one node (cleanly) and returns once its storage is closed.
    pub async fn stop(&mut self, region: RegionCode) -> Result<()> {
        if let Some(h) = self.nodes.remove(&region) {
            let addrs = h
                .listen_addrs
                .iter()
                .map(|a| {
                    a.iter()
                        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                        .collect()
                })
                .collect();
            self.listened.insert(region, addrs);
            h.shutdown().await;
        }
        if let Some(t) = self.tasks.remove(&region) {
            t.await??;
        }
        Ok(())
    }

    /// Starts a stopped node again on its old storage and its old addresses (it dials its
    /// upstream).
    pub async fn restart(&mut self, region: RegionCode) -> Result<()> {
        let listen = self
            .listened
            .remove(&region)
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| vec![self.transport.loopback()]);
        let setup = NodeSetup {
            identity: self.identities[&region].clone(),
            anchor: self.anchor,
            db_path: self.dir.join(format!("node-{region}")),
            listen,
            upstream: self.upstreams[&region].clone(),
            tuning: self.tuning.clone(),
            calendar: self.calendar.clone(),
            fault_tamper_serve: false,
        };
        // The previous instance's blocking tasks may still hold the database briefly.
        let mut attempt = 0;
        let (handle, task) = loop {
            match start(NodeSetup {
                identity: setup.identity.clone(),
                anchor: setup.anchor,
                db_path: setup.db_path.clone(),
                listen: setup.listen.clone(),
                upstream: setup.upstream.clone(),
                tuning: setup.tuning.clone(),
                calendar: setup.calendar.clone(),
                fault_tamper_serve: false,
            })
            .await
            {
                Ok(x) => break x,
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "restart: retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        for (name, key) in self.departments.get(&region).into_iter().flatten() {
            handle.add_department(name.clone(), key.clone()).await?;
        }
        self.nodes.insert(region, handle);
        self.tasks.insert(region, task);
        Ok(())
    }

    /// Waits until every non-national node has a verified connection to its parent.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for (r, h) in &self.nodes {
            let Some(parent) = r.parent() else { continue };
            loop {
                let peers = h.peers().await?;
                if peers
                    .iter()
                    .any(|p| p.region.as_deref() == Some(&parent.to_string()))
                {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("node {r} did not connect to its parent {parent} within {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Serves every node's HTTP API and operator console on `127.0.0.1:<free port>`, as
    /// `backflow run` does: each with a data directory `<dir>/api-<region>` holding its
    /// `api.token` (created here) and its department's files.
    pub async fn serve_http(&self) -> Result<BTreeMap<RegionCode, Http>> {
        let mut served = BTreeMap::new();
        for (r, node) in &self.nodes {
            let data_dir = self.dir.join(format!("api-{r}"));
            std::fs::create_dir_all(&data_dir)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let cfg = crate::config::Config {
                region: r.to_string(),
                department: "data-authority".into(),
                listen: vec![],
                parent: None,
                ancestors: vec![],
                trust_anchor: hex::encode(self.anchor.as_bytes()),
                http: addr,
                http_allow_remote: false,
                http_hosts: vec![],
                import_dir: None,
                export_dir: None,
                tuning: self.tuning.clone(),
            };
            let app = crate::api_backend::api_router(&data_dir, &cfg, node.clone()).await?;
            let token = backflow_api::ApiToken::load(&data_dir)?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(backflow_api::serve::serve(listener, app, async {
                let _ = stopped.await;
            }));
            served.insert(
                *r,
                Http {
                    addr,
                    data_dir,
                    token,
                    stop,
                    task,
                },
            );
        }
        Ok(served)
    }

    pub async fn shutdown(self) -> Result<()> {
        for h in self.nodes.values() {
            h.shutdown().await;
        }
        for (_, t) in self.tasks {
            t.await??;
        }
        Ok(())
    }
}

/// One node's HTTP API and operator console on loopback ([`LocalNet::serve_http`]).
pub struct Http {
    pub addr: SocketAddr,
    /// Holds `api.token` and the node's department's files.
    pub data_dir: PathBuf,
    pub token: backflow_api::ApiToken,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Http {
    /// The console's address, `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops serving and returns once the server is done: requests in progress get 2 s to
    /// finish, then their connections are cut (a browser's live-event stream never ends).
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(2), &mut self.task).await {
            Ok(done) => Ok(done??),
            Err(_) => {
                self.task.abort();
                Ok(())
            }
        }
    }
}

/// A fresh root key (in memory, dropped on return) certifies a fresh national key, as the
/// ceremony does offline (`backflow root certify`): returns the anchor (the root's public key)
/// and the national node's identity, whose chain is its national certificate.
fn root_certified_national(
    now: backflow_protocol::time::UnixMs,
) -> Result<(ed25519_dalek::VerifyingKey, NodeIdentity)> {
    let root = SigningKey::generate(&mut OsRng);
    let key = SigningKey::generate(&mut OsRng);
    let cert = Certificate::issue_national(
        &root,
        CertRequest {
            subject: RegionCode::NATIONAL,
            subject_key: key.verifying_key(),
            peer_id: peer_id_of(&key.verifying_key())?.to_bytes(),
            not_before: now.minus_ms(60_000),
            not_after: now.plus_ms(365 * DAY_MS),
            serial: 0,
        },
    )?;
    Ok((
        root.verifying_key(),
        NodeIdentity::national_certified(key, cert)?,
    ))
}
