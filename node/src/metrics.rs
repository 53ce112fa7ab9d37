//! `GET /metrics`: the node's figures in the OpenMetrics text format Prometheus scrapes, encoded
//! by `prometheus-client` (the crate `libp2p-metrics` uses). The data plane keeps its own
//! atomic counters ([`NodeStats`]: no lock on the hot path); a scrape reads them and asks the
//! event loop for the rest — datasets and their delivery, peers by tier, share requests by
//! state, the compliance ledger — and builds a registry for that one answer, so nothing here
//! holds state between scrapes. Label values are region codes, dataset names, tiers and
//! states the node itself holds: bounded by what it holds (at most
//! `persist::TRANSFER_RECORDS_MAX` transfers), never by what a peer sends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use anyhow::{anyhow, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::handle::{NodeHandle, NodeStats};
use crate::share_api::ShareView;
use crate::status::{DatasetStatus, PeerView};

/// What one scrape shows besides the counters.
pub struct Snapshot {
    pub region: String,
    pub datasets: Vec<DatasetStatus>,
    pub peers: Vec<PeerView>,
    pub shares: Vec<ShareView>,
    pub ledger_entries: u64,
    /// Entries of this node's ledger its parent has countersigned (见证).
    pub ledger_witnessed_entries: Option<u64>,
    /// The data directory's disk (`None` if it could not be read).
    pub disk: Option<crate::disk::DiskUsage>,
}

type Labels = Vec<(String, String)>;

fn gauge_family() -> Family<Labels, Gauge<i64, AtomicI64>> {
    Family::default()
}

fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The tier of a peer's region code, by its digits (0 national, 2 province, 4 city, 6 county,
/// 9 township, 12 village).
fn tier(region: &str) -> &'static str {
    match region.len() {
        1 => "national",
        2 => "province",
        4 => "city",
        6 => "county",
        9 => "township",
        _ => "other",
    }
}

/// The figures of the running node behind `node` (its data in `data_dir`), as one scrape's
/// text.
pub async fn scrape(node: &NodeHandle, data_dir: &std::path::Path) -> Result<String> {
    let dir = data_dir.to_path_buf();
    let disk = tokio::task::spawn_blocking(move || crate::disk::usage(&dir))
        .await
        .ok()
        .and_then(Result::ok);
    let page = node.ledger_page(0, 1).await?;
    let snapshot = Snapshot {
        region: node.region().to_string(),
        datasets: node.status(None).await?,
        peers: node.peers().await?,
        shares: node.shares(false).await?,
        ledger_entries: page.size,
        ledger_witnessed_entries: page.witnessed.map(|w| w.size),
        disk,
    };
    render(&node.stats, &snapshot)
}

/// The scrape's text.
pub fn render(stats: &NodeStats, s: &Snapshot) -> Result<String> {
    let mut registry = Registry::with_prefix("backflow");
    let info = gauge_family();
    info.get_or_create(&vec![("region".to_string(), s.region.clone())])
        .set(1);
    registry.register("node", "This node and its region (always 1)", info);

    let counters: [(&str, &str, &AtomicU64); 9] = [
        (
            "groups_stored",
            "Chunk groups received, verified and stored",
            &stats.groups_stored,
        ),
        (
            "groups_rejected",
            "Chunk groups received that failed verification",
            &stats.groups_rejected,
        ),
        (
            "groups_served",
            "Chunk groups served to descendants",
            &stats.groups_served,
        ),
        (
            "groups_damaged",
            "Stored chunk groups that failed verification when read (dropped, fetched again)",
            &stats.groups_damaged,
        ),
        (
            "connections_closed",
            "Connections closed, for any reason",
            &stats.connections_closed,
        ),
        (
            "control_frames_dropped",
            "Control frames dropped on a full peer queue",
            &stats.control_frames_dropped,
        ),
        (
            "peers_refused",
            "Peers refused at admission",
            &stats.peers_refused,
        ),
        (
            "serves_dropped",
            "Serve requests dropped while a peer had its fill of frames",
            &stats.serves_dropped,
        ),
        (
            "wal_syncs",
            "Write-ahead log syncs before an acknowledgement",
            &stats.wal_syncs,
        ),
    ];
    for (name, help, value) in counters {
        registry.register(name, help, ConstCounter::new(value.load(Ordering::Relaxed)));
    }

    let mut by_tier: BTreeMap<&str, i64> = BTreeMap::new();
    for p in &s.peers {
        *by_tier
            .entry(p.region.as_deref().map_or("unadmitted", tier))
            .or_default() += 1;
    }
    let peers = gauge_family();
    for (t, n) in by_tier {
        peers.get_or_create(&vec![("tier".into(), t.into())]).set(n);
    }
    registry.register(
        "peers",
        "Connected peers by the tier of their verified region",
        peers,
    );

    let expected = gauge_family();
    let delivered = gauge_family();
    let bytes = gauge_family();
    let complete = gauge_family();
    let held = gauge_family();
    let stuck = gauge_family();
    let mut incomplete = 0i64;
    for d in &s.datasets {
        let labels = vec![
            ("dataset".to_string(), d.dataset.clone()),
            ("publisher".to_string(), d.publisher.clone()),
            ("department".to_string(), d.department.clone()),
            ("version".to_string(), d.version.to_string()),
        ];
        expected
            .get_or_create(&labels)
            .set(count(d.regions_expected));
        delivered
            .get_or_create(&labels)
            .set(count(d.regions_delivered));
        bytes.get_or_create(&labels).set(count(d.bytes_delivered));
        complete.get_or_create(&labels).set(i64::from(d.complete));
        held.get_or_create(&labels).set(i64::from(d.held_complete));
        incomplete += i64::from(!d.complete);
        stuck.get_or_create(&labels).set(count(
            d.children.iter().filter(|c| c.state == "stuck").count(),
        ));
    }
    registry.register(
        "dataset_regions_expected",
        "Partitions (regions) of a held dataset version in this node's subtree",
        expected,
    );
    registry.register(
        "dataset_regions_delivered",
        "Of those, delivered and verified by their own region's node (from receipts)",
        delivered,
    );
    registry.register(
        "dataset_bytes_delivered",
        "Bytes delivered in this node's subtree",
        bytes,
    );
    registry.register(
        "dataset_complete",
        "1 when every partition of the subtree is delivered",
        complete,
    );
    registry.register(
        "dataset_held_complete",
        "1 when this node holds every partition of its subtree, verified",
        held,
    );
    registry.register(
        "dataset_children_stuck",
        "Child regions short of complete with no receipt from below for 10 minutes (停滞)",
        stuck,
    );
    registry.register(
        "transfers",
        "Dataset versions held",
        ConstGauge::new(count(s.datasets.len())),
    );
    registry.register(
        "transfers_in_flight",
        "Dataset versions not yet delivered to the whole subtree",
        ConstGauge::new(incomplete),
    );

    let mut by_state: BTreeMap<&str, i64> = BTreeMap::new();
    let mut overdue = 0i64;
    for r in &s.shares {
        *by_state.entry(r.state.as_str()).or_default() += 1;
        overdue += i64::from(r.deadline.as_ref().is_some_and(|d| d.overdue));
    }
    let shares = gauge_family();
    for (state, n) in by_state {
        shares
            .get_or_create(&vec![("state".into(), state.into())])
            .set(n);
    }
    registry.register(
        "share_requests",
        "Share requests (共享申请) this node is a party to or oversees, by state",
        shares,
    );
    registry.register(
        "share_requests_overdue",
        "Of those, past a statutory deadline (Arts. 21, 22, 26, 27)",
        ConstGauge::new(overdue),
    );

    registry.register(
        "ledger_entries",
        "Entries in the compliance ledger (合规台账, Art. 29)",
        ConstGauge::new(count(s.ledger_entries)),
    );
    registry.register(
        "ledger_witnessed_entries",
        "Entries covered by the last head the parent countersigned (-1: none yet)",
        ConstGauge::new(s.ledger_witnessed_entries.map_or(-1, count)),
    );

    if let Some(disk) = s.disk {
        registry.register(
            "disk_total_bytes",
            "Size of the file system holding the data directory",
            ConstGauge::new(count(disk.total_bytes)),
        );
        registry.register(
            "disk_free_bytes",
            "Bytes free for the node on the file system holding the data directory",
            ConstGauge::new(count(disk.free_bytes)),
        );
        registry.register(
            "disk_low",
            "1 when under 10 % or 5 GiB is free (received data may soon fail to be stored)",
            ConstGauge::new(i64::from(disk.low)),
        );
    }
    let upstream_ms = stats.upstream_contact_ms.load(Ordering::Relaxed);
    if upstream_ms > 0 {
        registry.register(
            "upstream_last_contact_seconds",
            "Unix time of the latest frame from an upstream node (the parent, or an ancestor)",
            ConstGauge::new(count(upstream_ms / 1_000)),
        );
    }

    let mut text = String::new();
    encode(&mut text, &registry).map_err(|e| anyhow!("encoding metrics: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_tiers_states_and_the_ledger_are_exposed() {
        let stats = NodeStats::default();
        stats.groups_stored.store(42, Ordering::Relaxed);
        let snapshot = Snapshot {
            region: "4419".into(),
            datasets: Vec::new(),
            peers: vec![
                PeerView {
                    peer: "a".into(),
                    region: Some("44".into()),
                    addr: None,
                },
                PeerView {
                    peer: "b".into(),
                    region: Some("441900003".into()),
                    addr: None,
                },
                PeerView {
                    peer: "c".into(),
                    region: Some("441900004".into()),
                    addr: None,
                },
            ],
            shares: Vec::new(),
            ledger_entries: 7,
            ledger_witnessed_entries: None,
            disk: Some(crate::disk::DiskUsage::new(100 << 30, 4 << 30)),
        };
        let text = render(&stats, &snapshot).unwrap();
        for line in [
            "backflow_groups_stored_total 42",
            "backflow_peers{tier=\"province\"} 1",
            "backflow_peers{tier=\"township\"} 2",
            "backflow_ledger_entries 7",
            "backflow_ledger_witnessed_entries -1",
            "backflow_node{region=\"4419\"} 1",
            "backflow_disk_free_bytes 4294967296",
            "backflow_disk_low 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
