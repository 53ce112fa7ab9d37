//! Wire format: round trips, version tag, hard limits, and totality on hostile bytes.

mod common;

use std::sync::Arc;

use backflow_protocol::catalog_sync::CatalogMsg;
use backflow_protocol::endpoint::RunVerdict;
use backflow_protocol::manifest::{ChunkFrame, ChunkPart};
use backflow_protocol::return_flow::{Announce, ReturnFlowMsg, WantPart};
use backflow_protocol::wire::{
    decode_chunk_frame, decode_frame, encode_chunk_frame_head, encode_frame, encode_value, Hello,
    Message, WireError, FRAME_BYTES_MAX, PROTOCOL_VERSION, WANT_PARTS_MAX, WANT_RANGES_MAX,
};
use common::net::{Faults, Net, NetConfig};
use common::*;
use proptest::prelude::*;

fn sample_messages() -> Vec<Message> {
    let fx = Fixture::new();
    let ds = dataset(
        &fx,
        "dibao",
        1,
        None,
        "0",
        "0",
        &[("110101001", 40_000), ("110102001", 10)],
        T0,
        DAY_MS_30,
    );
    let tree = backflow_protocol::manifest::RegionTree::build(code("0"), &ds.entries).unwrap();
    let proof = tree
        .proof_for(code("110101001"), &Default::default())
        .unwrap();
    vec![
        Message::Hello(Hello {
            chain: fx.id("110101001").chain.clone(),
        }),
        Message::Catalog(CatalogMsg::Updates {
            log_id: 7,
            first: 1,
            updates: vec![Arc::new(signed_update(
                &fx,
                "110101",
                "公安局",
                1,
                vec![add("e1", "公安局")],
            ))],
        }),
        Message::Catalog(CatalogMsg::Ack {
            log_id: 7,
            watermark: 3,
        }),
        Message::ReturnFlow(ReturnFlowMsg::Announce(Announce {
            manifest: Arc::new(ds.manifest.clone()),
            entries: vec![ds.entries[0]],
            proof,
        })),
        Message::ReturnFlow(ReturnFlowMsg::Want {
            manifest: [1; 32],
            parts: vec![
                WantPart {
                    region: code("110101001"),
                    groups: vec![0..2, 5..6],
                },
                WantPart {
                    region: code("110101002"),
                    groups: std::iter::once(0..1).collect(),
                },
            ],
        }),
        Message::Chunk(ChunkFrame {
            manifest: [2; 32],
            parts: vec![part("110101001", 0, 1, 60), part("110101002", 0, 1, 40)],
            encoded: vec![9; 100],
        }),
    ]
}

fn part(region: &str, first_group: u64, group_count: u64, encoded_len: usize) -> ChunkPart {
    ChunkPart {
        region: code(region),
        first_group,
        group_count,
        encoded_len: encoded_len as u32,
    }
}

/// A chunk frame of one part spanning the whole payload.
fn frame1(
    manifest: [u8; 32],
    region: &str,
    first_group: u64,
    group_count: u64,
    encoded: Vec<u8>,
) -> ChunkFrame {
    ChunkFrame {
        manifest,
        parts: vec![part(region, first_group, group_count, encoded.len())],
        encoded,
    }
}

const DAY_MS_30: u64 = 30 * backflow_protocol::time::DAY_MS;

#[test]
fn every_message_round_trips() {
    for m in sample_messages() {
        let bytes = encode_frame(&m).unwrap();
        assert_eq!(decode_frame(&bytes).unwrap(), m);
    }
}

#[test]
fn frame_carries_version_tag() {
    let m = &sample_messages()[2];
    let mut bytes = encode_frame(m).unwrap();
    assert_eq!(
        bytes[0] as u16, PROTOCOL_VERSION,
        "varint version comes first"
    );
    // Another version (a single varint byte below 251).
    let other = PROTOCOL_VERSION + 1;
    bytes[0] = other as u8;
    assert_eq!(
        decode_frame(&bytes),
        Err(WireError::UnsupportedVersion {
            got: other,
            supported: PROTOCOL_VERSION
        })
    );
}

#[test]
fn endless_data_oversized_frame_is_refused_before_decoding() {
    let bytes = vec![1u8; FRAME_BYTES_MAX + 1];
    assert!(matches!(
        decode_frame(&bytes),
        Err(WireError::FrameTooLarge { .. })
    ));
    // A chunk frame over its own limit cannot be encoded either.
    let big = Message::Chunk(frame1([0; 32], "11", 0, 1, vec![0; 2 * 1024 * 1024]));
    assert!(matches!(encode_frame(&big), Err(WireError::Limit(_))));
}

#[test]
fn a_length_prefix_claiming_more_than_the_frame_is_an_error() {
    // Chunk frame whose `encoded` claims 3 GiB: bincode must fail on the limit, not allocate.
    let mut bytes = encode_value(&PROTOCOL_VERSION).unwrap();
    bytes.extend(encode_value(&3u32).unwrap()); // variant index of Message::Chunk
    bytes.extend([0u8; 32]); // manifest
    bytes.extend(encode_value(&vec![part("11", 0, 1, 16)]).unwrap()); // parts
    bytes.extend(encode_value(&(3u64 << 30)).unwrap()); // Vec length
    bytes.extend([0u8; 16]);
    assert!(matches!(decode_frame(&bytes), Err(WireError::Malformed(_))));
}

#[test]
fn over_limit_collections_are_refused_on_decode() {
    let one = |n: u64| WantPart {
        region: code("110101001"),
        groups: (0..n).map(|g| g..g + 1).collect(),
    };
    // Too many ranges in one partition; too many over several; too many partitions.
    let halves = vec![
        one(WANT_RANGES_MAX as u64 / 2),
        one(WANT_RANGES_MAX as u64 / 2 + 1),
    ];
    for parts in [
        vec![one(WANT_RANGES_MAX as u64 + 1)],
        halves,
        vec![one(1); WANT_PARTS_MAX + 1],
    ] {
        let m = Message::ReturnFlow(ReturnFlowMsg::Want {
            manifest: [1; 32],
            parts,
        });
        assert!(matches!(encode_frame(&m), Err(WireError::Limit(_))));
        // Bypass the encoder's check, as a hostile peer would.
        let mut bytes = encode_value(&PROTOCOL_VERSION).unwrap();
        bytes.extend(encode_value(&m).unwrap());
        assert!(matches!(decode_frame(&bytes), Err(WireError::Limit(_))));
    }
    // At the limits exactly: accepted.
    let m = Message::ReturnFlow(ReturnFlowMsg::Want {
        manifest: [1; 32],
        parts: vec![one(1); WANT_PARTS_MAX],
    });
    assert!(decode_frame(&encode_frame(&m).unwrap()).is_ok());
}

#[test]
fn truncations_and_trailing_bytes_are_errors() {
    for m in sample_messages() {
        let bytes = encode_frame(&m).unwrap();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_frame(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode_frame(&long),
            Err(WireError::TrailingBytes { extra: 1 })
        ));
    }
}

/// Feeds a decoded message to county 110101's endpoint as if from several peers (what the
/// `handlers` fuzz target does): its city, its township and national (admitted), and a
/// township of another county and another province (connected, and refused at admission),
/// all through the endpoint of the in-memory network; then an hour of its timers.
fn feed(message: &Message) {
    let mut net = Net::new(0, Faults::NONE, NetConfig::default());
    let me = code("110101");
    for stranger in ["110102001", "12"] {
        net.connect(code(stranger), me);
    }
    net.deliver_due();
    for from in ["1101", "110101001", "110102001", "12", "0"] {
        let from = code(from);
        net.inject(from, me, message.clone());
        // A shell may report any verdict on a frame's runs, a wrong one included (the chunk
        // handlers of the return flow, with every run): the endpoint must take it.
        if let (Message::Chunk(f), Some(region)) = (message, net.ep(me).region_of(&from)) {
            let runs: Vec<_> = f
                .parts
                .iter()
                .flat_map(|p| {
                    [
                        (p.region, p.groups(), RunVerdict::Stored),
                        (
                            p.region,
                            p.groups(),
                            RunVerdict::Rejected {
                                group: p.first_group,
                                reason: "fed".into(),
                            },
                        ),
                    ]
                })
                .collect();
            let now = net.now;
            net.node_mut(me)
                .ep
                .handle_chunk_verdict(now, region, &f.manifest, &runs);
            net.flush(me);
        }
    }
    net.tick(me, T0.plus_ms(3_600_000));
}

#[test]
fn valid_messages_from_any_region_are_handled() {
    for m in sample_messages() {
        feed(&m);
    }
}

/// The frame of sample message `idx` with the bytes at `flips` (taken modulo its length)
/// XORed with their values.
fn mutated_frame(idx: usize, flips: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = encode_frame(&sample_messages()[idx]).unwrap();
    for &(at, v) in flips {
        let n = bytes.len();
        bytes[at % n] ^= v;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mutated_frames_that_decode_never_panic_a_node(idx in 0usize..6, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let bytes = mutated_frame(idx, &flips);
        if let Ok(m) = decode_frame(&bytes) {
            feed(&m);
        }
    }
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_frame(&bytes);
        let _ = decode_chunk_frame(&bytes);
    }

    /// The borrowing chunk decoder agrees with `decode_frame` on every mutation of every
    /// message: the same chunk frame where that decodes one, an error everywhere else.
    #[test]
    fn chunk_view_agrees_with_decode_frame(idx in 0usize..6, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
        let bytes = mutated_frame(idx, &flips);
        match (decode_frame(&bytes), decode_chunk_frame(&bytes)) {
            (Ok(Message::Chunk(frame)), Ok(view)) => {
                prop_assert_eq!(view.manifest, frame.manifest);
                prop_assert_eq!(&view.parts, &frame.parts);
                prop_assert_eq!(&bytes[view.payload.clone()], &frame.encoded[..]);
                let in_view: Vec<&[u8]> = view.parts_in_buffer().map(|(_, r)| &bytes[r]).collect();
                let in_frame: Vec<&[u8]> = frame.parts_with_payload().map(|(_, b)| b).collect();
                prop_assert_eq!(in_view, in_frame);
            }
            (Ok(Message::Chunk(_)), Err(e)) => prop_assert!(false, "view refused a chunk frame: {}", e),
            (_, Ok(view)) => prop_assert!(false, "view accepted a non-chunk frame: {:?}", view),
            (_, Err(_)) => {}
        }
    }

    #[test]
    fn decoding_mutated_frames_never_panics(idx in 0usize..6, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let bytes = mutated_frame(idx, &flips);
        let _ = decode_frame(&bytes);
    }
}

/// `ChunkFrame::encoded` is coded as one byte block (`serde_bytes`) for speed; the bytes on the
/// wire must stay those of a plain `Vec<u8>` field, so old and new peers agree.
#[test]
fn chunk_payload_bytes_are_those_of_a_plain_vec() {
    #[derive(serde::Serialize)]
    struct PlainChunkFrame {
        manifest: [u8; 32],
        parts: Vec<ChunkPart>,
        encoded: Vec<u8>,
    }
    let encoded: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let frame = frame1([7; 32], "110101001", 3, 5, encoded.clone());
    let plain = PlainChunkFrame {
        manifest: [7; 32],
        parts: frame.parts.clone(),
        encoded,
    };
    assert_eq!(encode_value(&frame).unwrap(), encode_value(&plain).unwrap());
}

/// A chunk frame written as head + payload is exactly the frame `encode_frame` makes, for
/// payload lengths on each side of every varint width (so the replaced length byte is right).
#[test]
fn chunk_frame_head_plus_payload_is_the_frame() {
    for len in [0usize, 1, 250, 251, 252, 65_535, 65_536, 70_000, 1 << 20] {
        // One part, and (where the payload allows) three parts over it.
        let encoded: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut frames = vec![frame1(
            [9; 32],
            "441900003",
            u64::MAX / 3,
            64,
            encoded.clone(),
        )];
        if len >= 3 {
            frames.push(ChunkFrame {
                manifest: [9; 32],
                parts: vec![
                    part("441900003", 0, 1, 1),
                    part("441900004", 0, 62, len - 2),
                    part("441900005", 7, 1, 1),
                ],
                encoded,
            });
        }
        for frame in frames {
            let mut joined = encode_chunk_frame_head(&frame).unwrap();
            joined.extend_from_slice(&frame.encoded);
            let whole = encode_frame(&Message::Chunk(frame.clone())).unwrap();
            assert_eq!(joined, whole, "payload of {len} bytes");
            assert_eq!(decode_frame(&joined).unwrap(), Message::Chunk(frame));
        }
    }
}

/// The head refuses what `encode_frame` refuses: a payload over the chunk frame limit.
#[test]
fn chunk_frame_head_checks_limits() {
    let frame = frame1(
        [1; 32],
        "110101001",
        0,
        1,
        vec![0; backflow_protocol::wire::CHUNK_FRAME_BYTES_MAX + 1],
    );
    assert!(encode_chunk_frame_head(&frame).is_err());
    assert!(encode_frame(&Message::Chunk(frame)).is_err());
    // Parts whose lengths do not add up to the payload, or over a frame's groups in all.
    for (parts, payload, ok) in [
        (vec![part("110101001", 0, 1, 9)], 10, false),
        (vec![part("110101001", 0, 1, 11)], 10, false),
        (vec![part("110101001", 0, 1, 10)], 10, true),
        (
            vec![part("110101001", 0, 40, 5), part("110101002", 0, 25, 5)],
            10,
            false,
        ),
        (
            vec![part("110101001", 0, 40, 5), part("110101002", 0, 24, 5)],
            10,
            true,
        ),
        (vec![part("110101001", 0, 1, 1); 65], 65, false),
        // Empty runs decode (counted as a group each) and fail verification instead.
        (vec![part("110101001", 0, 0, 1); 2], 2, true),
        (vec![part("110101001", 0, 0, 1); 65], 65, false),
    ] {
        let frame = ChunkFrame {
            manifest: [1; 32],
            parts,
            encoded: vec![0; payload],
        };
        assert_eq!(
            encode_chunk_frame_head(&frame).is_ok(),
            ok,
            "{:?}",
            frame.parts
        );
        assert_eq!(encode_frame(&Message::Chunk(frame)).is_ok(), ok);
    }
}

/// The borrowing decoder finds the payload in place for payloads of every varint width, and
/// refuses control messages, other versions and the frame limits like `decode_frame`.
#[test]
fn chunk_view_borrows_the_payload_in_place() {
    for len in [0usize, 1, 250, 251, 65_536, 1 << 20] {
        let frame = frame1(
            [9; 32],
            "441900003",
            12,
            64,
            (0..len).map(|i| (i % 253) as u8).collect(),
        );
        let bytes = encode_frame(&Message::Chunk(frame.clone())).unwrap();
        let view = decode_chunk_frame(&bytes).unwrap();
        assert_eq!(view.payload.end, bytes.len(), "the payload ends the frame");
        assert_eq!(&bytes[view.payload.clone()], &frame.encoded[..]);
        assert_eq!(view.manifest, frame.manifest);
        assert_eq!(view.parts, vec![part("441900003", 12, 64, len)]);
    }
    for m in sample_messages() {
        let bytes = encode_frame(&m).unwrap();
        assert_eq!(
            decode_chunk_frame(&bytes).is_ok(),
            matches!(m, Message::Chunk(_)),
            "{m:?}"
        );
    }
    let frame = frame1([1; 32], "110101001", 0, 65, vec![1, 2, 3]);
    // Over the groups-per-frame limit: encode the fields by hand, as a hostile peer would.
    let mut bytes = encode_value(&PROTOCOL_VERSION).unwrap();
    bytes.extend(encode_value(&3u32).unwrap()); // variant index of `Message::Chunk`
    bytes.extend(encode_value(&frame).unwrap());
    assert!(matches!(decode_frame(&bytes), Err(WireError::Limit(_))));
    assert!(matches!(
        decode_chunk_frame(&bytes),
        Err(WireError::Limit(_))
    ));
    let mut old = bytes.clone();
    old[0] = 2; // version 2, one varint byte
    assert!(matches!(
        decode_chunk_frame(&old),
        Err(WireError::UnsupportedVersion { got: 2, .. })
    ));
    let mut long = encode_frame(&Message::Chunk(frame1(
        [1; 32],
        "110101001",
        0,
        1,
        vec![1, 2, 3],
    )))
    .unwrap();
    long.push(0);
    assert!(matches!(
        decode_chunk_frame(&long),
        Err(WireError::TrailingBytes { extra: 1 })
    ));
}
