//! Events: order, bounded publisher queue under a flood, `lagged` notices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_session::{Config, Fault, Refuse};
use logos_wire::{ErrorCode, Value};
use std::sync::{Arc, Mutex};
use support::*;

#[tokio::test]
async fn events_arrive_in_order() {
    let (probe, mut seen) = Probe::quiet();
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(probe)).await;
    for i in 0..500i64 {
        assert!(alice.send_event("chat", "message", vec![Value::from(i)]));
    }
    for i in 0..500i64 {
        let (source, event, data) = next_seen(&mut seen, |s| match s {
            Seen::Event(a, b, c) => Some((a, b, c)),
            _ => None,
        })
        .await;
        assert_eq!((source.as_str(), event.as_str()), ("chat", "message"));
        assert_eq!(data, vec![Value::from(i)]);
    }
}

#[tokio::test]
async fn send_event_on_a_closed_session_returns_false() {
    let (alice, bob) = pair(Arc::new(Refuse), Arc::new(Refuse)).await;
    bob.close(Fault::new(ErrorCode::Unavailable, "bye"));
    soon("closed", alice.closed()).await;
    assert!(!alice.send_event("chat", "message", vec![]));
    assert_eq!(alice.queued_bytes(), 0);
}

const QUEUE: usize = 64;
const FLOOD: i64 = 20_000;
const PAYLOAD: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_to_a_stalled_subscriber_stays_bounded_then_reports_lagged_in_order() {
    // Bob's reader stalls inside its first event until released, so nothing Alice sends is
    // read: her socket buffer fills and her queue must stop growing.
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate_rx));
    let (mut probe, mut seen) = Probe::quiet();
    probe.on_event = Some(Box::new(move |_, _| {
        let rx = gate.lock().unwrap().take();
        if let Some(rx) = rx {
            tokio::task::block_in_place(|| {
                let _ = rx.recv();
            });
        }
    }));
    let mut config = Config::default();
    config.event_queue = QUEUE;
    let (alice, _bob) = pair_with(Arc::new(Refuse), Arc::new(probe), config).await;

    let payload = Value::Bytes(vec![0xab; PAYLOAD].into());
    let mut dropped = 0u64;
    let mut max_bytes = 0;
    for i in 0..FLOOD {
        if !alice.send_event("feed", "tick", vec![Value::from(i), payload.clone()]) {
            dropped += 1;
        }
        assert!(
            alice.queued_events() <= QUEUE,
            "{} events queued",
            alice.queued_events()
        );
        max_bytes = max_bytes.max(alice.queued_bytes());
    }
    // Each queued event is ~1 KiB; allow its framing and one lagged notice.
    assert!(
        max_bytes <= QUEUE * (PAYLOAD + 64) + 256,
        "{max_bytes} bytes queued"
    );
    assert!(dropped > 0, "the flood must overflow the queue");

    gate_tx.send(()).unwrap();
    soon("alice's queue to drain", alice.flush()).await;
    // The next event that fits carries the lagged notice ahead of it.
    assert!(alice.send_event("feed", "tick", vec![Value::from(FLOOD), payload.clone()]));

    let mut delivered = 0u64;
    let mut reported = 0u64;
    let mut last = -1i64;
    let mut lagged_since_last = false;
    while last != FLOOD {
        let s = next_seen(&mut seen, |s| match s {
            Seen::Event(_, _, d) => Some(Ok(d[0].as_i64().unwrap())),
            Seen::Lagged(source, n) => Some(Err((source, n))),
            _ => None,
        })
        .await;
        match s {
            Ok(i) => {
                assert!(i > last, "event {i} after {last}");
                if i > last + 1 {
                    assert!(lagged_since_last, "gap {last}..{i} without a lagged notice");
                }
                last = i;
                lagged_since_last = false;
                delivered += 1;
            }
            Err((source, n)) => {
                assert_eq!(source, "feed");
                reported += n;
                lagged_since_last = true;
            }
        }
    }
    assert_eq!(reported, dropped);
    assert_eq!(delivered + dropped, FLOOD as u64 + 1);
}
