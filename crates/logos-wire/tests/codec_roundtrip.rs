//! Property tests: whatever the codec encodes, it decodes back to an equal message or value,
//! through frames split at any points; the JSON and serde mappings round-trip too.
//!
//! Owns the round-trip properties only; byte-exact expectations live in tests/vectors.rs and
//! refusals in tests/codec_robustness.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::BytesMut;
use logos_wire::codec::{FrameDecoder, LEN_PREFIX};
use logos_wire::{
    Message, Value, decode_message, decode_value, encode_frame, encode_frame_into, encode_message,
    encode_value, from_value, to_value,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Drops what JSON cannot carry: non-finite floats, and maps that look like `{"$bytes": …}`.
fn json_safe(v: &Value) -> bool {
    match v {
        Value::Float(x) => x.is_finite(),
        Value::List(items) => items.iter().all(json_safe),
        Value::Map(m) => !m.contains_key("$bytes") && m.values().all(json_safe),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn messages_round_trip(msg in support::message()) {
        let mut body = Vec::new();
        encode_message(&msg, &mut body).unwrap();
        prop_assert_eq!(decode_message(&body).unwrap(), msg.clone());

        let mut frame = Vec::new();
        let n = encode_frame(&msg, &mut frame).unwrap();
        prop_assert_eq!(n, body.len());
        prop_assert_eq!(&frame[LEN_PREFIX..], &body[..]);
        let mut buf = BytesMut::from(&frame[..]);
        prop_assert_eq!(FrameDecoder::default().decode(&mut buf).unwrap(), Some(msg));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encoding_is_deterministic(msg in support::message()) {
        let mut a = Vec::new();
        let mut b = BytesMut::new();
        encode_frame(&msg, &mut a).unwrap();
        encode_frame_into(&msg, &mut b).unwrap();
        prop_assert_eq!(&a[..], &b[..]);
        // Decoding and re-encoding reproduces the bytes: one encoding per message.
        let again = decode_message(&a[LEN_PREFIX..]).unwrap();
        let mut c = Vec::new();
        encode_frame(&again, &mut c).unwrap();
        prop_assert_eq!(a, c);
    }

    #[test]
    fn values_round_trip(v in support::value()) {
        let mut bytes = Vec::new();
        encode_value(&v, &mut bytes).unwrap();
        let back = decode_value(&bytes).unwrap();
        // Integers come back normalised: UInt only above i64::MAX.
        fn normalised(v: &Value) -> bool {
            match v {
                Value::UInt(u) => *u > i64::MAX as u64,
                Value::List(items) => items.iter().all(normalised),
                Value::Map(m) => m.values().all(normalised),
                _ => true,
            }
        }
        prop_assert!(normalised(&back), "{:?}", back);
        prop_assert_eq!(back, v);
    }

    #[test]
    fn a_stream_of_frames_splits_anywhere(
        msgs in vec(support::message(), 1..6),
        cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut stream).unwrap();
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let dec = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in points {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn json_round_trips_what_it_can_carry(v in support::value().prop_filter("json-safe", json_safe)) {
        // On JSON values, not JSON text: without its `float_roundtrip` feature serde_json may
        // parse a float's shortest text one ulp off, which is serde_json's business, not ours.
        prop_assert_eq!(Value::from_json(v.to_json()), v);
    }

    #[test]
    fn serde_is_the_identity_on_values(v in support::value()) {
        prop_assert_eq!(to_value(&v).unwrap(), v.clone());
        prop_assert_eq!(from_value::<Value>(v.clone()).unwrap(), v.clone());
        let wrapped: Vec<Option<Value>> = from_value(Value::List(vec![v.clone(), Value::Null])).unwrap();
        prop_assert_eq!(wrapped, vec![if v.is_null() { None } else { Some(v) }, None]);
    }
}

#[test]
fn message_kinds_are_all_generated() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = [false; 18];
    for _ in 0..2000 {
        let m: Message = support::message().new_tree(&mut runner).unwrap().current();
        seen[usize::from(m.kind())] = true;
    }
    assert!(seen.iter().all(|s| *s), "{seen:?}");
}
