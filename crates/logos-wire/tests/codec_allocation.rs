//! Regression test: a declared length is never trusted for allocation.
//!
//! Owns a counting global allocator (for this test binary only) and one test that runs every
//! case in sequence, so no other test's allocations blur the numbers. Never measures time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use logos_wire::codec::FrameDecoder;
use logos_wire::{decode_message, decode_value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Records the largest single allocation (or reallocation) since the last reset.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers every call to `System`; only records sizes on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Largest allocation made while running `f`.
fn largest_during(f: impl FnOnce()) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    f();
    LARGEST.load(Ordering::Relaxed)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn lying_lengths_allocate_nothing_big() {
    // Error messages and the like stay far below this.
    const SMALL: usize = 4096;
    let bodies = [
        "83 03 01 9b 1000000000000000 00",        // list of 2^60 items
        "83 03 01 9a ffffffff 00 00 00 00 00 00", // list of 2^32-1 items
        "83 03 01 bb 0fffffffffffffff 00",        // map of ~2^60 entries
        "83 03 01 5b 7fffffffffffffff",           // bytes of 2^63-1
        "83 03 01 7a 7fffffff 61",                // text of 2^31-1
        "9b ffffffffffffffff 0f",                 // the message array itself
        "86 00 01 00 60 5a 7fffffff",             // hello.token
        "86 02 01 60 60 9a 7fffffff 00",          // call.args
    ];
    for body in bodies {
        let body = hex(body);
        let mut result = None;
        let largest = largest_during(|| result = Some(decode_message(&body)));
        assert!(result.unwrap().is_err(), "{body:02x?} decoded");
        assert!(largest < SMALL, "{body:02x?}: allocated {largest} bytes");
        let largest = largest_during(|| {
            let _ = decode_value(&body[3..]);
        });
        assert!(
            largest < SMALL,
            "{body:02x?} as a value: allocated {largest} bytes"
        );
    }

    // A list of many items that do exist grows as they decode; its first reservation is capped
    // (1024 slots), not taken from the head.
    let mut many = hex("83 03 01 9a 00010000");
    many.extend(std::iter::repeat_n(0xf6, 0x1_0000));
    let largest = largest_during(|| {
        decode_message(&many).unwrap();
    });
    assert!(largest >= 0x1_0000, "the list really is long ({largest})");

    // A frame prefix at the cap reserves that frame, one above it reserves nothing.
    let dec = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&(1u32 << 30).to_be_bytes());
    let largest = largest_during(|| {
        assert!(dec.decode(&mut buf).is_err());
    });
    assert!(
        largest < SMALL,
        "oversized prefix: allocated {largest} bytes"
    );
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&(1u32 << 20).to_be_bytes());
    let largest = largest_during(|| {
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    });
    assert!(
        largest <= 2 * ((1 << 20) + 4),
        "pending frame: reserved {largest} bytes"
    );
}
