//! Real nodes over real libp2p on 127.0.0.1, each with its own RocksDB.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use backflow_node::localnet::{LocalNet, Transport};
use backflow_node::node::{now_ms, peer_id_of, start, NodeHandle, NodeSetup, Tuning};
use backflow_node::partition::Format;
use backflow_node::publish::PublishRequest;
use backflow_node::store::{chunk_key, Store, CF_CHUNKS};
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::time::DAY_MS;
use backflow_topology::RegionCode;
use ed25519_dalek::SigningKey;

fn fast() -> Tuning {
    Tuning {
        retry_ms: 300,
        source_silence_ms_max: 3_000,
        receipt_interval_ms: 100,
        ..Tuning::default()
    }
}

fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).unwrap()
}

async fn publish_csv(
    node: &NodeHandle,
    dataset: &str,
    csv: &std::path::Path,
    work: &std::path::Path,
) -> Result<()> {
    let req = PublishRequest {
        dataset: dataset.into(),
        region_field: "village".into(),
        format: Format::Csv,
        input: csv.to_path_buf(),
        department: "test".into(),
        work_dir: work.to_path_buf(),
        rejects_path: None,
    };
    node.publish_file(req, Default::default()).await?;
    Ok(())
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    let t = Instant::now();
    while !f().await? {
        if t.elapsed() > timeout {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits (up to 60 s) until `node` holds every partition of `dataset` it should.
async fn wait_held_complete(node: &NodeHandle, dataset: &str, what: &str) -> Result<()> {
    wait_until(what, Duration::from_secs(60), async || {
        let s = node.status(Some(dataset.into())).await?;
        Ok(s.first().is_some_and(|s| s.held_complete))
    })
    .await
}

/// National → province → city → county → two townships: every township receives exactly its
/// records, export is byte-identical in published order, the publisher sees completeness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_tiers_deliver_and_export_byte_identical() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let regions: Vec<RegionCode> = ["0", "11", "1101", "110101", "110101001", "110101002"]
        .into_iter()
        .map(code)
        .collect();
    let net = LocalNet::start(&regions, dir.path(), fast()).await?;
    net.wait_connected(Duration::from_secs(20)).await?;
    let csv = dir.path().join("d.csv");
    let mut f = std::fs::File::create(&csv)?;
    // Quoting and CRLF in the header: export must give it back byte for byte.
    f.write_all(b"id,\"village\",v\r\n")?;
    let mut want1 = Vec::new();
    let mut want2 = Vec::new();
    for i in 0..3000 {
        let (t, w) = if i % 3 == 0 {
            ("110101002", &mut want2)
        } else {
            ("110101001", &mut want1)
        };
        let line = format!("{i},{t}{:03},\"v, {i}\"\r\n", i % 7 + 1);
        f.write_all(line.as_bytes())?;
        w.extend_from_slice(line.as_bytes());
    }
    writeln!(f, "bad,999999999999,x")?;
    drop(f);
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    publish_csv(&national, "ds", &csv, &dir.path().join("spill")).await?;
    wait_until(
        "publisher completeness",
        Duration::from_secs(60),
        async || {
            let s = national.status(Some("ds".into())).await?;
            Ok(s.first().is_some_and(|s| s.complete))
        },
    )
    .await?;
    let s = &national.status(Some("ds".into())).await?[0];
    assert_eq!(s.regions_expected, 2);
    assert_eq!(s.records_delivered, 3000);
    assert_eq!(s.children.len(), 1);
    assert_eq!(s.children[0].state, "complete");
    for (t, want) in [("110101001", &want1), ("110101002", &want2)] {
        let h = &net.nodes[&code(t)];
        let record = h.record("ds", None).await?.remove(0).1;
        assert!(
            record.entries.iter().all(|e| e.region == code(t)),
            "only its own partition"
        );
        let out = dir.path().join(format!("{t}.csv"));
        let summary = backflow_node::export::export(&h.store, &record, code(t), &out)?;
        let mut expected = b"id,\"village\",v\r\n".to_vec();
        expected.extend_from_slice(want);
        assert_eq!(
            std::fs::read(&out)?,
            expected,
            "export of {t} is byte-identical"
        );
        assert_eq!(
            summary.records as usize,
            want.split(|b| *b == b'\n').count() - 1
        );
    }
    // The county holds both townships (it forwarded them), and nothing else.
    let rec = net.nodes[&code("110101")]
        .record("ds", None)
        .await?
        .remove(0)
        .1;
    assert_eq!(rec.entries.len(), 2);
    // The publisher restarts with the province down, so no receipt can arrive again: its
    // per-region view comes back from its own storage.
    let mut net = net;
    // Our handle holds the publisher's store open; the restart must be able to lock it.
    drop(national);
    net.stop(code("11")).await?;
    net.stop(RegionCode::NATIONAL).await?;
    net.restart(RegionCode::NATIONAL).await?;
    let s = &net.nodes[&RegionCode::NATIONAL]
        .status(Some("ds".into()))
        .await?[0];
    assert!(s.complete, "completeness after the publisher's restart");
    assert_eq!(s.records_delivered, 3000);
    assert_eq!(s.children[0].state, "complete");
    assert_eq!(s.children[0].records_delivered, 3000);
    net.shutdown().await
}

/// A receiver that lost some stored groups (crash before they hit disk) resumes after a
/// restart and fetches exactly the missing groups, not the ones it already verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_without_refetching_verified_groups() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Generous retry: a timed-out (not lost) request would legitimately fetch a group twice.
    let tuning = Tuning {
        retry_ms: 5_000,
        source_silence_ms_max: 15_000,
        ..fast()
    };
    let mut net = LocalNet::start(&[RegionCode::NATIONAL, code("11")], dir.path(), tuning).await?;
    net.wait_connected(Duration::from_secs(20)).await?;
    let csv = dir.path().join("d.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(f, "id,village,payload")?;
    for i in 0..40_000 {
        writeln!(f, "{i},110101001{:03},{}", i % 9 + 1, "p".repeat(60))?;
    }
    drop(f);
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    publish_csv(&national, "big", &csv, &dir.path().join("spill")).await?;
    let province = net.nodes[&code("11")].clone();
    wait_held_complete(&province, "big", "province holds everything").await?;
    let record = province.record("big", None).await?.remove(0).1;
    let entry = record.entries[0];
    let total_groups = entry.groups();
    assert!(total_groups > 100, "{total_groups}");
    drop(province);
    net.stop(code("11")).await?;
    // Simulate losing every third group.
    let lost: Vec<u64> = (0..total_groups).filter(|g| g % 3 == 1).collect();
    {
        let store = Store::open(&dir.path().join("node-11").join(""))?;
        let mut b = store.batch();
        for g in &lost {
            b.delete(CF_CHUNKS, &chunk_key(&entry.content_hash, *g));
        }
        store.write(b)?;
        assert_eq!(
            store.stored_groups(&entry.content_hash)?.len() as u64,
            total_groups - lost.len() as u64
        );
    }
    net.restart(code("11")).await?;
    let province = net.nodes[&code("11")].clone();
    wait_held_complete(&province, "big", "province complete again").await?;
    let refetched = province
        .stats
        .groups_stored
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        refetched,
        lost.len() as u64,
        "only the lost groups are fetched again"
    );
    assert_eq!(
        province.store.stored_groups(&entry.content_hash)?.len() as u64,
        total_groups
    );
    net.shutdown().await
}

/// The same return flow over QUIC: every node listens only on UDP, the connections are QUIC
/// (not TCP), and a multi-frame partition arrives complete and byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_transport_delivers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let regions: Vec<RegionCode> = ["0", "11", "1101"].into_iter().map(code).collect();
    let net = LocalNet::start_on(&regions, dir.path(), fast(), Transport::Quic).await?;
    net.wait_connected(Duration::from_secs(20)).await?;
    let city = net.nodes[&code("1101")].clone();
    let peers = city.peers().await?;
    let to_parent = peers
        .iter()
        .find(|p| p.region.as_deref() == Some("11"))
        .expect("connected to the province");
    let addr = to_parent.addr.as_deref().unwrap_or_default();
    assert!(
        addr.contains("/udp/") && addr.contains("/quic-v1"),
        "{addr}"
    );
    let csv = dir.path().join("d.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(f, "id,village,payload")?;
    let mut want = b"id,village,payload\n".to_vec();
    // ~5 MiB for one township: several 1 MiB chunk frames.
    for i in 0..50_000 {
        let line = format!("{i},110101001{:03},{}\n", i % 9 + 1, "q".repeat(90));
        f.write_all(line.as_bytes())?;
        want.extend_from_slice(line.as_bytes());
    }
    drop(f);
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    publish_csv(&national, "q", &csv, &dir.path().join("spill")).await?;
    wait_held_complete(&city, "q", "city holds everything").await?;
    let record = city.record("q", None).await?.remove(0).1;
    let out = dir.path().join("out.csv");
    backflow_node::export::export(&city.store, &record, code("110101001"), &out)?;
    assert_eq!(std::fs::read(&out)?, want);
    net.shutdown().await
}

/// Two sibling provinces with valid chains refuse each other: neither is the other's
/// parent, child or ancestor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sibling_region_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let now = now_ms();
    let root = NodeIdentity::national(SigningKey::generate(&mut rand::rngs::OsRng));
    let anchor = root.key.verifying_key();
    let mk = |r: &str, serial| -> Result<NodeIdentity> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let peer = peer_id_of(&key.verifying_key())?;
        Ok(root.certify_child(
            &key,
            peer.to_bytes(),
            now.minus_ms(1000),
            now.plus_ms(DAY_MS),
            code(r),
            serial,
        )?)
    };
    let (beijing, task_a) = start(NodeSetup {
        identity: mk("11", 1)?,
        anchor,
        db_path: dir.path().join("a"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        upstream: vec![],
        tuning: fast(),
        fault_tamper_serve: false,
    })
    .await?;
    let (guangdong, task_b) = start(NodeSetup {
        identity: mk("44", 2)?,
        anchor,
        db_path: dir.path().join("b"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        upstream: vec![beijing.listen_addrs[0].clone()],
        tuning: fast(),
        fault_tamper_serve: false,
    })
    .await?;
    // The positive signal first: they did connect, and each refused the other for its place
    // in the tree (not merely never met).
    let deadline = Instant::now() + Duration::from_secs(20);
    while [&beijing, &guangdong]
        .iter()
        .any(|h| h.stats.peers_refused.load(Ordering::Relaxed) == 0)
    {
        assert!(
            Instant::now() < deadline,
            "the two provinces never met and refused each other within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (h, other) in [(&beijing, "44"), (&guangdong, "11")] {
        let peers = h.peers().await?;
        assert!(
            peers.iter().all(|p| p.region.as_deref() != Some(other)),
            "{} accepted sibling {other}: {peers:?}",
            h.region()
        );
    }
    beijing.shutdown().await;
    guangdong.shutdown().await;
    task_a.await??;
    task_b.await??;
    Ok(())
}

/// The national shape at the scale a connection carries: thousands of one-group partitions,
/// with the shipping defaults (a window of 1,024 groups). 四川's 3,111 and 河南's 2,586
/// townships, 5,697 partitions in all (no province alone has 5,000). Before, every partition
/// of a window was a want of its own, each a muxer stream, and yamux tore the connection down
/// (`TooManyStreams`) every few seconds; now every partition arrives, byte for byte, and no
/// connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_small_partitions_arrive_without_a_connection_reset() -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir()?;
    let provinces = [code("51"), code("41")];
    let mut regions = vec![RegionCode::NATIONAL];
    regions.extend(provinces);
    let net = LocalNet::start(&regions, dir.path(), Tuning::default()).await?;
    net.wait_connected(Duration::from_secs(20)).await?;
    let topo = backflow_topology::Topology::china();
    let csv = dir.path().join("d.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(f, "id,village,payload")?;
    let mut townships = 0;
    for p in provinces {
        for t in topo.townships_under(p) {
            townships += 1;
            for i in 0..3 {
                writeln!(f, "{townships}-{i},{t},{}", "q".repeat(80))?;
            }
        }
    }
    drop(f);
    assert!(townships >= 5_000, "{townships}");
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    publish_csv(&national, "small", &csv, &dir.path().join("spill")).await?;
    for p in provinces {
        // Within the test's 60 s: the provinces take a second or two on an idle machine.
        wait_held_complete(&net.nodes[&p], "small", "a province holds its subtree").await?;
    }
    for p in provinces {
        let h = &net.nodes[&p];
        let record = h.record("small", None).await?.remove(0).1;
        assert_eq!(record.entries.len(), topo.townships_under(p).len());
        for e in &record.entries {
            assert_eq!(e.groups(), 1, "one group each");
            let mut hasher = blake3::Hasher::new();
            h.store.for_each_group(&e.content_hash, |_, d| {
                hasher.update(d);
                Ok(())
            })?;
            assert_eq!(hasher.finalize().as_bytes(), &e.content_hash);
        }
    }
    for (r, h) in &net.nodes {
        assert_eq!(
            h.stats.connections_closed.load(Relaxed),
            0,
            "{r} lost a connection"
        );
        assert_eq!(
            h.stats.control_frames_dropped.load(Relaxed),
            0,
            "{r} dropped frames"
        );
    }
    net.shutdown().await
}
