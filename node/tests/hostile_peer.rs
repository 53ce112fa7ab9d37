//! A transport peer that never passes admission (#15 item 5): it cannot make the node read
//! data-plane streams. (Before, the node read and decoded every well-formed chunk frame such a
//! peer pushed — megabytes each — and only then dropped it as unadmitted.) Also: it is
//! disconnected once the hello deadline passes. And it cannot make the node its relay.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use backflow_node::localnet::LocalNet;
use backflow_node::net::{build_swarm, write_frame, CHUNK_PROTOCOL};
use backflow_node::node::Tuning;
use backflow_protocol::endpoint::HELLO_MS_MAX;
use backflow_protocol::manifest::{ChunkFrame, ChunkPart};
use backflow_protocol::wire::{encode_frame, Message};
use backflow_topology::RegionCode;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unadmitted_peer_can_neither_push_chunk_frames_nor_stay() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let net = LocalNet::start(&[RegionCode::NATIONAL], dir.path(), Tuning::default()).await?;
    let node = &net.nodes[&RegionCode::NATIONAL];
    let target = node.peer_id;
    let mut swarm = build_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        &Default::default(),
    )?;
    let mut control = swarm.behaviour().chunks.new_control();
    swarm.dial(node.listen_addrs[0].clone())?;
    // The stranger's swarm runs in the background; it reports when its connection closes.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionClosed { .. } = swarm.select_next_some().await {
                let _ = closed_tx.send(Instant::now());
            }
        }
    });
    let connected = Instant::now();
    let mut stream = loop {
        match control.open_stream(target, CHUNK_PROTOCOL).await {
            Ok(s) => break s,
            Err(e) if connected.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("could not open a stream at all: {e}"),
        }
    };
    // Well-formed chunk frames, 8 MiB in all: the old node read and decoded every one.
    let frame = encode_frame(&Message::Chunk(ChunkFrame {
        manifest: [7; 32],
        parts: vec![ChunkPart {
            region: RegionCode::parse("11").unwrap(),
            first_group: 0,
            group_count: 1,
            encoded_len: 16 * 1024,
        }],
        encoded: vec![0; 16 * 1024],
    }))?;
    let mut written = 0usize;
    let refused = loop {
        if written >= 8 << 20 {
            break false;
        }
        let write = tokio::time::timeout(Duration::from_secs(5), write_frame(&mut stream, &frame));
        match write.await {
            Ok(Ok(())) => written += frame.len(),
            // Reset by the node, or never read (its window stays shut).
            Ok(Err(_)) | Err(_) => break true,
        }
    };
    assert!(
        refused,
        "the node read {written} bytes of chunk frames from a peer it never admitted"
    );
    // And the silent connection is closed once the hello deadline passes.
    let closed = tokio::time::timeout(
        Duration::from_millis(HELLO_MS_MAX + 5_000),
        closed_rx.recv(),
    )
    .await;
    assert!(
        closed.is_ok(),
        "the node kept a connection that never said hello"
    );
    driver.abort();
    net.shutdown().await
}

/// A stranger asks the node for a relay reservation (to be reached through it): refused,
/// since only admitted peers below the node may reserve (`backflow_node::relay`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unadmitted_peer_cannot_reserve_at_the_relay() -> Result<()> {
    use libp2p::multiaddr::Protocol;
    let dir = tempfile::tempdir()?;
    let net = LocalNet::start(&[RegionCode::NATIONAL], dir.path(), Tuning::default()).await?;
    let node = &net.nodes[&RegionCode::NATIONAL];
    let mut swarm = build_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        &Default::default(),
    )?;
    let addr = node.listen_addrs[0].clone();
    swarm.dial(addr.clone())?;
    // Connected first, so the request goes over this connection (libp2p's relay client
    // would otherwise dial a second one, which the node's per-peer limit refuses).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Err(_) => bail!("the stranger could not connect"),
            Ok(SwarmEvent::ConnectionEstablished { .. }) => break,
            Ok(_) => {}
        }
    }
    let circuit = match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr.with(Protocol::P2pCircuit),
        _ => addr
            .with(Protocol::P2p(node.peer_id))
            .with(Protocol::P2pCircuit),
    };
    let listener = swarm.listen_on(circuit)?;
    // Before the hello deadline, when the node would drop the stranger anyway.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(HELLO_MS_MAX);
    loop {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
        match ev {
            Err(_) => bail!("the reservation neither ended nor was refused"),
            Ok(SwarmEvent::NewListenAddr {
                listener_id,
                address,
            }) if listener_id == listener => {
                bail!("the node accepted a stranger's reservation: reachable at {address}")
            }
            Ok(SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            }) if listener_id == listener => {
                // Refused: admission said no (libp2p's relay reports its limiters' refusal
                // as a resource limit).
                let reason = format!("{reason:?}");
                assert!(
                    reason.contains("ResourceLimitExceeded"),
                    "the reservation ended otherwise: {reason}"
                );
                break;
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
