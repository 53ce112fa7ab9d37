//! `decode_chunk_frame` (the data plane's zero-copy decoder: the payload stays where it lies in
//! the buffer) on arbitrary bytes. It must return, never panic; it must agree with
//! `decode_frame` on every input (both accept the same chunk frames, with the same manifest,
//! parts and payload bytes, and it refuses every control message); the parts must tile the
//! payload exactly; and anything it accepts must re-encode — whole with `encode_frame`, and
//! as `encode_chunk_frame_head` ‖ payload, byte for byte the same — and decode to the same
//! frame again.
#![no_main]

use backflow_protocol::chunk::ChunkFrame;
use backflow_protocol::wire::{
    decode_chunk_frame, decode_frame, encode_chunk_frame_head, encode_frame, Message,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let view = match (decode_chunk_frame(data), decode_frame(data)) {
        (Ok(view), Ok(Message::Chunk(frame))) => {
            assert_eq!(view.manifest, frame.manifest);
            assert_eq!(view.parts, frame.parts);
            assert_eq!(&data[view.payload.clone()], &frame.encoded[..]);
            view
        }
        (Ok(_), Ok(other)) => panic!("a control message taken for a chunk frame: {other:?}"),
        (Ok(_), Err(e)) => panic!("decode_frame refuses an accepted chunk frame: {e}"),
        (Err(e), Ok(Message::Chunk(_))) => {
            panic!("decode_frame accepts a refused chunk frame: {e}")
        }
        (Err(_), _) => return,
    };
    // The parts tile the payload: back to back, from its start to its end.
    let mut at = view.payload.start;
    for (_, range) in view.parts_in_buffer() {
        assert_eq!(range.start, at, "parts back to back");
        at = range.end;
    }
    assert_eq!(at, view.payload.end, "parts cover the payload");

    let frame = ChunkFrame {
        manifest: view.manifest,
        parts: view.parts.clone(),
        encoded: data[view.payload.clone()].to_vec(),
    };
    let bytes = encode_frame(&Message::Chunk(frame.clone())).expect("an accepted frame re-encodes");
    let mut split = encode_chunk_frame_head(&frame).expect("and so does its head");
    split.extend_from_slice(&frame.encoded);
    assert_eq!(split, bytes, "head ‖ payload is the whole frame");
    let again = decode_chunk_frame(&bytes).expect("and decodes again");
    assert_eq!(again.manifest, view.manifest);
    assert_eq!(again.parts, view.parts);
    assert_eq!(&bytes[again.payload.clone()], &frame.encoded[..]);
});
