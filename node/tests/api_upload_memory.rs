//! A 1 GiB streamed publish through the real API keeps the node's memory bounded: the body
//! is partitioned as it arrives, never held whole. Its own test binary, so the process's peak
//! RSS is this test's alone.

use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Result;
use backflow_api::client::Client;
use backflow_api::ApiToken;
use backflow_node::api_backend::api_router;
use backflow_node::config::Config;
use backflow_node::localnet::LocalNet;
use backflow_node::node::Tuning;
use backflow_topology::RegionCode;
use tokio::io::{AsyncRead, ReadBuf};

const UPLOAD_BYTES: u64 = 1 << 30;
/// Whole-body buffering would need at least the upload itself; the partitioner's arena is
/// 256 MiB and the rest is RocksDB and libp2p.
const PEAK_GROWTH_BYTES_MAX: u64 = 640 << 20;
const TOWNSHIPS: [&str; 4] = ["110101001", "110101002", "110101003", "110101004"];

/// CSV lines generated on the fly up to [`UPLOAD_BYTES`] (the header included).
struct Generated {
    sent: u64,
    line: u64,
    pending: Vec<u8>,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.pending.len() < buf.remaining()
            && self.sent + (self.pending.len() as u64) < UPLOAD_BYTES
        {
            let line = if self.line == 0 {
                "id,township,payload\n".to_string()
            } else {
                format!(
                    "{:012},{},{}\n",
                    self.line,
                    TOWNSHIPS[(self.line % 4) as usize],
                    "x".repeat(80)
                )
            };
            self.line += 1;
            self.pending.extend_from_slice(line.as_bytes());
        }
        let room = (UPLOAD_BYTES - self.sent) as usize;
        let n = self.pending.len().min(buf.remaining()).min(room);
        buf.put_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.sent += n as u64;
        Poll::Ready(Ok(()))
    }
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_upload_publishes_with_bounded_memory() -> Result<()> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let net = LocalNet::start(
        &[RegionCode::NATIONAL],
        &tmp.path().join("net"),
        Tuning::default(),
    )
    .await?;
    let node = net.nodes[&RegionCode::NATIONAL].clone();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg: Config = toml::from_str(&format!(
        "region = \"0\"\nlisten = []\ntrust_anchor = \"{}\"\nhttp = \"{addr}\"\n",
        "00".repeat(32)
    ))?;
    let app = api_router(&data, &cfg, node).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(backflow_api::serve::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    let client = Client::new(addr, ApiToken::load(&data)?);

    // Peak RSS from here on (Linux: writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5")?;
    let before = peak_rss_bytes();
    let generated = Generated {
        sent: 0,
        line: 0,
        pending: Vec::new(),
    };
    let started = std::time::Instant::now();
    let report = client
        .upload(
            "/api/publish?dataset=big&region_field=township&format=csv",
            generated,
            UPLOAD_BYTES,
            |_| {},
        )
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let peak = peak_rss_bytes();
    let growth = peak.saturating_sub(before);
    println!(
        "1 GiB streamed publish: {secs:.1} s, peak RSS {} MiB (+{} MiB)",
        peak >> 20,
        growth >> 20
    );
    assert_eq!(report["partitions"], 4, "{report}");
    assert_eq!(report["summary"]["input_bytes"], UPLOAD_BYTES, "{report}");
    assert!(
        growth < PEAK_GROWTH_BYTES_MAX,
        "peak RSS grew by {} MiB for a 1 GiB upload",
        growth >> 20
    );
    // Close the server and the node (and with them RocksDB) before the process exits: a
    // database still open at exit races its background threads against static destructors
    // ("pthread lock: Invalid argument", an abort after the test passed).
    let _ = stop.send(());
    server.await??;
    net.shutdown().await?;
    Ok(())
}
