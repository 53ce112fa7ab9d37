//! Measures, on this machine, the per-message costs simnet's CPU model stands for (see
//! `simnet::shell::Costs`): blake3 over a megabyte, a chunk frame encoded and verified by the
//! protocol's own code in both shapes (one 1 MiB partition; 64 partitions of ~12 KB), the
//! wire encoding of control frames, ed25519, and the return-flow state machine's own handlers
//! on the national dataset's shape (a province's 1,334 partitions of ~12 KB from national).
//!
//! Not measured here (no libp2p or RocksDB in simnet): the transport's own work per request
//! (yamux stream, multistream-select, TLS records, syscalls, task wake-ups) and storage writes.
//! The defaults take those from the node's transfer bench (node/README.md) or estimate them.
//!
//! `cargo run --release -p backflow-simnet --example costs`

use std::hint::black_box;
use std::ops::Range;
use std::time::Instant;

use backflow_protocol::catalog::{CatalogOrigin, DataType};
use backflow_protocol::cert::{CertRequest, Certificate, NodeIdentity, TrustStore};
use backflow_protocol::manifest::{
    build_manifest, decode_groups_with, ChunkFrame, ChunkPart, PartitionEntry, PartitionOutboard,
    Schema, SchemaField, SignedManifest,
};
use backflow_protocol::return_flow::{
    Output, ReturnFlow, ReturnFlowConfig, ReturnFlowMsg, ServePart,
};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::wire::{decode_chunk_frame, decode_frame, encode_frame, Message};
use backflow_topology::{RegionCode, Topology};
use ed25519_dalek::{Signer, SigningKey, Verifier};

const NOW: UnixMs = UnixMs(1_767_225_600_000);
/// Repetitions of each micro-measurement; the minimum over `ROUNDS` rounds is reported (the
/// machine is shared, so the minimum is the least disturbed).
const REPS: u32 = 200;
const ROUNDS: u32 = 5;

/// Minimum over rounds of the mean time of `f`, in nanoseconds.
fn time_ns(reps: u32, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(reps));
    }
    best
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn schema() -> Schema {
    Schema {
        header: b"village,payload\n".to_vec(),
        name: "costs".to_string(),
        fields: vec![SchemaField {
            name: "village".to_string(),
            data_type: DataType::RegionCode,
        }],
    }
}

/// A chunk frame of `parts` (entry, content, groups) as the sender builds it, and its bytes.
fn frame_of(manifest: [u8; 32], parts: &[(PartitionEntry, Vec<u8>, Range<u64>)]) -> Vec<u8> {
    let mut encoded = Vec::new();
    let mut heads = Vec::new();
    for (entry, data, groups) in parts {
        let ob = PartitionOutboard::new(entry, data).expect("outboard");
        let enc = ob
            .encode_groups(entry, data, groups.clone())
            .expect("encode");
        heads.push(ChunkPart {
            region: entry.region,
            first_group: groups.start,
            group_count: groups.end - groups.start,
            encoded_len: enc.len() as u32,
        });
        encoded.extend_from_slice(&enc);
    }
    encode_frame(&Message::Chunk(ChunkFrame {
        manifest,
        parts: heads,
        encoded,
    }))
    .expect("frame")
}

fn main() {
    println!("all figures: this machine, release, single thread, best of {ROUNDS} rounds");

    // 1. blake3 over 1 MiB.
    let mib = content(1 << 20, 1);
    let ns = time_ns(REPS, || {
        black_box(blake3::hash(black_box(&mib)));
    });
    println!(
        "blake3 1 MiB: {:.0} µs = {:.2} ns/byte",
        ns / 1e3,
        ns / (1 << 20) as f64
    );

    // 2. Chunk frames, both ends, by the protocol's code: sender = outboard (kept by the real
    //    node, so timed apart) + encode_groups (reads and validates) + frame; receiver =
    //    decode_chunk_frame + decode_groups_with per part (bao verification).
    let s = schema();
    let region = |i: u32| RegionCode::parse(&format!("110101{:03}", 1 + i)).expect("code");
    let big_entry = PartitionEntry::for_content(region(0), &mib, 1, &s);
    let big = vec![(big_entry, mib.clone(), 0..64)];
    let small: Vec<(PartitionEntry, Vec<u8>, Range<u64>)> = (0..64u32)
        .map(|i| {
            let data = content(12_500, i as u8);
            (
                PartitionEntry::for_content(region(i), &data, 1, &s),
                data,
                0..1,
            )
        })
        .collect();
    for (name, parts) in [
        ("1 partition × 64 groups", &big),
        ("64 partitions × 12.5 KB", &small),
    ] {
        let payload: usize = parts.iter().map(|(_, d, _)| d.len()).sum();
        let outboards: Vec<PartitionOutboard> = parts
            .iter()
            .map(|(e, d, _)| PartitionOutboard::new(e, d).expect("outboard"))
            .collect();
        let send = time_ns(REPS / 4, || {
            let mut encoded = Vec::with_capacity(payload + 8_192);
            for ((e, d, g), ob) in parts.iter().zip(&outboards) {
                encoded.extend_from_slice(&ob.encode_groups(e, d, g.clone()).expect("encode"));
            }
            black_box(encoded);
        });
        let bytes = frame_of([7; 32], parts);
        let recv = time_ns(REPS / 4, || {
            let view = decode_chunk_frame(&bytes).expect("decode");
            for ((p, r), (e, _, _)) in view.parts_in_buffer().zip(parts.iter()) {
                decode_groups_with(e, p.groups(), &bytes[r], |piece| {
                    black_box(piece);
                })
                .expect("verify");
            }
        });
        println!(
            "chunk frame, {name} ({payload} B): send {:.0} µs ({:.2} ns/byte), receive {:.0} µs ({:.2} ns/byte)",
            send / 1e3,
            send / payload as f64,
            recv / 1e3,
            recv / payload as f64
        );
    }

    // 3. ed25519.
    let key = SigningKey::from_bytes(&[9; 32]);
    let msg = [5u8; 32];
    let sig = key.sign(&msg);
    let sign = time_ns(REPS, || {
        black_box(key.sign(black_box(&msg)));
    });
    let verify = time_ns(REPS, || {
        black_box(key.verifying_key().verify(&msg, &sig).is_ok());
    });
    println!(
        "ed25519: sign {:.1} µs, verify {:.1} µs",
        sign / 1e3,
        verify / 1e3
    );

    // 4. The state machines on the national dataset's shape: national publishes 41,352
    //    partitions of 12.5 KB; one province (广东, 1,757 townships) takes its announce,
    //    wants, frames of 64 partitions, and sends receipts.
    let topo = Topology::china();
    let national_key = SigningKey::from_bytes(&[1; 32]);
    let national = NodeIdentity::national(national_key.clone());
    let province_code = RegionCode::parse("44").expect("code");
    let province_key = SigningKey::from_bytes(&[2; 32]);
    let cert = Certificate::issue(
        RegionCode::NATIONAL,
        &national_key,
        CertRequest {
            subject: province_code,
            subject_key: province_key.verifying_key(),
            peer_id: Vec::new(),
            not_before: UnixMs(NOW.0 - DAY_MS),
            not_after: UnixMs(NOW.0 + 365 * DAY_MS),
            serial: 1,
        },
    )
    .expect("cert");
    let province = NodeIdentity {
        region: province_code,
        key: province_key,
        chain: vec![cert],
    };
    let townships = topo.townships_under(RegionCode::NATIONAL);
    let entries: Vec<PartitionEntry> = townships
        .iter()
        .map(|&t| PartitionEntry {
            region: t,
            content_hash: *blake3::hash(&t.digits().to_le_bytes()).as_bytes(),
            bytes: 12_500,
            records: 148,
            schema_hash: s.hash(),
        })
        .collect();
    let manifest = build_manifest(
        "register".to_string(),
        1,
        CatalogOrigin {
            region: RegionCode::NATIONAL,
            department: "bench".to_string(),
        },
        RegionCode::NATIONAL,
        NOW,
        UnixMs(NOW.0 + 30 * DAY_MS),
        None,
        s.clone(),
        &entries,
    )
    .expect("manifest");
    let signed = SignedManifest::sign(manifest, &national).expect("sign");
    let anchor = national_key.verifying_key();
    let mut cfg = ReturnFlowConfig::new(national.clone());
    cfg.groups_in_flight_max = 1_024;
    let t = Instant::now();
    let mut publisher = ReturnFlow::new(cfg);
    publisher
        .publish(NOW, &mut TrustStore::new(anchor), signed, entries.clone())
        .expect("publish");
    println!(
        "publish 41,352 partitions (state machine only): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut announce = None;
    while let Some(o) = publisher.poll_output() {
        if let Output::Send {
            to,
            msg: m @ ReturnFlowMsg::Announce(_),
        } = o
        {
            if to == province_code {
                announce = Some(m);
            }
        }
    }
    let announce = announce.expect("an announce to the province");
    let frame = encode_frame(&Message::ReturnFlow(announce.clone())).expect("frame");
    let codec = time_ns(20, || {
        let frame = encode_frame(&Message::ReturnFlow(announce.clone())).expect("frame");
        let _ = black_box(decode_frame(&frame));
    });
    println!(
        "announce to 广东 ({} B): encode + decode {:.0} µs",
        frame.len(),
        codec / 1e3
    );
    // Fresh receivers each time: the first announce is the expensive one.
    let mut handle_announce = f64::INFINITY;
    let mut receiver = None;
    for _ in 0..ROUNDS {
        let mut cfg = ReturnFlowConfig::new(province.clone());
        cfg.groups_in_flight_max = 1_024;
        let mut rf = ReturnFlow::new(cfg);
        let mut trust = TrustStore::new(anchor);
        let t = Instant::now();
        rf.handle_message(NOW, &mut trust, RegionCode::NATIONAL, announce.clone());
        handle_announce = handle_announce.min(t.elapsed().as_nanos() as f64);
        receiver = Some(rf);
    }
    let province_entries = entries
        .iter()
        .filter(|e| province_code.contains(e.region))
        .count();
    println!(
        "province handles the announce (verify manifest, {province_entries} entries against the root, install): {:.0} µs",
        handle_announce / 1e3
    );
    let mut rf = receiver.expect("receiver");
    let mut trust = TrustStore::new(anchor);
    // The exchange: wants to national, national serves, frames stored at the province.
    let (mut wants, mut frames, mut receipts) = (Vec::new(), Vec::new(), Vec::new());
    let (mut t_want, mut t_stored, mut t_receipt) = (0f64, 0f64, 0f64);
    let mut pending: Vec<ReturnFlowMsg> = Vec::new();
    let drain = |rf: &mut ReturnFlow, pending: &mut Vec<ReturnFlowMsg>| {
        while let Some(o) = rf.poll_output() {
            if let Output::Send { msg, .. } = o {
                pending.push(msg);
            }
        }
    };
    drain(&mut rf, &mut pending);
    let mut now = NOW;
    for _ in 0..1_000 {
        if pending.is_empty() {
            now = now.plus_ms(1_000);
            rf.handle_tick(now);
            drain(&mut rf, &mut pending);
            if pending.is_empty() {
                break;
            }
        }
        for msg in std::mem::take(&mut pending) {
            match msg {
                m @ ReturnFlowMsg::Want { .. } => {
                    if let ReturnFlowMsg::Want { parts, .. } = &m {
                        wants.push(parts.len());
                    }
                    let t = Instant::now();
                    publisher.handle_message(now, &mut trust, province_code, m);
                    t_want += t.elapsed().as_nanos() as f64;
                    let mut served: Vec<Vec<ServePart>> = Vec::new();
                    while let Some(o) = publisher.poll_output() {
                        if let Output::ServeChunks { parts, .. } = o {
                            served.push(parts);
                        }
                    }
                    for parts in served {
                        let runs: Vec<(RegionCode, Range<u64>)> = parts
                            .iter()
                            .map(|p| (p.entry.region, p.groups.clone()))
                            .collect();
                        frames.push(runs.len());
                        let t = Instant::now();
                        rf.handle_groups_stored(
                            now,
                            RegionCode::NATIONAL,
                            &signed_hash(&rf),
                            &runs,
                        );
                        t_stored += t.elapsed().as_nanos() as f64;
                    }
                    drain(&mut rf, &mut pending);
                }
                r @ ReturnFlowMsg::Receipt(_) => {
                    receipts.push(());
                    let t = Instant::now();
                    publisher.handle_message(now, &mut trust, province_code, r);
                    t_receipt += t.elapsed().as_nanos() as f64;
                    while publisher.poll_output().is_some() {}
                }
                _ => {}
            }
        }
    }
    println!(
        "exchange for 广东's partitions: {} wants (max {} parts), publisher handles a want in {:.0} µs on average; {} frames (≤ 64 parts), province handles a stored frame in {:.0} µs; {} receipts, publisher handles one in {:.0} µs",
        wants.len(),
        wants.iter().max().copied().unwrap_or(0),
        t_want / wants.len().max(1) as f64 / 1e3,
        frames.len(),
        t_stored / frames.len().max(1) as f64 / 1e3,
        receipts.len(),
        t_receipt / receipts.len().max(1) as f64 / 1e3,
    );
}

/// The manifest hash of the receiver's one transfer.
fn signed_hash(rf: &ReturnFlow) -> [u8; 32] {
    rf.held().next().map(|(_, h)| h.hash).unwrap_or([0; 32])
}
