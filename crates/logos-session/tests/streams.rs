//! Streams: bulk transfer under credit, half-close, reset, drop, refusal, id parity, fairness
//! with calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_session::{ByteStream, Config, Refuse};
use logos_wire::credit::DEFAULT_WINDOW;
use logos_wire::{Call, ErrorCode, Value};
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// FNV-1a over a byte stream, fed in pieces.
struct Fnv(u64);
impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64).
fn fill(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

async fn next_stream(seen: &mut mpsc::UnboundedReceiver<Seen>) -> (String, ByteStream) {
    next_seen(seen, |s| match s {
        Seen::Stream(p, s) => Some((p, s)),
        _ => None,
    })
    .await
}

async fn streaming_pair() -> (
    logos_session::Session,
    logos_session::Session,
    mpsc::UnboundedReceiver<Seen>,
    mpsc::UnboundedReceiver<Seen>,
) {
    let (pa, seen_a) = Probe::quiet();
    let (pb, seen_b) = Probe::quiet();
    let (alice, bob) = pair(Arc::new(pa), Arc::new(pb)).await;
    (alice, bob, seen_a, seen_b)
}

const TOTAL: usize = 64 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_through_a_slow_reader_arrive_intact_within_the_window() {
    let (alice, _bob, _sa, mut seen_b) = streaming_pair().await;
    let mut out = alice.open_stream("bulk").unwrap();
    let (protocol, mut inbound) = next_stream(&mut seen_b).await;
    assert_eq!(protocol, "bulk");

    // The writer's unacknowledged bytes after each write; `u64::MAX` once it has sent all.
    let (progress, mut watched) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut hash = Fnv::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 7000];
        let mut reads = 0u64;
        loop {
            // Deliberately slow: now and then (first of all before reading anything) stop
            // reading until the writer has used up more than half its window.
            if reads.is_multiple_of(512) {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    watched.wait_for(|u| *u > DEFAULT_WINDOW / 2),
                )
                .await
                .expect("the writer never filled its window")
                .unwrap();
            }
            let n = inbound.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hash.feed(&buf[..n]);
            total += n;
            reads += 1;
        }
        (total, hash.0)
    });

    let mut hash = Fnv::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 100_000];
    let mut sent = 0usize;
    let mut max_unacked = 0u64;
    while sent < TOTAL {
        let len = chunk.len().min(TOTAL - sent);
        fill(&mut rng, &mut chunk[..len]);
        hash.feed(&chunk[..len]);
        let mut pos = 0;
        while pos < len {
            let n = tokio::time::timeout(Duration::from_secs(30), out.write(&chunk[pos..len]))
                .await
                .expect("writer stalled")
                .unwrap();
            assert!(n > 0 && n <= logos_wire::credit::MAX_CHUNK);
            pos += n;
            let unacked = out.unacknowledged();
            assert!(unacked <= DEFAULT_WINDOW, "{unacked} bytes unacknowledged");
            max_unacked = max_unacked.max(unacked);
            progress.send_replace(unacked);
        }
        sent += len;
    }
    progress.send_replace(u64::MAX);
    out.shutdown().await.unwrap();
    let (total, their_hash) = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("reader finished")
        .unwrap();
    assert_eq!(total, TOTAL);
    assert_eq!(their_hash, hash.0);
    // The slow reader really did hold the writer back.
    assert!(
        max_unacked > DEFAULT_WINDOW / 2,
        "max unacknowledged {max_unacked}"
    );
}

#[tokio::test]
async fn half_close_both_ways() {
    let (alice, _bob, _sa, mut seen_b) = streaming_pair().await;
    let mut a = alice.open_stream("echo").unwrap();
    let (_, mut b) = next_stream(&mut seen_b).await;

    a.write_all(b"hello").await.unwrap();
    a.shutdown().await.unwrap();
    let err = a.write(b"more").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);

    let mut got = Vec::new();
    soon("read to eof", b.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"hello");
    // Half-closed: bob can still answer.
    b.write_all(b"world").await.unwrap();
    b.shutdown().await.unwrap();
    let mut got = Vec::new();
    soon("read to eof", a.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"world");
    // EOF stays EOF.
    assert_eq!(a.read(&mut [0u8; 8]).await.unwrap(), 0);
    // Finished both ways: dropping sends no reset (nothing to observe but no error either).
    drop(a);
    drop(b);
    assert_eq!(soon("ping", alice.ping(SOON)).await, Ok(None));
}

async fn expect_reset(stream: &mut ByteStream, code: &str, message: &str) {
    // Data that arrived before the reset may still be read; then the reset shows.
    let err = soon("read error", async {
        loop {
            match stream.read(&mut [0u8; 16]).await {
                Ok(0) => panic!("EOF instead of a reset"),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    let text = err.to_string();
    assert!(text.contains(code) && text.contains(message), "{text}");
    let err = stream.write(b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn reset_by_the_opener_aborts_both_directions() {
    let (alice, _bob, _sa, mut seen_b) = streaming_pair().await;
    let mut a = alice.open_stream("p").unwrap();
    a.write_all(b"partial").await.unwrap();
    let (_, mut b) = next_stream(&mut seen_b).await;
    a.reset(ErrorCode::Cancelled, "user aborted");
    expect_reset(&mut b, "cancelled", "user aborted").await;
}

#[tokio::test]
async fn reset_by_the_acceptor_aborts_both_directions() {
    let (alice, _bob, _sa, mut seen_b) = streaming_pair().await;
    let mut a = alice.open_stream("p").unwrap();
    let (_, b) = next_stream(&mut seen_b).await;
    b.reset(ErrorCode::Limit, "too many bytes");
    expect_reset(&mut a, "limit", "too many bytes").await;
}

#[tokio::test]
async fn dropping_an_unfinished_stream_resets_it() {
    let (alice, _bob, _sa, mut seen_b) = streaming_pair().await;
    let a = alice.open_stream("p").unwrap();
    let (_, mut b) = next_stream(&mut seen_b).await;
    drop(a);
    expect_reset(&mut b, "cancelled", "dropped").await;
}

#[tokio::test]
async fn a_handler_that_takes_no_streams_resets_them() {
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(Refuse)).await;
    let mut a = alice.open_stream("p").unwrap();
    expect_reset(&mut a, "unknown_method", "not accepted").await;
}

#[tokio::test]
async fn stream_ids_are_odd_for_the_connector_and_even_for_the_acceptor() {
    let (alice, bob, mut seen_a, mut seen_b) = streaming_pair().await;
    let a1 = alice.open_stream("x").unwrap();
    let a2 = alice.open_stream("x").unwrap();
    let b1 = bob.open_stream("y").unwrap();
    assert_eq!((a1.id(), a2.id(), b1.id()), (1, 3, 2));
    assert_eq!(a1.protocol(), "x");
    let (_, in_b) = next_stream(&mut seen_b).await;
    let (_, in_a) = next_stream(&mut seen_a).await;
    assert_eq!(in_b.id(), 1);
    assert_eq!(in_a.id(), 2);
}

#[tokio::test]
async fn stream_operations_fail_once_the_connection_closes() {
    let (alice, bob, _sa, mut seen_b) = streaming_pair().await;
    let mut a = alice.open_stream("p").unwrap();
    let (_, _b) = next_stream(&mut seen_b).await;
    bob.close(logos_session::Fault::new(ErrorCode::Unavailable, "gone"));
    let err = soon("read error", a.read(&mut [0u8; 4])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
    assert!(alice.open_stream("again").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_not_starved_by_a_saturated_stream() {
    let (pb, mut seen_b) = Probe::new(|_, call: Call| async move { Ok(Value::from(call.id)) });
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(pb)).await;
    let mut out = alice.open_stream("bulk").unwrap();
    let (_, mut inbound) = next_stream(&mut seen_b).await;
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while let Ok(n) = inbound.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let pump = tokio::spawn(async move {
        let chunk = vec![7u8; 256 * 1024];
        for _ in 0..64 {
            out.write_all(&chunk).await.unwrap();
        }
        out.shutdown().await.unwrap();
        out
    });
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let t = Instant::now();
        soon(
            "call during bulk transfer",
            alice.call("bob", "id", vec![], SOON),
        )
        .await
        .unwrap();
        worst = worst.max(t.elapsed());
    }
    assert!(
        worst < Duration::from_secs(2),
        "slowest call took {worst:?}"
    );
    let _out = soon("pump", pump).await.unwrap();
    assert_eq!(soon("drain", drain).await.unwrap(), 64 * 256 * 1024);
}

#[tokio::test]
async fn a_custom_window_is_respected() {
    let mut config = Config::default();
    config.stream_window = 8 * 1024;
    let (pa, _sa) = Probe::quiet();
    let (pb, mut seen_b) = Probe::quiet();
    let (alice, _bob) = pair_with(Arc::new(pa), Arc::new(pb), config).await;
    let mut a = alice.open_stream("small").unwrap();
    let (_, mut b) = next_stream(&mut seen_b).await;
    let writer = tokio::spawn(async move {
        let data = vec![1u8; 100 * 1024];
        let mut pos = 0;
        while pos < data.len() {
            pos += a.write(&data[pos..]).await.unwrap();
            assert!(a.unacknowledged() <= 8 * 1024);
        }
        a.shutdown().await.unwrap();
        a
    });
    let mut got = Vec::new();
    soon("read all", b.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got.len(), 100 * 1024);
    soon("writer", writer).await.unwrap();
}
