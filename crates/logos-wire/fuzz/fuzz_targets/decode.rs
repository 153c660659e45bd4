//! Fuzz target `decode`: arbitrary bytes into `FrameDecoder` (as one stream, and in two
//! chunks split where the first byte says) and into `decode_message`/`decode_value`.
//!
//! Owns only the harness. Properties: nothing panics, and whatever decodes re-encodes to a
//! frame that decodes to the same message. It never reads or writes files.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use logos_wire::codec::{FrameDecoder, LEN_PREFIX};
use logos_wire::{decode_message, decode_value, encode_frame};

fuzz_target!(|data: &[u8]| {
    let _ = decode_message(data);
    let _ = decode_value(data);

    // Small cap so that lengths above it are exercised too.
    let dec = FrameDecoder::new(1 << 16);
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut buf = BytesMut::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(msg)) => {
                    // A decoded message is within every limit, so it always encodes.
                    let mut frame = Vec::new();
                    let encoded = encode_frame(&msg, &mut frame);
                    assert!(encoded.is_ok(), "decoded {msg:?} but cannot encode it: {encoded:?}");
                    assert_eq!(decode_message(&frame[LEN_PREFIX..]).ok(), Some(msg));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
