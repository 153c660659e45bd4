//! Proptest strategies for values and messages, shared by the codec property tests.
//!
//! Owns only generators: every value and message shape the codec must carry, within the limits
//! it enforces (nesting depth, chunk size). Never asserts anything itself.

#![allow(dead_code)]

use bytes::Bytes;
use logos_wire::credit::MAX_CHUNK;
use logos_wire::{Attrs, Call, ErrorCode, Hello, Message, Value, Welcome};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

/// Any float, NaN payloads and signed zeros included (Value compares floats bitwise).
pub fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        any::<f64>(),
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
    ]
}

/// Integers with the edges well represented.
pub fn int() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::from),
        (i64::MAX as u64..=u64::MAX).prop_map(Value::UInt),
        prop::sample::select(vec![
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            23,
            24,
            255,
            256,
            65535,
            65536,
            i64::MAX
        ])
        .prop_map(Value::Int),
    ]
}

pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        int(),
        float().prop_map(Value::Float),
        any::<String>().prop_map(Value::Text),
        vec(any::<u8>(), 0..40).prop_map(Value::from),
    ]
}

/// Values nested a few levels deep.
pub fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::List),
            btree_map(any::<String>(), inner, 0..6).prop_map(Value::Map),
        ]
    })
}

pub fn attrs() -> impl Strategy<Value = Attrs> {
    btree_map("[a-z]{0,8}", value(), 0..4)
}

pub fn code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

pub fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Every message kind with arbitrary fields.
pub fn message() -> impl Strategy<Value = Message> {
    let text = any::<String>;
    prop_oneof![
        (any::<u16>(), any::<u16>(), text(), bytes(40), attrs()).prop_map(
            |(major, minor, identity, token, attrs)| Message::Hello(Hello {
                major,
                minor,
                identity,
                token,
                attrs,
            })
        ),
        (any::<u16>(), any::<u16>(), text(), attrs()).prop_map(
            |(major, minor, identity, attrs)| Message::Welcome(Welcome {
                major,
                minor,
                identity,
                attrs,
            })
        ),
        (
            any::<u64>(),
            text(),
            text(),
            vec(value(), 0..4),
            any::<u64>(),
            proptest::option::of((any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>()))
        )
            .prop_map(
                |(id, target, method, args, timeout_ms, trace)| Message::Call(Call {
                    id,
                    target,
                    method,
                    args,
                    timeout_ms,
                    // All-zero ids are refused on decode (W3C); make them non-zero.
                    trace: trace.map(|(mut trace_id, mut span_id, flags)| {
                        trace_id[0] |= 1;
                        span_id[0] |= 1;
                        logos_wire::TraceContext {
                            trace_id,
                            span_id,
                            flags,
                        }
                    }),
                })
            ),
        (any::<u64>(), value()).prop_map(|(id, value)| Message::Reply { id, value }),
        (any::<u64>(), code(), text()).prop_map(|(id, code, message)| Message::Error {
            id,
            code,
            message
        }),
        any::<u64>().prop_map(|id| Message::Cancel { id }),
        (text(), text()).prop_map(|(source, event)| Message::Subscribe { source, event }),
        (text(), text()).prop_map(|(source, event)| Message::Unsubscribe { source, event }),
        (text(), text(), vec(value(), 0..4)).prop_map(|(source, event, data)| Message::Event {
            source,
            event,
            data
        }),
        (text(), any::<u64>()).prop_map(|(source, dropped)| Message::Lagged { source, dropped }),
        (any::<u64>(), text())
            .prop_map(|(stream, protocol)| Message::StreamOpen { stream, protocol }),
        (any::<u64>(), bytes(300)).prop_map(|(stream, data)| Message::StreamData { stream, data }),
        (any::<u64>(), Just(MAX_CHUNK)).prop_map(|(stream, n)| Message::StreamData {
            stream,
            data: Bytes::from(vec![0xab; n]),
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(stream, bytes)| Message::StreamCredit { stream, bytes }),
        any::<u64>().prop_map(|stream| Message::StreamFin { stream }),
        (any::<u64>(), code(), text()).prop_map(|(stream, code, message)| {
            Message::StreamReset {
                stream,
                code,
                message,
            }
        }),
        any::<u64>().prop_map(|nonce| Message::Ping { nonce }),
        (any::<u64>(), proptest::option::of(text()))
            .prop_map(|(nonce, unhealthy)| Message::Pong { nonce, unhealthy }),
        any::<u64>().prop_map(|grace_ms| Message::Shutdown { grace_ms }),
    ]
}
