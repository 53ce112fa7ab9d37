//! Real nodes over real libp2p on 127.0.0.1, each with its own RocksDB.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use backflow_node::localnet::{LocalNet, Transport};
use backflow_node::node::{now_ms, peer_id_of, start, NodeHandle, NodeSetup, Tuning};
use backflow_node::partition::Format;
use backflow_node::publish::PublishRequest;
use backflow_node::store::{chunk_key, Store, CF_CHUNKS};
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::time::DAY_MS;
use backflow_topology::RegionCode;
use common::{code, fast, holds_verified, wait_until};
use ed25519_dalek::SigningKey;

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
        department: "test".into(),
        work_dir: work.to_path_buf(),
        rejects_path: None,
    };
    node.publish_file(req, csv, Default::default()).await?;
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
        calendar: backflow_protocol::calendar::WorkingCalendar::official(),
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
        calendar: backflow_protocol::calendar::WorkingCalendar::official(),
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

/// Writes `lines` (each with its `\n`) under `header` to `path`.
fn write_csv(path: &std::path::Path, header: &str, lines: &[(RegionCode, String)]) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(header.as_bytes())?;
    for (_, l) in lines {
        f.write_all(l.as_bytes())?;
    }
    f.flush()?;
    Ok(())
}

/// Waits (up to 60 s) until `node` holds `dataset` at `version` completely.
async fn wait_version_complete(node: &NodeHandle, dataset: &str, version: u64) -> Result<()> {
    let what = format!("{} holds version {version} of {dataset}", node.region());
    wait_until(&what, Duration::from_secs(60), async || {
        let s = node.status(Some(dataset.into())).await?;
        Ok(s.first()
            .is_some_and(|s| s.version == version && s.held_complete))
    })
    .await
}

/// Issue 15, item 3: republishing must not delete partitions still needed. National publishes
/// v1 to a five-tier chain, then v2 with one record of one township changed. Storage is
/// content-addressed: every node keeps the partitions v2 left unchanged (v1's record is dropped
/// only after v2's is persisted) and counts them as stored at once, so only the changed
/// partition travels — once per hop — and every township holds v2 byte for byte. A province
/// that joins only after v2 gets its whole subtree from the publisher (whose unchanged
/// partitions were deleted before: it logged "not stored" and the province never completed),
/// and so does another after the publisher restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republishing_moves_only_what_changed_and_keeps_serving() -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir()?;
    let topo = backflow_topology::Topology::china();
    let chain = ["0", "11", "1101", "110101"].map(code);
    let townships = ["110101001", "110101002", "110101003"].map(code);
    let (late, later) = (code("12"), code("13"));
    let mut regions = chain.to_vec();
    regions.extend(townships);
    regions.push(late);
    // Generous retries: a timed-out (not lost) request would legitimately fetch twice.
    let tuning = Tuning {
        retry_ms: 5_000,
        source_silence_ms_max: 15_000,
        ..fast()
    };
    let mut net = LocalNet::start(&regions, dir.path(), tuning.clone()).await?;
    net.wait_connected(Duration::from_secs(20)).await?;
    // Province 12 is away during both versions; 13 starts only after the publisher restarted.
    net.stop(late).await?;

    // One large partition (in a content file), two small ones (inline in the index), and a
    // few townships in each late province.
    let header = "id,village,payload\n";
    let mut lines: Vec<(RegionCode, String)> = Vec::new();
    for i in 0..2_500 {
        let line = format!("a{i},{}{:03},{}\n", townships[0], i % 5 + 1, "x".repeat(70));
        lines.push((townships[0], line));
    }
    for (k, t) in townships[1..].iter().enumerate() {
        for i in 0..250 {
            let line = format!("b{k}-{i},{t}{:03},{}\n", i % 3 + 1, "y".repeat(60));
            lines.push((*t, line));
        }
    }
    for p in [late, later] {
        for t in topo.townships_under(p).into_iter().take(3) {
            for i in 0..40 {
                lines.push((t, format!("c{t}-{i},{t}001,{}\n", "z".repeat(50))));
            }
        }
    }
    let csv = dir.path().join("v1.csv");
    write_csv(&csv, header, &lines)?;
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    publish_csv(&national, "ds", &csv, &dir.path().join("spill1")).await?;
    for r in chain[1..].iter().chain(&townships) {
        wait_version_complete(&net.nodes[r], "ds", 1).await?;
    }
    let v1 = national.record("ds", None).await?.remove(0).1;

    // Version 2: one record of one township changed.
    let changed = townships[1];
    let i = lines.iter().position(|(t, _)| *t == changed).unwrap() + 7;
    lines[i].1 = lines[i].1.replace("yyyy", "YYYY");
    let csv = dir.path().join("v2.csv");
    write_csv(&csv, header, &lines)?;
    let counters = |net: &LocalNet| -> BTreeMap<RegionCode, (u64, u64)> {
        net.nodes
            .iter()
            .map(|(r, h)| {
                let s = &h.stats;
                (
                    *r,
                    (s.groups_stored.load(Relaxed), s.groups_served.load(Relaxed)),
                )
            })
            .collect()
    };
    let before = counters(&net);
    publish_csv(&national, "ds", &csv, &dir.path().join("spill2")).await?;
    for r in chain[1..].iter().chain(&townships) {
        wait_version_complete(&net.nodes[r], "ds", 2).await?;
    }
    let v2 = national.record("ds", None).await?.remove(0).1;
    assert_eq!(v2.manifest.manifest.version, 2);
    let differs: Vec<RegionCode> = v1
        .entries
        .iter()
        .zip(&v2.entries)
        .filter(|(a, b)| a != b)
        .map(|(_, b)| b.region)
        .collect();
    assert_eq!(differs, vec![changed], "one partition changed");
    let g = v2
        .entries
        .iter()
        .find(|e| e.region == changed)
        .unwrap()
        .groups();

    // Only the changed partition's groups travelled, once along each hop of its path.
    let after = counters(&net);
    for (r, (stored, served)) in &after {
        let (stored0, served0) = before[r];
        let on_path = r.contains(changed);
        let expected_stored = if on_path && *r != RegionCode::NATIONAL {
            g
        } else {
            0
        };
        let expected_served = if on_path && *r != changed { g } else { 0 };
        assert_eq!(
            (stored - stored0, served - served0),
            (expected_stored, expected_served),
            "{r}: groups stored and served for v2"
        );
    }

    // Every township holds v2, byte for byte.
    for t in townships {
        let h = &net.nodes[&t];
        let record = h.record("ds", None).await?.remove(0).1;
        assert_eq!(record.manifest.manifest.version, 2);
        let out = dir.path().join(format!("{t}.csv"));
        backflow_node::export::export(&h.store, &record, t, &out)?;
        let mut expected = header.as_bytes().to_vec();
        for (_, l) in lines.iter().filter(|(r, _)| *r == t) {
            expected.extend_from_slice(l.as_bytes());
        }
        assert_eq!(
            std::fs::read(&out)?,
            expected,
            "{t} exports v2 byte for byte"
        );
    }
    // v1's content of the changed township is gone everywhere; v2's is whole at national.
    let old = v1.entries.iter().find(|e| e.region == changed).unwrap();
    for (r, h) in &net.nodes {
        assert!(
            h.store.stored_groups(&old.content_hash)?.is_empty(),
            "{r} kept v1's content of {changed}"
        );
    }
    holds_verified(&national, "ds").await?;

    // A province that joins only now gets its subtree from the publisher.
    net.restart(late).await?;
    wait_version_complete(&net.nodes[&late], "ds", 2).await?;
    holds_verified(&net.nodes[&late], "ds").await?;

    // The publisher restarts (on a fresh port), and still serves: another province, started
    // now with the national's new address, gets its subtree.
    drop(national);
    net.stop(RegionCode::NATIONAL).await?;
    net.restart(RegionCode::NATIONAL).await?;
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    holds_verified(&national, "ds").await?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let now = now_ms();
    let identity = national.identity.certify_child(
        &key,
        peer_id_of(&key.verifying_key())?.to_bytes(),
        now.minus_ms(60_000),
        now.plus_ms(DAY_MS),
        later,
        99,
    )?;
    let (province, task) = start(NodeSetup {
        identity,
        anchor: national.identity.key.verifying_key(),
        db_path: dir.path().join("node-13"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        upstream: national.listen_addrs.clone(),
        tuning,
        calendar: backflow_protocol::calendar::WorkingCalendar::official(),
        fault_tamper_serve: false,
    })
    .await?;
    wait_version_complete(&province, "ds", 2).await?;
    holds_verified(&province, "ds").await?;
    let subtree: u64 = v2
        .entries
        .iter()
        .filter(|e| later.contains(e.region))
        .map(|e| e.groups())
        .sum();
    assert!(subtree > 0);
    assert_eq!(national.stats.groups_served.load(Relaxed), subtree);
    assert_eq!(province.stats.groups_stored.load(Relaxed), subtree);
    province.shutdown().await;
    task.await??;
    drop(national);
    net.shutdown().await
}

/// A dataset is (publisher region, department, name) (#15 item 2): national and a province
/// both publish a dataset named "ds"; the township below both holds and exports each apart.
/// Keyed by the bare name, the province's version replaced the national one in its subtree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_named_datasets_of_two_publishers_are_kept_apart() -> Result<()> {
    use backflow_node::node::DatasetQuery;
    let dir = tempfile::tempdir()?;
    let regions: Vec<RegionCode> = ["0", "11", "1101", "110101", "110101001"]
        .into_iter()
        .map(code)
        .collect();
    let net = LocalNet::start(&regions, dir.path(), fast()).await?;
    net.wait_connected(Duration::from_secs(20)).await?;
    let write = |name: &str, rows: usize, tag: &str| -> Result<std::path::PathBuf> {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path)?;
        writeln!(f, "id,village,v")?;
        for i in 0..rows {
            writeln!(f, "{i},110101001001,{tag}")?;
        }
        Ok(path)
    };
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    let province = net.nodes[&code("11")].clone();
    publish_csv(
        &national,
        "ds",
        &write("n.csv", 30, "national")?,
        &dir.path().join("w1"),
    )
    .await?;
    publish_csv(
        &province,
        "ds",
        &write("p.csv", 20, "province")?,
        &dir.path().join("w2"),
    )
    .await?;
    let town = net.nodes[&code("110101001")].clone();
    wait_until(
        "both datasets at the township",
        Duration::from_secs(60),
        async || {
            let s = town.status(Some("ds".into())).await?;
            Ok(s.len() == 2 && s.iter().all(|d| d.held_complete))
        },
    )
    .await?;
    let ambiguous = town.record("ds", None).await.unwrap_err().to_string();
    assert!(ambiguous.contains("2 owners"), "{ambiguous}");
    for (publisher, records, tag) in [("0", 30, "national"), ("11", 20, "province")] {
        let query = DatasetQuery {
            name: "ds".into(),
            publisher: Some(code(publisher)),
            ..DatasetQuery::default()
        };
        let record = town.record_of(query).await?.remove(0).1;
        assert_eq!(record.manifest.manifest.publisher.region, code(publisher));
        let out = dir.path().join(format!("{publisher}.csv"));
        let summary = backflow_node::export::export(&town.store, &record, code("110101001"), &out)?;
        assert_eq!(summary.records, records);
        let text = std::fs::read_to_string(&out)?;
        assert!(text.lines().skip(1).all(|l| l.ends_with(tag)), "{text}");
    }
    net.shutdown().await
}
