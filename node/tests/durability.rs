//! #15 item 4, "data that does not verify is never served, exported or receipted": real nodes
//! on loopback whose stored content is damaged on disk (a byte flipped in a content file, as
//! bit rot or a torn write would) notice it where they verify — serving a descendant,
//! exporting, scrubbing — drop it from their index, and fetch it again from their parent. The
//! descendant still completes with verified content, and the export succeeds once repaired.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Result;
use backflow_node::chunks::Damaged;
use backflow_node::handle::DatasetQuery;
use backflow_node::localnet::LocalNet;
use backflow_node::node::NodeHandle;
use backflow_node::partition::Format;
use backflow_node::publish::PublishRequest;
use backflow_protocol::manifest::PartitionEntry;
use backflow_topology::{RegionCode, Topology};
use common::{code, fast, holds_verified, wait_until};

mod common;

async fn wait_complete(node: &NodeHandle, dataset: &str) -> Result<()> {
    let what = format!("{} to hold {dataset} complete", node.region());
    wait_until(&what, Duration::from_secs(60), async || {
        let s = node.status(Some(dataset.into())).await?;
        Ok(s.first().is_some_and(|s| s.held_complete))
    })
    .await
}

/// Flips one byte of a partition's content file at `offset`, behind the node's back.
fn flip_byte(node: &NodeHandle, entry: &PartitionEntry, offset: u64) -> Result<()> {
    let path = node.store.content_path(&entry.content_hash);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)?;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset)?;
    b[0] ^= 0x20;
    file.write_all_at(&b, offset)?;
    file.sync_all()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_content_is_noticed_where_it_is_verified_and_fetched_again() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (province, city) = (code("11"), code("1101"));
    let mut net =
        LocalNet::start(&[RegionCode::NATIONAL, province, city], dir.path(), fast()).await?;
    net.wait_connected(Duration::from_secs(20)).await?;
    // The city is away while the dataset arrives at the province.
    net.stop(city).await?;

    // One large partition (in a content file: 20 groups), and small ones (inline).
    let topo = Topology::china();
    let townships = topo.townships_under(code("110101"));
    let big = townships[0];
    let csv = dir.path().join("d.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(f, "id,village,payload")?;
    for i in 0..3_000 {
        writeln!(f, "b{i},{big},{}", "x".repeat(100))?;
    }
    for (n, t) in townships.iter().skip(1).take(4).enumerate() {
        writeln!(f, "s{n},{t},small")?;
    }
    drop(f);
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    let req = PublishRequest {
        dataset: "rot".into(),
        region_field: "village".into(),
        format: Format::Csv,
        department: "test".into(),
        work_dir: dir.path().join("spill"),
        rejects_path: None,
    };
    national.publish_file(req, &csv, Default::default()).await?;
    let p = net.nodes[&province].clone();
    wait_complete(&p, "rot").await?;
    let record = p.record("rot", None).await?.remove(0).1;
    let entry = *record.entries.iter().find(|e| e.region == big).unwrap();
    assert!(entry.groups() >= 10, "a large partition: {entry:?}");

    // Serving: the province's copy rots in group 3; the city joins and asks for it. The
    // province must not serve what does not verify: it drops the partition, fetches it again
    // from national, and the city completes with verified content (from whichever source).
    flip_byte(&p, &entry, 3 * 16_384 + 100)?;
    net.restart(city).await?;
    let c = net.nodes[&city].clone();
    wait_complete(&c, "rot").await?;
    holds_verified(&c, "rot").await?;
    assert!(
        p.stats.groups_damaged.load(Relaxed) >= 1,
        "the province noticed its damaged copy"
    );
    wait_complete(&p, "rot").await?;
    holds_verified(&p, "rot").await?;
    assert_eq!(
        c.stats.groups_rejected.load(Relaxed),
        0,
        "nothing that failed verification was sent to the city"
    );

    // Export: the city's copy rots; export refuses, says why, and the copy is repaired.
    flip_byte(&c, &entry, 7 * 16_384 + 5)?;
    let query = DatasetQuery::named("rot", None);
    let err = c
        .verified_export(query.clone(), "a test")
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<Damaged>().is_some(), "{err:#}");
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
    wait_until(
        "the city's export to verify again",
        Duration::from_secs(60),
        async || {
            let complete = c
                .status(Some("rot".into()))
                .await?
                .first()
                .is_some_and(|s| s.held_complete);
            Ok(complete && c.verified_export(query.clone(), "a test").await.is_ok())
        },
    )
    .await?;
    holds_verified(&c, "rot").await?;
    assert!(c.stats.groups_damaged.load(Relaxed) >= 1);

    // At rest: nobody reads the province's copy now; the scrub finds the damage, and the copy
    // is repaired the same way.
    flip_byte(&p, &entry, 11 * 16_384 + 9)?;
    let report = p.scrub().await?;
    assert_eq!(report.damaged, vec![big.to_string()], "{report:?}");
    assert!(report.partitions >= 5, "{report:?}");
    wait_until(
        "the province's copy to be repaired",
        Duration::from_secs(60),
        async || {
            let complete = p
                .status(Some("rot".into()))
                .await?
                .first()
                .is_some_and(|s| s.held_complete);
            Ok(complete && p.scrub().await?.damaged.is_empty())
        },
    )
    .await?;
    holds_verified(&p, "rot").await?;
    net.shutdown().await
}
