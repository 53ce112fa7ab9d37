//! Decoded frames fed into both state machines as if from a descendant and from the parent:
//! hostile but well-formed messages must never panic a node.
#![no_main]

use backflow_protocol::catalog_sync::{CatalogSync, CatalogSyncConfig};
use backflow_protocol::cert::{NodeIdentity, TrustStore};
use backflow_protocol::return_flow::{ReturnFlow, ReturnFlowConfig};
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::{decode_frame, Message};
use backflow_protocol::RegionCode;
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode_frame(data) else {
        return;
    };
    let now = UnixMs(1_750_000_000_000);
    let root = SigningKey::from_bytes(&[1; 32]);
    let mut trust = TrustStore::new(root.verifying_key());
    let me = RegionCode::parse("1101").unwrap();
    let mut identity = NodeIdentity::national(SigningKey::from_bytes(&[2; 32]));
    identity.region = me;
    let mut rf = ReturnFlow::new(ReturnFlowConfig::new(identity));
    let mut sync = CatalogSync::new(now, CatalogSyncConfig::new(me, 1));
    for from in ["11", "110101", "110101001", "12"] {
        let from = RegionCode::parse(from).unwrap();
        match message.clone() {
            Message::ReturnFlow(m) => rf.handle_message(now, &mut trust, from, m),
            Message::Catalog(m) => sync.handle_message(now, &mut trust, from, m),
            Message::Chunk(f) => {
                for (p, _) in f.parts_with_payload() {
                    let _ = rf.expected_partition(&f.manifest, p.region);
                    rf.handle_group_rejected(now, from, &f.manifest, p.region, p.first_group);
                    rf.handle_groups_stored(now, from, &f.manifest, &[(p.region, p.groups())]);
                }
            }
            Message::Hello(h) => {
                let _ = trust.verify_chain(&h.chain, now);
            }
        }
    }
    rf.handle_tick(now.plus_ms(3_600_000));
    sync.handle_tick(now.plus_ms(3_600_000));
    while rf.poll_output().is_some() {}
    while sync.poll_output().is_some() {}
});
