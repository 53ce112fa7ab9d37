//! `decode_frame` on arbitrary bytes: must return, never panic, and anything it accepts must
//! re-encode and decode to the same message.
#![no_main]

use backflow_protocol::wire::{decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode_frame(data) {
        let bytes = encode_frame(&message).expect("an accepted message re-encodes");
        assert_eq!(decode_frame(&bytes).expect("and decodes again"), message);
    }
});
