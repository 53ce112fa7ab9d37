//! Cost of the protocol's hot paths at national scale: region Merkle tree over every township,
//! proofs, certificate chains, chunk-group verification and frame codec. Prints criterion
//! figures; no timed assertions.

use std::sync::Arc;

use backflow_protocol::catalog::CatalogOrigin;
use backflow_protocol::cert::{NodeIdentity, TrustStore};
use backflow_protocol::manifest::{
    build_manifest, decode_groups, PartitionEntry, PartitionOutboard, RegionProof, RegionTree,
    Schema, SignedManifest, CHUNK_GROUP_BYTES,
};
use backflow_protocol::return_flow::{Announce, ReturnFlowMsg};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::wire::{decode_frame, encode_frame, Message};
use backflow_topology::{Level, RegionCode, Topology};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;

const NOW: UnixMs = UnixMs(1_750_000_000_000);

fn key(label: &str) -> SigningKey {
    SigningKey::from_bytes(blake3::hash(label.as_bytes()).as_bytes())
}

fn entries(codes: &[RegionCode], schema: &Schema) -> Vec<PartitionEntry> {
    codes
        .iter()
        .map(|r| PartitionEntry {
            region: *r,
            content_hash: *blake3::hash(r.to_string().as_bytes()).as_bytes(),
            bytes: 1 << 20,
            records: 1_000,
            schema_hash: schema.hash(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let china = Topology::china();
    let schema = Schema {
        name: "s".into(),
        fields: vec![],
        header: Vec::new(),
    };
    let all: Vec<RegionCode> = china
        .codes()
        .iter()
        .copied()
        .filter(|r| *r != RegionCode::NATIONAL)
        .collect();
    let national = entries(&all, &schema);
    c.bench_function("region tree: build over all 44,703 regions", |b| {
        b.iter(|| RegionTree::build(RegionCode::NATIONAL, black_box(&national)).unwrap())
    });
    let tree = RegionTree::build(RegionCode::NATIONAL, &national).unwrap();
    let t = china
        .codes()
        .iter()
        .copied()
        .find(|r| r.level() == Level::Township)
        .unwrap();
    let proof = tree.proof_for(t, &RegionProof::default()).unwrap();
    let own: Vec<PartitionEntry> = national.iter().filter(|e| e.region == t).copied().collect();
    let leaf = RegionTree::build(t, &own).unwrap();
    c.bench_function("region proof: township up to national", |b| {
        b.iter(|| {
            proof
                .root_from(t, black_box(leaf.root_hash()), RegionCode::NATIONAL)
                .unwrap()
        })
    });

    // Certificates: a township chain, cold and with the verified-signature memo.
    let root = NodeIdentity::national(key("0"));
    let mut id = root.clone();
    for r in t.path().into_iter().skip(1) {
        id = id
            .certify_child(
                &key(&r.to_string()),
                vec![1; 38],
                NOW,
                NOW.plus_ms(DAY_MS),
                r,
                1,
            )
            .unwrap();
    }
    c.bench_function("verify township chain (4 certs), cold", |b| {
        b.iter(|| {
            TrustStore::new(root.key.verifying_key())
                .verify_chain(black_box(&id.chain), NOW)
                .unwrap()
        })
    });
    let mut warm = TrustStore::new(root.key.verifying_key());
    warm.verify_chain(&id.chain, NOW).unwrap();
    c.bench_function("verify township chain (4 certs), memoised", |b| {
        b.iter(|| warm.verify_chain(black_box(&id.chain), NOW).unwrap())
    });

    // Chunk groups: encode and verify 16 KiB and a full 512 KiB frame.
    let content: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let entry = PartitionEntry::for_content(t, &content, 1, &schema);
    let ob = PartitionOutboard::new(&entry, &content).unwrap();
    let mut g = c.benchmark_group("chunk groups");
    for groups in [1u64, 32] {
        let range = 100..100 + groups;
        let encoded = ob.encode_groups(&entry, &content, range.clone()).unwrap();
        g.throughput(Throughput::Bytes(groups * CHUNK_GROUP_BYTES));
        g.bench_function(format!("decode+verify {groups} group(s)"), |b| {
            b.iter(|| decode_groups(&entry, range.clone(), black_box(&encoded)).unwrap())
        });
        g.bench_function(format!("encode {groups} group(s)"), |b| {
            b.iter(|| ob.encode_groups(&entry, &content, range.clone()).unwrap())
        });
    }
    g.finish();

    // Frame codec: a province announce (its whole subtree of entries).
    let province = RegionCode::parse("51").unwrap();
    let sub: Vec<PartitionEntry> = national
        .iter()
        .filter(|e| province.contains(e.region) && e.region != province)
        .copied()
        .collect();
    let m = build_manifest(
        "bench".into(),
        1,
        CatalogOrigin {
            region: RegionCode::NATIONAL,
            department: "d".into(),
        },
        RegionCode::NATIONAL,
        NOW,
        NOW.plus_ms(DAY_MS),
        None,
        schema.clone(),
        &national,
    )
    .unwrap();
    let signed = Arc::new(SignedManifest::sign(m, &root).unwrap());
    let msg = Message::ReturnFlow(ReturnFlowMsg::Announce(Announce {
        manifest: signed,
        entries: sub.clone(),
        proof: tree.proof_for(province, &RegionProof::default()).unwrap(),
    }));
    let bytes = encode_frame(&msg).unwrap();
    println!(
        "province 51 announce: {} entries, {} bytes per frame",
        sub.len(),
        bytes.len()
    );
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode province announce", |b| {
        b.iter(|| encode_frame(black_box(&msg)).unwrap())
    });
    g.bench_function("decode province announce", |b| {
        b.iter(|| decode_frame(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
