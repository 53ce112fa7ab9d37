//! Storage records read back from disk (`decode_stored`): a corrupted database must yield an
//! error, and restoring a decoded record into a state machine must not panic.
#![no_main]

use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::return_flow::{ReturnFlow, ReturnFlowConfig, TransferRecord};
use backflow_protocol::time::UnixMs;
use backflow_protocol::wire::decode_stored;
use backflow_protocol::RegionCode;
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode_stored::<TransferRecord>(data) {
        let mut identity = NodeIdentity::national(SigningKey::from_bytes(&[7; 32]));
        identity.region = RegionCode::parse("110101").unwrap();
        let mut rf = ReturnFlow::new(ReturnFlowConfig::new(identity));
        let _ = rf.restore(UnixMs(1), record, &[]);
        rf.handle_tick(UnixMs(1_000_000));
        while rf.poll_output().is_some() {}
    }
});
