//! Signed manifests, the region Merkle tree, succession, and chunk-by-chunk verification.

mod common;

use backflow_protocol::manifest::{
    check_succession, decode_groups, group_count, verify_partitions, ChunkError, HeldVersion,
    ManifestError, ManifestPolicy, PartitionOutboard, RegionProof, RegionTree, Succession,
    CHUNK_GROUP_BYTES,
};
use backflow_protocol::time::DAY_MS;
use common::*;

const PARTS: &[(&str, usize)] = &[
    ("110101", 1_000),
    ("110101001", 70_000),
    ("110101002", 20_000),
    ("110102001", 5_000),
    ("1201", 300),
];

fn ds(version: u64) -> Dataset {
    let fx = Fixture::new();
    dataset(
        &fx,
        "dibao",
        version,
        None,
        "0",
        "0",
        PARTS,
        T0,
        30 * DAY_MS,
    )
}

fn policy() -> ManifestPolicy {
    ManifestPolicy::default()
}

#[test]
fn township_verifies_its_partition_without_siblings() {
    let fx = Fixture::new();
    let d = ds(1);
    d.manifest.verify(&mut fx.trust(), T0, &policy()).unwrap();
    let tree = RegionTree::build(code("0"), &d.entries).unwrap();
    let t = code("110101001");
    let mine: Vec<_> = d
        .entries
        .iter()
        .filter(|e| e.region == t)
        .copied()
        .collect();
    let proof = tree.proof_for(t, &RegionProof::default()).unwrap();
    // The proof names siblings only by subtree hash; no sibling entry is needed.
    verify_partitions(&d.manifest.manifest, t, &mine, &proof).unwrap();
    // A city verifies the union of its counties' partitions.
    let city = code("1101");
    let union: Vec<_> = d
        .entries
        .iter()
        .filter(|e| city.contains(e.region))
        .copied()
        .collect();
    assert_eq!(union.len(), 4);
    let proof = tree.proof_for(city, &RegionProof::default()).unwrap();
    let sub = verify_partitions(&d.manifest.manifest, city, &union, &proof).unwrap();
    // …and can derive each county's proof from it plus its own.
    let county_proof = sub.proof_for(code("110101"), &proof).unwrap();
    let county: Vec<_> = union
        .iter()
        .filter(|e| code("110101").contains(e.region))
        .copied()
        .collect();
    verify_partitions(&d.manifest.manifest, code("110101"), &county, &county_proof).unwrap();
    // Dropping one county's partition from the union breaks it.
    assert_eq!(
        verify_partitions(&d.manifest.manifest, city, &union[1..], &proof).unwrap_err(),
        ManifestError::RootMismatch
    );
}

#[test]
fn sibling_partitions_are_refused() {
    let d = ds(1);
    let tree = RegionTree::build(code("0"), &d.entries).unwrap();
    let t = code("110101001");
    let proof = tree.proof_for(t, &RegionProof::default()).unwrap();
    let sibling: Vec<_> = d
        .entries
        .iter()
        .filter(|e| e.region == code("110101002"))
        .copied()
        .collect();
    assert!(matches!(
        verify_partitions(&d.manifest.manifest, t, &sibling, &proof),
        Err(ManifestError::OutsideRegion { .. })
    ));
}

#[test]
fn mix_and_match_is_detected() {
    let fx = Fixture::new();
    let v1 = ds(1);
    let v2 = ds(2);
    let other = dataset(&fx, "tekun", 1, None, "0", "0", PARTS, T0, 30 * DAY_MS);
    let t = code("110101001");
    let take = |d: &Dataset| -> (Vec<_>, RegionProof) {
        let tree = RegionTree::build(code("0"), &d.entries).unwrap();
        (
            d.entries
                .iter()
                .filter(|e| e.region == t)
                .copied()
                .collect(),
            tree.proof_for(t, &RegionProof::default()).unwrap(),
        )
    };
    let (e1, p1) = take(&v1);
    let (e2, p2) = take(&v2);
    // Partition of version 1 under the version 2 manifest, and vice versa.
    assert_eq!(
        verify_partitions(&v2.manifest.manifest, t, &e1, &p1).unwrap_err(),
        ManifestError::RootMismatch
    );
    assert_eq!(
        verify_partitions(&v2.manifest.manifest, t, &e1, &p2).unwrap_err(),
        ManifestError::RootMismatch
    );
    // Same content under another dataset's manifest (same partitions, different schema? no:
    // same schema, different content seed) is refused.
    let (eo, po) = take(&other);
    let _ = eo;
    assert_eq!(
        verify_partitions(&other.manifest.manifest, t, &e2, &po).unwrap_err(),
        ManifestError::RootMismatch
    );
    // A partition relabelled to another region.
    let mut relabelled = e2.clone();
    relabelled[0].region = code("110101002");
    let tree = RegionTree::build(code("0"), &v2.entries).unwrap();
    let p_sib = tree
        .proof_for(code("110101002"), &RegionProof::default())
        .unwrap();
    assert_eq!(
        verify_partitions(
            &v2.manifest.manifest,
            code("110101002"),
            &relabelled,
            &p_sib
        )
        .unwrap_err(),
        ManifestError::RootMismatch
    );
    // A different record count or size claims.
    let mut inflated = e2.clone();
    inflated[0].records += 1;
    assert_eq!(
        verify_partitions(&v2.manifest.manifest, t, &inflated, &p2).unwrap_err(),
        ManifestError::RootMismatch
    );
}

#[test]
fn malformed_proofs_are_errors() {
    let d = ds(1);
    let tree = RegionTree::build(code("0"), &d.entries).unwrap();
    let t = code("110101001");
    let mine: Vec<_> = d
        .entries
        .iter()
        .filter(|e| e.region == t)
        .copied()
        .collect();
    let good = tree.proof_for(t, &RegionProof::default()).unwrap();
    let mut short = good.clone();
    short.levels.pop();
    assert!(matches!(
        verify_partitions(&d.manifest.manifest, t, &mine, &short),
        Err(ManifestError::BadProof(_))
    ));
    let mut dup = good.clone();
    dup.levels[0].siblings.push((t, [0; 32]));
    assert!(verify_partitions(&d.manifest.manifest, t, &mine, &dup).is_err());
    let mut foreign = good.clone();
    foreign.levels[0].siblings[0].0 = code("120101001");
    assert!(matches!(
        verify_partitions(&d.manifest.manifest, t, &mine, &foreign),
        Err(ManifestError::BadProof(_))
    ));
}

#[test]
fn rollback_equivocation_and_forks_are_refused() {
    let fx = Fixture::new();
    let v1 = ds(1);
    let h1 = v1.manifest.manifest.hash();
    let v2 = dataset(&fx, "dibao", 2, Some(h1), "0", "0", PARTS, T0, 30 * DAY_MS);
    let h2 = v2.manifest.manifest.hash();
    let held = |version, hash| Some(HeldVersion { version, hash });
    assert_eq!(
        check_succession(held(1, h1), &v2.manifest.manifest, h2),
        Ok(Succession::Newer)
    );
    assert!(matches!(
        check_succession(held(2, h2), &v1.manifest.manifest, h1),
        Err(ManifestError::Rollback {
            held: 2,
            offered: 1,
            ..
        })
    ));
    assert_eq!(
        check_succession(held(2, h2), &v2.manifest.manifest, h2),
        Ok(Succession::Same)
    );
    let v2b = dataset(
        &fx,
        "dibao",
        2,
        Some(h1),
        "0",
        "0",
        &PARTS[..2],
        T0,
        30 * DAY_MS,
    );
    assert!(matches!(
        check_succession(
            held(2, h2),
            &v2b.manifest.manifest,
            v2b.manifest.manifest.hash()
        ),
        Err(ManifestError::Equivocation { .. })
    ));
    let forked = dataset(
        &fx,
        "dibao",
        2,
        Some([9; 32]),
        "0",
        "0",
        PARTS,
        T0,
        30 * DAY_MS,
    );
    assert!(matches!(
        check_succession(
            held(1, h1),
            &forked.manifest.manifest,
            forked.manifest.manifest.hash()
        ),
        Err(ManifestError::ForkedHistory { .. })
    ));
    // Fast-forward: at most VERSION_STEP_MAX ahead of the held version.
    let step = backflow_protocol::manifest::VERSION_STEP_MAX;
    let edge = ds(1 + step);
    let e = &edge.manifest.manifest;
    assert_eq!(
        check_succession(held(1, h1), e, e.hash()),
        Ok(Succession::Newer)
    );
    assert!(matches!(
        check_succession(held(0, h1), e, e.hash()),
        Err(ManifestError::VersionJump { held: 0, .. })
    ));
}

#[test]
fn expiry_bounds_the_freeze_window() {
    let fx = Fixture::new();
    let d = ds(1);
    let mut trust = fx.trust();
    assert!(matches!(
        d.manifest
            .verify(&mut trust, T0.plus_ms(30 * DAY_MS), &policy()),
        Err(ManifestError::Expired { .. })
    ));
    let forever = dataset(&fx, "dibao", 1, None, "0", "0", PARTS, T0, 3650 * DAY_MS);
    assert!(matches!(
        forever.manifest.verify(&mut trust, T0, &policy()),
        Err(ManifestError::ValidityTooLong { .. })
    ));
    let future = dataset(
        &fx,
        "dibao",
        1,
        None,
        "0",
        "0",
        PARTS,
        T0.plus_ms(DAY_MS),
        DAY_MS,
    );
    assert!(matches!(
        future.manifest.verify(&mut trust, T0, &policy()),
        Err(ManifestError::NotYetIssued { .. })
    ));
}

#[test]
fn wrong_signer_is_refused() {
    let fx = Fixture::new();
    // A province publishes for itself; then someone else's signature is swapped in.
    let d = dataset(&fx, "x", 1, None, "11", "11", &PARTS[..4], T0, DAY_MS);
    d.manifest.verify(&mut fx.trust(), T0, &policy()).unwrap();
    let mut stolen = d.manifest.clone();
    stolen.signer = fx.id("12").chain.clone();
    stolen.signature = fx.id("12").sign(&stolen.manifest.hash());
    assert!(matches!(
        stolen.verify(&mut fx.trust(), T0, &policy()),
        Err(ManifestError::WrongSigner { .. })
    ));
    // Signing a manifest for another publisher is refused at the source too.
    assert!(backflow_protocol::manifest::SignedManifest::sign(
        d.manifest.manifest.clone(),
        fx.id("1101")
    )
    .is_err());
    // A publisher cannot scope outside its own region.
    let mut m = d.manifest.manifest.clone();
    m.scope = code("12");
    let s = backflow_protocol::manifest::SignedManifest::sign(m, fx.id("11")).unwrap();
    assert!(matches!(
        s.verify(&mut fx.trust(), T0, &policy()),
        Err(ManifestError::ScopeOutsidePublisher { .. })
    ));
    // Tampering with any field breaks the signature.
    let mut t = d.manifest.clone();
    t.manifest.records_total += 1;
    assert!(matches!(
        t.verify(&mut fx.trust(), T0, &policy()),
        Err(ManifestError::Cert(_))
    ));
}

#[test]
fn chunks_verify_one_by_one_and_bad_ones_are_caught_at_once() {
    let d = ds(1);
    let e = d
        .entries
        .iter()
        .find(|e| e.region == code("110101001"))
        .copied()
        .unwrap();
    let data = &d.contents[&e.region];
    let groups = group_count(e.bytes);
    assert_eq!(groups, 5);
    let ob = PartitionOutboard::new(&e, data).unwrap();
    // Resume in any order: each group verifies alone and reassembles the content.
    let mut rebuilt = vec![0u8; data.len()];
    for g in [3u64, 0, 4, 1, 2] {
        let enc = ob.encode_groups(&e, data, g..g + 1).unwrap();
        let bytes = decode_groups(&e, g..g + 1, &enc).unwrap();
        let at = (g * CHUNK_GROUP_BYTES) as usize;
        rebuilt[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    assert_eq!(&rebuilt, data);
    // A multi-group frame.
    let enc = ob.encode_groups(&e, data, 1..5).unwrap();
    assert_eq!(
        decode_groups(&e, 1..5, &enc).unwrap(),
        data[CHUNK_GROUP_BYTES as usize..]
    );
    // Flip one byte in group 2's data: caught, and named.
    let mut bad = enc.clone();
    let n = bad.len();
    bad[n - 20_000] ^= 1;
    match decode_groups(&e, 1..5, &bad) {
        Err(ChunkError::HashMismatch { group }) => assert!((1..5).contains(&group)),
        other => panic!("{other:?}"),
    }
    // Groups from another partition (arbitrary content with a valid-looking encoding).
    let other = d
        .entries
        .iter()
        .find(|e| e.region == code("110101002"))
        .unwrap();
    let ob2 = PartitionOutboard::new(other, &d.contents[&other.region]).unwrap();
    let foreign = ob2
        .encode_groups(other, &d.contents[&other.region], 0..1)
        .unwrap();
    assert!(decode_groups(&e, 0..1, &foreign).is_err());
    // Truncated and over-long frames, and out-of-range groups.
    assert!(decode_groups(&e, 1..5, &enc[..enc.len() - 1]).is_err());
    let mut long = enc.clone();
    long.push(0);
    assert!(matches!(
        decode_groups(&e, 1..5, &long),
        Err(ChunkError::TrailingBytes(1))
    ));
    assert!(matches!(
        decode_groups(&e, 5..6, &enc),
        Err(ChunkError::OutOfRange { .. })
    ));
    assert!(PartitionOutboard::new(&e, &data[1..]).is_err());
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Chunk decoding is total over hostile entries, ranges and encodings.
        #[test]
        fn decode_groups_never_panics(
            bytes in prop_oneof![0u64..200_000, any::<u64>()],
            start in prop_oneof![0u64..20, any::<u64>()],
            len in prop_oneof![0u64..40, any::<u64>()],
            encoded in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let d = ds(1);
            let mut e = d.entries[1];
            e.bytes = bytes;
            let _ = decode_groups(&e, start..start.saturating_add(len), &encoded);
        }

        /// Proof verification is total over hostile proofs.
        #[test]
        fn proofs_never_panic(
            sibling_codes in proptest::collection::vec(any::<u64>(), 0..6),
            levels in 0usize..6,
        ) {
            let d = ds(1);
            let t = code("110101001");
            let mine: Vec<_> = d.entries.iter().filter(|e| e.region == t).copied().collect();
            let mut proof = RegionProof::default();
            for _ in 0..levels {
                let mut level = backflow_protocol::manifest::ProofLevel::default();
                for c in &sibling_codes {
                    if let Ok(code) = backflow_protocol::RegionCode::new(backflow_protocol::Level::Township, c % 1_000_000_000) {
                        level.siblings.push((code, [0; 32]));
                    }
                }
                proof.levels.push(level);
            }
            let _ = verify_partitions(&d.manifest.manifest, t, &mine, &proof);
        }
    }
}

/// The in-place encoder and decoder are held to bao-tree's own `encode_ranges_validated` and
/// `DecodeResponseIter` (the reference implementation of the encoding), byte for byte and
/// verdict for verdict, over partition sizes around group and tree boundaries.
mod against_bao_tree {
    use super::*;
    use backflow_protocol::manifest::{
        decode_groups_with, encode_groups_into, PartitionEntry, ServeError,
        CHUNK_GROUPS_PER_FRAME_MAX,
    };
    use bao_tree::io::outboard::PreOrderMemOutboard;
    use bao_tree::io::sync::{encode_ranges_validated, DecodeResponseIter};
    use bao_tree::io::BaoContentItem;
    use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
    use std::ops::Range;

    const BLOCK: BlockSize = BlockSize::from_chunk_log(4);
    const G: u64 = CHUNK_GROUP_BYTES;

    fn ranges(groups: &Range<u64>) -> ChunkRanges {
        ChunkRanges::from(ChunkNum(groups.start * 16)..ChunkNum(groups.end * 16))
    }

    /// Content that differs at every position (a repeated pattern would hide misplaced groups).
    fn bytes(len: u64) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// A partition of `len` bytes: its content, its entry and its outboard.
    fn partition(len: u64) -> (Vec<u8>, PartitionEntry, PreOrderMemOutboard) {
        let data = bytes(len);
        let e = PartitionEntry::for_content(code("110101001"), &data, 1, &schema());
        let ob = PreOrderMemOutboard::create(&data, BLOCK);
        (data, e, ob)
    }

    fn reference_encode(data: &[u8], ob: &PreOrderMemOutboard, groups: &Range<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_ranges_validated(data, ob, &ranges(groups), &mut out).unwrap();
        out
    }

    /// bao-tree's decoder: the content, or `None` if it rejects the encoding.
    fn reference_decode(e: &PartitionEntry, groups: &Range<u64>, enc: &[u8]) -> Option<Vec<u8>> {
        let tree = BaoTree::new(e.bytes, BLOCK);
        let r = ranges(groups);
        let mut reader = enc;
        let mut out = Vec::new();
        for item in DecodeResponseIter::new(
            blake3::Hash::from_bytes(e.content_hash),
            tree,
            &mut reader,
            &r,
        ) {
            match item.ok()? {
                BaoContentItem::Parent(_) => {}
                BaoContentItem::Leaf(l) => out.extend_from_slice(&l.data),
            }
        }
        reader.is_empty().then_some(out)
    }

    fn ours_decode(e: &PartitionEntry, groups: &Range<u64>, enc: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        decode_groups_with(e, groups.clone(), enc, |p| out.extend_from_slice(p))
            .ok()
            .map(|()| out)
    }

    /// Sizes around one group, one frame and uneven trees, and the group ranges to try.
    fn cases() -> Vec<(u64, Vec<Range<u64>>)> {
        let sizes = [
            1,
            1023,
            1024,
            1025,
            G - 1,
            G,
            G + 1,
            2 * G,
            3 * G + 17,
            64 * G,
            64 * G + 1,
            100 * G - 5,
            257 * G + 999,
        ];
        sizes
            .iter()
            .map(|&len| {
                let groups = len.div_ceil(G);
                let mut rs = vec![0..1, 0..groups.min(CHUNK_GROUPS_PER_FRAME_MAX)];
                rs.push(groups - 1..groups);
                if groups > 3 {
                    rs.push(1..groups.min(1 + CHUNK_GROUPS_PER_FRAME_MAX));
                    rs.push(groups / 2..(groups / 2 + 3).min(groups));
                }
                if groups > CHUNK_GROUPS_PER_FRAME_MAX {
                    rs.push(groups - CHUNK_GROUPS_PER_FRAME_MAX..groups);
                }
                (len, rs)
            })
            .collect()
    }

    #[test]
    fn encoder_writes_bao_trees_bytes_and_decoder_agrees() {
        // A stale, longer buffer: reused output is overwritten and cut to length.
        let mut out = vec![0xAAu8; 3 << 20];
        for (len, rs) in cases() {
            let (data, e, ob) = partition(len);
            for groups in rs {
                let expected = reference_encode(&data, &ob, &groups);
                encode_groups_into(
                    &e,
                    &ob,
                    groups.clone(),
                    |at, buf| {
                        buf.copy_from_slice(&data[at as usize..at as usize + buf.len()]);
                        Ok(())
                    },
                    &mut out,
                )
                .unwrap();
                assert_eq!(out, expected, "encoding of {groups:?} of {len} bytes");
                let content = ours_decode(&e, &groups, &out).unwrap();
                assert_eq!(Some(&content), reference_decode(&e, &groups, &out).as_ref());
                let from = (groups.start * G) as usize;
                assert_eq!(content, data[from..from + content.len()]);
            }
        }
    }

    #[test]
    fn decoder_rejects_what_bao_tree_rejects() {
        for (len, rs) in cases() {
            let (data, e, ob) = partition(len);
            for groups in rs {
                let enc = reference_encode(&data, &ob, &groups);
                // One flipped bit at positions spread over the encoding (hashes and data).
                let n = enc.len();
                for at in [
                    0,
                    1,
                    31,
                    32,
                    63,
                    64,
                    65,
                    n / 3,
                    n / 2,
                    n.saturating_sub(65),
                    n - 1,
                ] {
                    let mut bad = enc.clone();
                    bad[at.min(n - 1)] ^= 0x10;
                    let ours = ours_decode(&e, &groups, &bad);
                    assert_eq!(ours, reference_decode(&e, &groups, &bad), "flip at {at}");
                    assert_eq!(ours, None, "a flipped bit at {at} of {groups:?} ({len} B)");
                }
                // Cut short, one byte long, and another range's encoding.
                assert_eq!(ours_decode(&e, &groups, &enc[..n - 1]), None);
                let mut long = enc.clone();
                long.push(0);
                assert_eq!(ours_decode(&e, &groups, &long), None);
                if groups.end < e.groups() {
                    let shifted = groups.start + 1..groups.end + 1;
                    assert_eq!(ours_decode(&e, &shifted, &enc), None);
                }
            }
        }
    }

    #[test]
    fn encoder_refuses_corrupt_content_and_names_the_group() {
        let (data, e, ob) = partition(100 * G);
        let mut rotten = data.clone();
        rotten[(37 * G + 5) as usize] ^= 1;
        let mut out = Vec::new();
        let read = |at: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&rotten[at as usize..at as usize + buf.len()]);
            Ok(())
        };
        // The content's fault (the hash pairs above it verified): the shell drops the group.
        match encode_groups_into(&e, &ob, 30..40, read, &mut out) {
            Err(ServeError::ContentDamaged { group: 37 }) => {}
            other => panic!("{other:?}"),
        }
        // A damaged outboard is not the content's fault: a plain mismatch (the shell forgets
        // the outboard and rebuilds it from the content).
        let mut bad_outboard = ob.clone();
        bad_outboard.data[0] ^= 1;
        let good = |at: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&data[at as usize..at as usize + buf.len()]);
            Ok(())
        };
        match encode_groups_into(&e, &bad_outboard, 30..40, good, &mut out) {
            Err(ServeError::Chunk(ChunkError::HashMismatch { .. })) => {}
            other => panic!("{other:?}"),
        }
        // Groups before the bad one still serve.
        encode_groups_into(&e, &ob, 30..37, read, &mut out).unwrap();
        assert_eq!(out, reference_encode(&data, &ob, &(30..37)));
        // A failing read is reported, not served.
        let failing = |_: u64, _: &mut [u8]| Err(std::io::Error::other("disk gone"));
        assert!(matches!(
            encode_groups_into(&e, &ob, 0..1, failing, &mut out),
            Err(ServeError::Read(_))
        ));
        // An outboard of other content, and ranges outside the partition.
        let other = PreOrderMemOutboard::create(bytes(100 * G + 1), BLOCK);
        assert!(encode_groups_into(&e, &other, 0..1, read, &mut out).is_err());
        assert!(matches!(
            encode_groups_into(&e, &ob, 99..101, read, &mut out),
            Err(ServeError::Chunk(ChunkError::OutOfRange { .. }))
        ));
    }
}

/// The push-based outboard builder yields bao-tree's root and pre-order outboard, byte for
/// byte, however the content is cut into pieces.
#[test]
fn outboard_builder_matches_bao_tree() {
    use backflow_protocol::manifest::OutboardBuilder;
    use bao_tree::io::outboard::PreOrderMemOutboard;
    use bao_tree::BlockSize;
    let g = CHUNK_GROUP_BYTES;
    for len in [
        0,
        1,
        1024,
        g - 1,
        g,
        g + 1,
        2 * g,
        3 * g,
        3 * g + 17,
        4 * g,
        5 * g - 1,
        64 * g + 1,
        100 * g - 5,
        257 * g + 999,
    ] {
        let data: Vec<u8> = (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let reference = PreOrderMemOutboard::create(&data, BlockSize::from_chunk_log(4));
        for piece in [1usize, 1000, 16 * 1024, 70_000, usize::MAX] {
            let mut b = OutboardBuilder::new();
            for p in data.chunks(piece.min(data.len().max(1))) {
                b.push(p);
            }
            let (root, pairs) = b.finish();
            assert_eq!(&root, reference.root.as_bytes(), "root of {len} bytes");
            assert_eq!(
                pairs, reference.data,
                "outboard of {len} bytes, pieces of {piece}"
            );
        }
    }
}
