//! `decode_groups` (bao chunk-group verification) on arbitrary encodings, against both a real
//! partition entry and entries with fuzzed sizes and group ranges.
#![no_main]

use backflow_protocol::manifest::{decode_groups, PartitionEntry, Schema, CHUNK_GROUP_BYTES};
use backflow_protocol::RegionCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let (head, encoded) = data.split_at(17);
    let bytes = u64::from_le_bytes(head[0..8].try_into().unwrap()) % (64 * CHUNK_GROUP_BYTES);
    let first = u64::from(head[8]) % 80;
    let count = u64::from(head[9]) % 40;
    let region = RegionCode::parse("110101001").unwrap();
    let schema = Schema {
        name: "s".into(),
        fields: vec![],
        header: Vec::new(),
    };
    // A real entry: content derived from the header, so valid encodings are reachable.
    let content = vec![head[10]; bytes as usize];
    let real = PartitionEntry::for_content(region, &content, 1, &schema);
    let _ = decode_groups(&real, first..first.saturating_add(count), encoded);
    // An entry whose hash is arbitrary.
    let mut fake = real;
    fake.content_hash = *blake3::hash(head).as_bytes();
    let _ = decode_groups(&fake, first..first.saturating_add(count), encoded);
});
