//! Shared frames (docs/protocol.md §2.1): large calls and replies between two sessions on one
//! machine go through a ring of shared memory, intact and counted; a ring made by hand by the
//! protocol's rules is read and its space handed back; a side that does not announce them gets
//! every frame on the socket; and a peer that abuses them (a prefix without a ring, a ring that
//! could shrink or has a bad size, a body too big for it or that does not decode, a descriptor
//! that is not a memfd, descriptors piling up ahead of their frames) is cut off with
//! `protocol_error` naming what was wrong; a descriptor beyond the one a peer may send is
//! closed, not kept. Real Unix sockets and real memfds; nothing sleeps
//! to synchronise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use logos_session::{ByteStream, Config, Session};
use logos_wire::{Call, ErrorCode, Message, SHARED_ATTR, SHARED_LAPS_ATTR, Value, shared_prefix};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const MIB: usize = 1024 * 1024;

/// Shared frames on from the default 64 KiB, whatever `LOGOS_SHM` says in the environment.
fn on() -> Config {
    let mut config = Config::default();
    config.shared_min = Some(logos_session::DEFAULT_SHARED_MIN);
    config
}

/// A 1 MiB pattern no two offsets of which (within 251 bytes) look alike.
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn echo() -> Arc<Probe> {
    let (probe, _seen) = Probe::new(|_, call: Call| async move {
        Ok(call.args.into_iter().next().unwrap_or(Value::Null))
    });
    Arc::new(probe)
}

async fn call_echo(alice: &Session, value: Value) -> Value {
    soon(
        "the echo",
        alice.call("bob", "echo", vec![value], Duration::from_secs(10)),
    )
    .await
    .expect("echo")
}

#[tokio::test]
async fn large_calls_and_replies_travel_in_shared_memory_intact() {
    let (alice, bob) = pair_with(echo(), echo(), on()).await;
    assert_eq!(
        alice.peer().attrs.get(SHARED_ATTR),
        Some(&Value::Bool(true)),
        "bob announced shared frames"
    );
    let big = pattern(MIB);
    for round in 1..=3u64 {
        let back = call_echo(&alice, Value::Bytes(big.clone())).await;
        assert_eq!(back, Value::Bytes(big.clone()), "round {round}");
        assert_eq!(
            alice.shared_frames(),
            (round, round),
            "alice: call out, reply in"
        );
        assert_eq!(
            bob.shared_frames(),
            (round, round),
            "bob: call in, reply out"
        );
    }
    // Below the threshold: on the socket as before.
    let small = pattern(16 * 1024);
    let back = call_echo(&alice, Value::Bytes(small.clone())).await;
    assert_eq!(back, Value::Bytes(small));
    assert_eq!(alice.shared_frames(), (3, 3));
    // Many big calls at once: in order, each answered with its own bytes.
    let calls = (0..20u8).map(|i| {
        let mut v = big.to_vec();
        v[0] = i;
        let alice = alice.clone();
        async move {
            let back = call_echo(&alice, Value::Bytes(v.clone().into())).await;
            assert_eq!(back, Value::Bytes(v.into()), "call {i}");
        }
    });
    futures::future::join_all(calls).await;
}

#[tokio::test]
async fn a_side_that_does_not_announce_them_gets_every_frame_on_the_socket() {
    let mut off = on();
    off.shared_min = None;
    let (alice, bob) = {
        // alice announces (default config), bob does not.
        let (sa, sb) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let pending = logos_session::read_hello(sb, off).await.unwrap();
            assert_eq!(
                pending.hello.attrs.get(SHARED_ATTR),
                Some(&Value::Bool(true)),
                "alice announced"
            );
            pending
                .accept("alice".into(), welcome("bob"), echo())
                .await
                .unwrap()
        });
        let (alice, w) = logos_session::connect(sa, hello("alice"), echo(), on())
            .await
            .unwrap();
        assert_eq!(w.attrs.get(SHARED_ATTR), None, "bob did not announce");
        (alice, soon("accept", server).await.unwrap())
    };
    let big = pattern(2 * MIB);
    let back = call_echo(&alice, Value::Bytes(big.clone())).await;
    assert_eq!(back, Value::Bytes(big));
    assert_eq!(alice.shared_frames(), (0, 0));
    assert_eq!(bob.shared_frames(), (0, 0));
}

/// Sends `bytes` with `fds` attached, as a hostile peer would.
fn send_with_fds(sock: &tokio::net::UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(32))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .expect("sendmsg");
    assert_eq!(n, bytes.len());
}

/// The nonce of the next `pong` the raw peer gets.
async fn next_pong(raw: &mut RawPeer) -> u64 {
    raw.recv_until(|m| match m {
        Message::Pong { nonce, .. } => Some(nonce),
        _ => None,
    })
    .await
}

/// A memfd holding `content`, with `seals`.
fn memfd(content: &[u8], seals: SealFlags) -> OwnedFd {
    let fd = rustix::fs::memfd_create(c"test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd");
    rustix::io::write(&fd, content).expect("write");
    rustix::fs::fcntl_add_seals(&fd, seals).expect("seals");
    fd
}

const SEALED: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

async fn expect_protocol_error(raw: &mut RawPeer, needle: &str) {
    let (code, message) = raw
        .closing_error()
        .await
        .expect("an error frame before EOF");
    assert_eq!(code, ErrorCode::ProtocolError, "{message}");
    assert!(message.contains(needle), "{message}");
}

async fn raw() -> RawPeer {
    let (probe, _seen) = Probe::quiet();
    let (raw, session) = raw_client(Arc::new(probe), on()).await;
    // The session lives as long as its tasks; the raw peer watches it close.
    drop(session);
    raw
}

/// A ring file as a peer would make one: `HEADER` + `cap` bytes, with `seals`.
fn ring(cap: usize, seals: SealFlags) -> OwnedFd {
    let fd = rustix::fs::memfd_create(c"ring", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd");
    rustix::fs::ftruncate(&fd, (HEADER + cap) as u64).expect("size");
    rustix::fs::fcntl_add_seals(&fd, seals).expect("seals");
    fd
}

const HEADER: usize = 4096;

/// The receiver's `consumed` counter in a ring's header.
fn consumed(ring: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    rustix::io::pread(ring, &mut b, 0).expect("pread");
    u64::from_ne_bytes(b)
}

#[tokio::test]
async fn a_ring_made_by_another_implementation_is_read_and_handed_back() {
    let mut raw = raw().await;
    let r = ring(64 * 1024, SealFlags::SHRINK | SealFlags::GROW);
    // Two pings placed by the rule of docs/protocol.md §2.1: one after the other.
    let mut bodies = Vec::new();
    for nonce in [41u64, 42] {
        let mut f = Vec::new();
        logos_wire::encode_frame(&Message::Ping { nonce }, &mut f).unwrap();
        bodies.push(f.split_off(4));
    }
    rustix::io::pwrite(&r, &bodies[0], HEADER as u64).expect("write");
    rustix::io::pwrite(&r, &bodies[1], (HEADER + bodies[0].len()) as u64).expect("write");
    let mut prefixes = shared_prefix(bodies[0].len()).unwrap().to_vec();
    prefixes.extend_from_slice(&shared_prefix(bodies[1].len()).unwrap());
    send_with_fds(&raw.sock, &prefixes, &[r.as_fd()]);
    for nonce in [41u64, 42] {
        let got = next_pong(&mut raw).await;
        assert_eq!(got, nonce);
    }
    assert_eq!(consumed(&r), (bodies[0].len() + bodies[1].len()) as u64);
}

/// Where a body of `len` bytes after `head` starts, by docs/protocol.md §2.1, written out
/// again here from the text: with short laps a body stays within the first `8 × len` bytes
/// of the ring.
fn place(head: u64, len: usize, cap: usize, short: bool) -> u64 {
    let (len, cap) = (len as u64, cap as u64);
    let lap_end = if short { (8 * len).min(cap) } else { cap };
    let at = head % cap;
    if at + len > lap_end {
        head + (cap - at)
    } else {
        head
    }
}

/// Ten pings sent as shared frames by a raw peer that places them by `short` laps (or the
/// whole ring) in a 64 KiB ring: the ninth is where the two rules differ (the ring's start,
/// or right after the eighth). Returns the nonces of the pongs and the final `consumed`.
async fn pings_through_a_hand_made_ring(short: bool) -> (Vec<u64>, u64, u64) {
    let mut attrs = vec![(SHARED_ATTR, Value::Bool(true))];
    if short {
        attrs.push((SHARED_LAPS_ATTR, Value::Bool(true)));
    }
    let (probe, _seen) = Probe::quiet();
    let (mut raw, _session) = raw_client_with(Arc::new(probe), on(), &attrs).await;
    let cap = 64 * 1024;
    let r = ring(cap, SealFlags::SHRINK | SealFlags::GROW);
    let mut head = 0u64;
    let mut pongs = Vec::new();
    let mut first = true;
    for nonce in 40u64..50 {
        let mut f = Vec::new();
        logos_wire::encode_frame(&Message::Ping { nonce }, &mut f).unwrap();
        let body = f.split_off(4);
        let start = place(head, body.len(), cap, short);
        // A body may go only where the one before it there was handed back.
        assert!(start + body.len() as u64 - consumed(&r) <= cap as u64);
        rustix::io::pwrite(&r, &body, HEADER as u64 + start % cap as u64).expect("write");
        head = start + body.len() as u64;
        let prefix = shared_prefix(body.len()).unwrap();
        if std::mem::take(&mut first) {
            send_with_fds(&raw.sock, &prefix, &[r.as_fd()]);
        } else {
            raw.send_bytes(&prefix).await;
        }
        pongs.push(next_pong(&mut raw).await);
    }
    (pongs, consumed(&r), head)
}

#[tokio::test]
async fn a_peer_that_announces_short_laps_is_read_by_them_and_one_that_does_not_by_the_whole_ring()
{
    for short in [true, false] {
        let (pongs, consumed, head) = pings_through_a_hand_made_ring(short).await;
        assert_eq!(pongs, (40..50).collect::<Vec<_>>(), "short laps: {short}");
        assert_eq!(consumed, head, "short laps: {short}: all handed back");
        // With short laps the ninth and tenth went to the second lap.
        assert_eq!(head > 64 * 1024, short, "head {head}");
    }
}

#[tokio::test]
async fn replies_to_a_peer_are_placed_by_the_laps_it_announced() {
    for short in [true, false] {
        let mut attrs = vec![(SHARED_ATTR, Value::Bool(true))];
        if short {
            attrs.push((SHARED_LAPS_ATTR, Value::Bool(true)));
        }
        let (mut raw, session) = raw_client_with(echo(), on(), &attrs).await;
        let mut fds = Vec::new();
        let mut ring: Option<(OwnedFd, usize)> = None;
        let mut head = 0u64;
        // Twelve 70 KB echoes: their replies go shared, and the ninth is where the rules
        // differ (a short lap holds eight).
        for id in 1..=12u64 {
            let mut arg = pattern(70_000).to_vec();
            arg[0] = id as u8;
            raw.send(&Message::Call(Call {
                id,
                target: "session".into(),
                method: "echo".into(),
                args: vec![Value::Bytes(arg.clone().into())],
                timeout_ms: 10_000,
                trace: None,
            }))
            .await;
            let len = match raw.recv_frame(&mut fds).await.expect("a reply") {
                logos_wire::Frame::Shared { len } => len,
                logos_wire::Frame::Message(m) => panic!("reply {id} on the socket: {m:?}"),
            };
            let (fd, cap) = ring.get_or_insert_with(|| {
                let fd = fds
                    .pop()
                    .expect("the ring came with the first shared frame");
                let size = rustix::fs::fstat(&fd).expect("fstat").st_size as usize;
                (fd, size - HEADER)
            });
            let start = place(head, len, *cap, short);
            let mut body = vec![0u8; len];
            rustix::io::pread(&*fd, &mut body, HEADER as u64 + start % *cap as u64)
                .expect("read the body");
            match logos_wire::decode_body(&body.into()) {
                Ok(Message::Reply { id: got, value }) => {
                    assert_eq!(got, id, "short laps: {short}");
                    assert_eq!(value, Value::Bytes(arg.into()), "short laps: {short}");
                }
                other => panic!("short laps: {short}: reply {id} read {other:?}"),
            }
            head = start + len as u64;
            rustix::io::pwrite(&*fd, &head.to_ne_bytes(), 0).expect("hand it back");
        }
        assert_eq!(session.shared_frames().0, 12, "short laps: {short}");
    }
}

#[tokio::test]
async fn a_prefix_without_its_ring_closes_the_connection() {
    let mut raw = raw().await;
    raw.send_bytes(&shared_prefix(300).unwrap()).await;
    expect_protocol_error(&mut raw, "came without the ring it is in").await;
}

#[tokio::test]
async fn a_ring_that_could_shrink_closes_the_connection() {
    let mut raw = raw().await;
    let r = ring(64 * 1024, SealFlags::GROW);
    send_with_fds(&raw.sock, &shared_prefix(10).unwrap(), &[r.as_fd()]);
    expect_protocol_error(&mut raw, "not sealed against shrinking").await;
}

#[tokio::test]
async fn a_ring_of_a_bad_size_a_body_too_big_for_it_or_one_that_does_not_decode_closes_it() {
    let mut raw = raw().await;
    let small = memfd(b"12345", SEALED);
    send_with_fds(&raw.sock, &shared_prefix(5).unwrap(), &[small.as_fd()]);
    expect_protocol_error(&mut raw, "holds 5 bytes").await;

    let mut raw = self::raw().await;
    let r = ring(64 * 1024, SealFlags::SHRINK);
    send_with_fds(&raw.sock, &shared_prefix(100_000).unwrap(), &[r.as_fd()]);
    expect_protocol_error(&mut raw, "does not fit the ring").await;

    let mut raw = self::raw().await;
    let r = ring(64 * 1024, SealFlags::SHRINK);
    rustix::io::pwrite(&r, &[0xff; 64], HEADER as u64).expect("write");
    send_with_fds(&raw.sock, &shared_prefix(64).unwrap(), &[r.as_fd()]);
    let (code, message) = raw.closing_error().await.expect("an error frame");
    assert_eq!(code, ErrorCode::ProtocolError, "{message}");
}

/// Sends a ping with `fd` attached, closes `fd`, and waits for the pong.
async fn ping_carrying(raw: &mut RawPeer, nonce: u64, fd: OwnedFd) {
    let mut f = Vec::new();
    logos_wire::encode_frame(&Message::Ping { nonce }, &mut f).unwrap();
    send_with_fds(&raw.sock, &f, &[fd.as_fd()]);
    drop(fd);
    let got = next_pong(raw).await;
    assert_eq!(got, nonce);
}

/// Whether the pipe `read_end` reports its last writer gone within `SOON`.
async fn hung_up(read_end: OwnedFd) -> bool {
    tokio::task::spawn_blocking(move || {
        let mut fds = [rustix::event::PollFd::new(
            &read_end,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: SOON.as_secs() as i64,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&timeout)).expect("poll") == 1
            && fds[0].revents().contains(rustix::event::PollFlags::HUP)
    })
    .await
    .unwrap()
}

/// A peer sends one descriptor, its ring's (or none, when it was not offered shared frames).
/// One it sends beyond that is closed as its bytes are read, not kept for a frame that will
/// never claim it: the pipe's write end it carried is gone, and the connection still works.
#[tokio::test]
async fn a_descriptor_beyond_the_ring_is_closed_when_it_is_read_not_kept() {
    for offered in [true, false] {
        let config = if offered {
            on()
        } else {
            let mut config = Config::default();
            config.shared_min = None;
            config
        };
        let (probe, _seen) = Probe::quiet();
        let (mut raw, _session) =
            raw_client_with(Arc::new(probe), config, &[(SHARED_ATTR, Value::Bool(true))]).await;
        if offered {
            // The ring, with a ping in it.
            let r = ring(64 * 1024, SealFlags::SHRINK | SealFlags::GROW);
            let mut f = Vec::new();
            logos_wire::encode_frame(&Message::Ping { nonce: 1 }, &mut f).unwrap();
            let body = f.split_off(4);
            rustix::io::pwrite(&r, &body, HEADER as u64).expect("write");
            send_with_fds(&raw.sock, &shared_prefix(body.len()).unwrap(), &[r.as_fd()]);
            let got = next_pong(&mut raw).await;
            assert_eq!(got, 1);
        }
        let (read_end, write_end) = rustix::pipe::pipe().expect("pipe");
        ping_carrying(&mut raw, 2, write_end).await;
        assert!(
            hung_up(read_end).await,
            "offered shared frames: {offered}: the extra descriptor is still open"
        );
        ping_carrying(&mut raw, 3, memfd(b"x", SEALED)).await;
    }
}

#[tokio::test]
async fn a_descriptor_that_is_not_a_memfd_closes_the_connection() {
    let mut raw = raw().await;
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    send_with_fds(&raw.sock, &shared_prefix(10).unwrap(), &[a.as_fd()]);
    expect_protocol_error(&mut raw, "not a memfd").await;
}

#[tokio::test]
async fn descriptors_piling_up_ahead_of_their_frames_close_the_connection() {
    let mut raw = raw().await;
    let fd = memfd(b"unused", SEALED);
    let many: Vec<BorrowedFd<'_>> = (0..16).map(|_| fd.as_fd()).collect();
    // Each write carries 16 descriptors and one byte of a ping frame that never completes.
    let ping = {
        let mut f = Vec::new();
        logos_wire::encode_frame(&Message::Ping { nonce: 1 }, &mut f).unwrap();
        f
    };
    for byte in &ping[..ping.len() - 1] {
        send_with_fds(&raw.sock, std::slice::from_ref(byte), &many);
    }
    expect_protocol_error(&mut raw, "descriptors ahead of their frames").await;
}

#[tokio::test]
async fn more_descriptors_in_one_write_than_allowed_close_the_connection() {
    let mut raw = raw().await;
    let fd = memfd(b"unused", SEALED);
    let many: Vec<BorrowedFd<'_>> = (0..32).map(|_| fd.as_fd()).collect();
    send_with_fds(&raw.sock, &[0], &many);
    expect_protocol_error(&mut raw, "descriptors in one write").await;
}

/// Alice and bob, both echoing calls, with shared frames on, and a stream alice opened to
/// bob: alice's end, then bob's.
async fn bulk_stream() -> (Session, Session, ByteStream, ByteStream) {
    let (probe, mut seen) = Probe::new(|_, call: Call| async move {
        Ok(call.args.into_iter().next().unwrap_or(Value::Null))
    });
    let (alice, bob) = pair_with(echo(), Arc::new(probe), on()).await;
    let out = alice.open_stream("bulk").unwrap();
    let incoming = next_seen(&mut seen, |s| match s {
        Seen::Stream(p, stream) if p == "bulk" => Some(stream),
        _ => None,
    })
    .await;
    (alice, bob, out, incoming)
}

#[tokio::test]
async fn stream_chunks_go_through_the_ring_in_order_with_calls_between_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (alice, bob, mut out, mut incoming) = bulk_stream().await;
    let total = 8 * MIB;
    let data = pattern(total);
    let writer = {
        let data = data.clone();
        let alice = alice.clone();
        async move {
            for (i, chunk) in data.chunks(64 * 1024).enumerate() {
                out.write_all(chunk).await.unwrap();
                if i % 16 == 0 {
                    // Large calls between chunks: their bodies share the ring with the stream's.
                    let v = Value::Bytes(pattern(300_000));
                    assert_eq!(call_echo(&alice, v.clone()).await, v);
                }
            }
            out.shutdown().await.unwrap();
            // Kept until the reader is done: dropping a stream the peer has not finished
            // resets it.
            out
        }
    };
    let reader = async {
        let mut got = Vec::with_capacity(total);
        incoming.read_to_end(&mut got).await.unwrap();
        got
    };
    let (_out, got) = soon("the stream", async { tokio::join!(writer, reader) }).await;
    assert_eq!(got.len(), total);
    assert!(
        got == data[..],
        "the stream's bytes arrived changed or out of order"
    );
    let (sent, _) = alice.shared_frames();
    let (_, received) = bob.shared_frames();
    assert!(
        sent >= 64,
        "stream chunks went through the ring: {sent} shared frames"
    );
    assert_eq!(sent, received);
}

#[tokio::test]
async fn stream_chunks_nobody_read_give_their_ring_space_back_when_the_stream_goes() {
    use tokio::io::AsyncWriteExt;
    let (alice, bob, mut out, incoming) = bulk_stream().await;
    // One window of chunks, left in bob's share of the ring: nobody reads them.
    let window = 256 * 1024;
    let data = pattern(window);
    soon("one window written", async {
        for chunk in data.chunks(64 * 1024) {
            out.write_all(chunk).await.unwrap();
        }
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bob.shared_frames().1 < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the chunks never came"
        );
        tokio::task::yield_now().await;
    }
    drop(incoming);
    // Twice the ring's size of calls, one at a time: each goes through the ring only if
    // every byte before it (the dropped chunks included) has been handed back.
    let (sent_before, _) = alice.shared_frames();
    let big = Value::Bytes(pattern(MIB));
    for _ in 0..8 {
        assert_eq!(call_echo(&alice, big.clone()).await, big);
    }
    assert_eq!(alice.shared_frames().0 - sent_before, 8);
    drop(out);
}
