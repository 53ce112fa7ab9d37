//! Storage records read back from disk (`decode_stored`): a corrupted database must yield an
//! error, and restoring a decoded record into a node (`Endpoint::new`, as a shell restarts
//! one) must not panic, nor must its timers and outputs afterwards.
#![no_main]

use std::sync::OnceLock;

use backflow_protocol::cert::{NodeIdentity, TrustStore};
use backflow_protocol::endpoint::{EndpointConfig, Saved, SavedTransfer};
use backflow_protocol::return_flow::{DataRouting, TransferRecord};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::tuning::Tuning;
use backflow_protocol::wire::decode_stored;
use backflow_protocol::{Endpoint, RegionCode};
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

const NOW: UnixMs = UnixMs(1_750_000_000_000);

/// County 110101's identity under the anchor, made once; and the anchor's trust store.
fn node() -> &'static (NodeIdentity, TrustStore) {
    static NODE: OnceLock<(NodeIdentity, TrustStore)> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut id = NodeIdentity::national(SigningKey::from_bytes(&[7; 32]));
        let trust = TrustStore::new(id.key.verifying_key());
        for (n, code) in [(8u8, "11"), (9, "1101"), (10, "110101")] {
            id = id
                .certify_child(
                    &SigningKey::from_bytes(&[n; 32]),
                    Vec::new(),
                    NOW.minus_ms(DAY_MS),
                    NOW.plus_ms(365 * DAY_MS),
                    RegionCode::parse(code).unwrap(),
                    u64::from(n),
                )
                .unwrap();
        }
        (id, trust)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode_stored::<TransferRecord>(data) {
        let (identity, trust) = node();
        let config = EndpointConfig {
            identity: identity.clone(),
            trust: trust.clone(),
            tuning: Tuning::default(),
            routing: DataRouting::tree(),
            catalog_log_id: 1,
        };
        let saved = Saved {
            transfers: vec![SavedTransfer {
                record,
                stored: Vec::new(),
                receipts: Vec::new(),
                attestations: Vec::new(),
            }],
            ..Saved::default()
        };
        let (mut ep, _) = Endpoint::<u8>::new(NOW, config, saved).expect("the node starts");
        ep.handle_timeout(NOW.plus_ms(1_000_000));
        while ep.poll_output().is_some() {}
    }
});
