//! Property tests: no input makes the decoder panic, hang or allocate from a declared length.
//!
//! Owns the adversarial properties: random bytes, random mutations of valid frames, and lying
//! length heads fed to `FrameDecoder` and `decode_message`. Never checks exact bytes (that is
//! tests/vectors.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::BytesMut;
use logos_wire::codec::{FrameDecoder, LEN_PREFIX};
use logos_wire::{WireError, decode_message, decode_value, encode_frame};
use proptest::collection::vec;
use proptest::prelude::*;

/// Feeds `bytes` to a frame decoder and drains it until it waits or fails.
fn drain(dec: &FrameDecoder, bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    for _ in 0..=bytes.len() {
        match dec.decode(&mut buf) {
            Ok(Some(msg)) => {
                // Anything accepted re-encodes and decodes to itself.
                let mut frame = Vec::new();
                encode_frame(&msg, &mut frame).unwrap();
                assert_eq!(decode_message(&frame[LEN_PREFIX..]).unwrap(), msg);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] ^= b | 1;
        }
        Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Mutation::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let _ = decode_message(&bytes);
        let _ = decode_value(&bytes);
        drain(&FrameDecoder::default(), &bytes);
        drain(&FrameDecoder::new(64), &bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_prefix_never_panic(body in vec(any::<u8>(), 1..256)) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let mut buf = BytesMut::from(&frame[..]);
        let r = FrameDecoder::default().decode(&mut buf);
        prop_assert!(!matches!(r, Ok(None)), "a whole frame was not taken");
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn mutated_frames_never_panic(
        msg in support::message(),
        mutations in vec(mutation(), 1..6),
    ) {
        let mut frame = Vec::new();
        encode_frame(&msg, &mut frame).unwrap();
        for m in &mutations {
            apply(&mut frame, m);
        }
        let _ = decode_message(frame.get(LEN_PREFIX..).unwrap_or_default());
        drain(&FrameDecoder::default(), &frame);
    }

    #[test]
    fn oversized_prefixes_are_refused_without_reserving(len in any::<u32>(), cap in 1usize..1 << 20) {
        let dec = FrameDecoder::new(cap);
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        let before = buf.capacity();
        let r = dec.decode(&mut buf);
        let len = len as usize;
        if len == 0 {
            prop_assert_eq!(r, Err(WireError::EmptyFrame));
        } else if len > cap {
            prop_assert_eq!(r, Err(WireError::FrameTooLarge { len, max: cap }));
            prop_assert_eq!(buf.capacity(), before);
        } else {
            prop_assert_eq!(r, Ok(None));
            // Room for this frame at most (the buffer may round its growth up).
            prop_assert!(buf.capacity() <= 2 * (LEN_PREFIX + len).max(before));
        }
    }

    #[test]
    fn lying_length_heads_are_refused(
        major in prop::sample::select(vec![2u8, 3, 4, 5]),
        width in 0u8..4,
        declared in any::<u64>(),
        tail in vec(any::<u8>(), 0..16),
    ) {
        // reply id 1, then a bytes/text/list/map head declaring `declared`, then a short tail.
        let mut body = vec![0x83, 0x03, 0x01, (major << 5) | (24 + width)];
        let n = 1usize << width;
        body.extend_from_slice(&declared.to_be_bytes()[8 - n..]);
        let shown = u64::from_be_bytes({
            let mut b = [0u8; 8];
            b[8 - n..].copy_from_slice(&body[4..4 + n]);
            b
        });
        body.extend_from_slice(&tail);
        let need = match major { 5 => shown.saturating_mul(2), _ => shown };
        let r = decode_message(&body);
        if need > tail.len() as u64 {
            prop_assert!(r.is_err());
        }
    }
}
