//! Shared frames: large frame bodies through a ring of shared memory instead of the socket
//! (docs/protocol.md §2.1, docs/performance.md "Seventh step").
//!
//! Owns the two ends of one direction's ring: [`RingOut`] (the sender's: it makes the memory
//! file, places each body and copies it in) and [`RingIn`] (the receiver's: it maps the file
//! the peer sent, copies each body out and hands the space back). Never decides when a frame
//! goes shared (`writer.rs`), never touches the socket (`unix_socket.rs` carries the
//! descriptor), never interprets a body (`logos-wire`).
//!
//! # Layout and placement
//!
//! The file is one header page, whose first 8 bytes are the receiver's `consumed` counter
//! (total ring bytes handed back, native-endian, written with release ordering), followed by
//! `cap` bytes of ring. Both sides place the n-th shared body by the same rule ([`place`]):
//! right after the previous one, or at the ring's start when it would not fit before the end
//! of its lap. So the socket needs to carry only each body's length; positions are never sent.
//!
//! # Short laps
//!
//! With [`Laps::Short`] (both sides announced it, docs/protocol.md §2.1) a body of `len`
//! bytes goes round within the ring's first `8 × len` bytes only, not the whole ring. A
//! stream of 64 KiB chunks then cycles through 512 KiB that stay in the CPU's cache, instead
//! of walking through 4 MiB that do not: on one CPU the stream moved 10.3 GB/s instead of
//! 7.4 (docs/performance.md, "Twenty-fourth step"). A 1 MiB body still has the whole ring. Skipping to the next lap costs no copy: the skipped space only has to be handed
//! back, which it is with the first body of the lap before.
//!
//! # Why the receiver copies
//!
//! The sender can write the ring at any time, so nothing in it is read twice or borrowed:
//! [`RingIn::take`] copies a body out once, into memory of its own, and only that copy is
//! decoded. A stream chunk's payload is the one exception to *when* it is copied, not to
//! *how*: [`RingIn::lend`] leaves it in the ring as a [`Lease`] (its head already decoded
//! from a private copy, [`RingIn::peek`]), and the stream's reader copies it once, straight
//! into the application's buffer. Its space is handed back when the lease is dropped; the
//! counter only ever moves over bodies that are all done with, so a chunk nobody reads yet
//! holds back the space after it too, and the sender sends on the socket meanwhile.
//!
//! A sender that overwrites a body before it is taken only garbles its own frame (which
//! then fails to decode, or arrives wrong). The file must be sealed against shrinking
//! (a mapping of a file cut short faults with `SIGBUS` on access), which [`RingIn::open`]
//! checks with its size before mapping it. The receiver's only write is the counter, which
//! the sender reads as untrusted input: a counter beyond what was sent disables the ring.
//!
//! The ring's pages belong to the memory cgroup of the sender, which writes them first, so a
//! module cannot make its peer pay for what it sends.

use bytes::{Bytes, BytesMut};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The header: one page, holding the `consumed` counter.
pub(crate) const HEADER: usize = 4096;
/// Ring bytes of a sender's ring (4 MiB): four 1 MiB frames in flight. Its pages are touched
/// (and then stay resident) only as far as frames have reached.
pub(crate) const RING: usize = 4 * 1024 * 1024;
/// Ring sizes a receiver accepts.
const RING_MIN: usize = 64 * 1024;
const RING_MAX: usize = 64 * 1024 * 1024;

/// How far round the ring a body goes before the next one starts a new lap: the rule both
/// sides of a connection agreed on (docs/protocol.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Laps {
    /// Every body may go up to the ring's end (the rule of a peer that did not announce
    /// short laps).
    Whole,
    /// A body of `len` bytes stays within the ring's first `8 × len` bytes (see "Short laps").
    Short,
}

impl Laps {
    /// How many bodies of one size a short lap holds.
    const SHORT: u64 = 8;

    /// The end (a ring offset) a body of `len` bytes must not cross in a ring of `cap`.
    fn end(self, len: u64, cap: u64) -> u64 {
        match self {
            Laps::Whole => cap,
            Laps::Short => len.saturating_mul(Laps::SHORT).min(cap),
        }
    }
}

/// Where the body after `head` (total ring bytes used so far) of `len` bytes goes in a ring of
/// `cap` under `laps`: its start as a total (its offset in the ring is that modulo `cap`), and
/// the total after it. A body that would cross the end of its lap starts at the next lap (the
/// ring's start) instead.
fn place(head: u64, len: usize, cap: usize, laps: Laps) -> (u64, u64) {
    let (len, cap) = (len as u64, cap as u64);
    let at = head % cap;
    let start = if at + len > laps.end(len, cap) {
        head + (cap - at)
    } else {
        head
    };
    (start, start + len)
}

/// The sending side of one connection's ring.
pub(crate) struct RingOut {
    map: Map,
    cap: usize,
    laps: Laps,
    /// Total ring bytes placed.
    head: u64,
}

impl RingOut {
    /// A new ring of [`RING`] bytes whose bodies go round by `laps`, and the descriptor to
    /// send the peer with the prefix of the first frame placed in it.
    ///
    /// # Errors
    /// The OS error of making, sizing, sealing or mapping the file (`EMFILE`, `ENOMEM`, …);
    /// the caller then sends frames on the socket.
    pub(crate) fn create(laps: Laps) -> io::Result<(RingOut, OwnedFd)> {
        let fd = rustix::fs::memfd_create(
            c"logos-ring",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let len = HEADER + RING;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let map = Map::new(&fd, len)?;
        Ok((
            RingOut {
                map,
                cap: RING,
                laps,
                head: 0,
            },
            fd,
        ))
    }

    /// The largest body this ring takes (half of it, so wrapping never wastes more than the
    /// body it makes room for).
    pub(crate) fn max_body(&self) -> usize {
        self.cap / 2
    }

    /// Copies a body made of `parts` (one after the other) into the ring if it has room:
    /// `Ok(true)`; `Ok(false)` when the peer has not yet taken enough of what is in it (the
    /// caller sends the frame on the socket).
    ///
    /// # Errors
    /// The peer's counter says it took more than was ever placed: the ring cannot be trusted
    /// and must not be used again.
    pub(crate) fn put(&mut self, parts: &[&[u8]]) -> Result<bool, String> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len == 0 || len > self.max_body() {
            return Ok(false);
        }
        let consumed = self.map.counter().load(Ordering::Acquire);
        if consumed > self.head {
            return Err(format!(
                "the peer says it took {consumed} ring bytes of {} placed",
                self.head
            ));
        }
        let (start, end) = place(self.head, len, self.cap, self.laps);
        if end - consumed > self.cap as u64 {
            return Ok(false);
        }
        let mut at = HEADER + (start % self.cap as u64) as usize;
        for part in parts {
            // SAFETY: the parts together end at `at + len` ≤ HEADER + cap = the mapping's
            // length (`place` never lets a body cross the ring's end); the mapping is writable
            // and lives as long as `self`, and `part` is our own memory, so the two cannot
            // overlap. The peer may read the same bytes concurrently only if it breaks the
            // protocol, and it copies them (module docs).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    self.map.ptr.as_ptr().add(at),
                    part.len(),
                );
            }
            at += part.len();
        }
        self.head = end;
        Ok(true)
    }
}

/// The receiving side of one connection's ring: the peer's file, mapped.
pub(crate) struct RingIn {
    ring: Arc<Received>,
    cap: usize,
    laps: Laps,
    /// Total ring bytes taken or lent.
    head: u64,
}

/// The peer's ring as the receiver and its [`Lease`]s share it.
struct Received {
    map: Map,
    /// Bodies taken since the oldest one still lent out, in ring order: where each ends (a
    /// total) and whether it is done with. Empty while nothing is lent.
    pending: Mutex<VecDeque<(u64, bool)>>,
}

impl Received {
    /// The body ending at `end` is done with: hands back every body up to the first one
    /// still lent.
    fn done(&self, end: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_empty() {
            self.map.counter().store(end, Ordering::Release);
            return;
        }
        match pending.iter_mut().find(|(e, _)| *e == end) {
            Some(entry) => entry.1 = true,
            None => pending.push_back((end, true)),
        }
        let mut handed = None;
        while let Some(&(e, true)) = pending.front() {
            handed = Some(e);
            pending.pop_front();
        }
        if let Some(e) = handed {
            self.map.counter().store(e, Ordering::Release);
        }
    }
}

impl RingIn {
    /// Maps the ring the peer sent, whose bodies go round by `laps`, after checking it can be
    /// mapped safely (see the module docs).
    ///
    /// # Errors
    /// A message naming what is wrong with the file, for the session's `protocol_error`.
    pub(crate) fn open(fd: OwnedFd, laps: Laps) -> Result<RingIn, String> {
        let size = sealed_size(&fd, "the shared-frame ring")?;
        let cap = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_sub(HEADER))
            .filter(|c| (RING_MIN..=RING_MAX).contains(c) && c % 4096 == 0)
            .ok_or_else(|| {
                format!(
                    "the shared-frame ring holds {size} bytes: it must be a {HEADER}-byte \
                     header and {RING_MIN} to {RING_MAX} bytes of ring, in whole pages"
                )
            })?;
        let map = Map::new(&fd, HEADER + cap)
            .map_err(|e| format!("cannot map the shared-frame ring: {e}"))?;
        Ok(RingIn {
            ring: Arc::new(Received {
                map,
                pending: Mutex::new(VecDeque::new()),
            }),
            cap,
            laps,
            head: 0,
        })
    }

    /// Where the next body, of `len` bytes, lies: its offset in the mapping and the total
    /// after it.
    fn next(&self, len: usize) -> Result<(usize, u64), String> {
        if len == 0 || len > self.cap {
            return Err(format!(
                "a shared frame of {len} bytes does not fit the ring of {} bytes",
                self.cap
            ));
        }
        let (start, end) = place(self.head, len, self.cap, self.laps);
        Ok((HEADER + (start % self.cap as u64) as usize, end))
    }

    /// Copies the first bytes of the next body, of `len` bytes, into `out` (as many as fit)
    /// without taking it, and returns them: for deciding how to take it.
    ///
    /// # Errors
    /// `len` larger than the ring.
    pub(crate) fn peek<'o>(&self, len: usize, out: &'o mut [u8]) -> Result<&'o [u8], String> {
        let (at, _) = self.next(len)?;
        let n = len.min(out.len());
        // SAFETY: `at + n` ≤ `at + len` ≤ the mapping's length (as in `RingOut::put`), mapped
        // and sealed against shrinking (`open`); the destination is `n` bytes of `out`. A raw
        // copy, never a borrow, of memory the peer may change (module docs).
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring.map.ptr.as_ptr().add(at), out.as_mut_ptr(), n);
        }
        Ok(&out[..n])
    }

    /// Copies the next body, of `len` bytes, out of the ring into `buf` (a buffer the caller
    /// keeps, so the copy lands in memory already faulted in once the bodies it held are
    /// dropped), hands the space back, and returns the copy. The copy's allocation is at most
    /// twice its size, so a receiver may keep it as it is.
    ///
    /// # Errors
    /// `len` larger than the ring.
    pub(crate) fn take(&mut self, len: usize, buf: &mut BytesMut) -> Result<Bytes, String> {
        let (at, end) = self.next(len)?;
        buf.clear();
        buf.reserve(len);
        if buf.capacity() > 2 * len {
            // A buffer grown by a big body is not reused for a much smaller one: the copy may
            // be kept (a byte string decoded as a slice of it), and must not pin many times
            // its size.
            *buf = BytesMut::with_capacity(len);
        }
        // SAFETY: `at + len` ≤ the mapping's length (as in `RingOut::put`), which is mapped
        // and cannot shrink (sealed, checked in `open`); the destination is `len` bytes of
        // `buf`'s spare capacity (reserved above). The source is copied once with a raw copy
        // and never borrowed: the peer may change it at any moment (module docs), which can
        // only change what we copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ring.map.ptr.as_ptr().add(at),
                buf.spare_capacity_mut().as_mut_ptr().cast::<u8>(),
                len,
            );
            buf.set_len(len);
        }
        self.head = end;
        self.ring.done(end);
        Ok(buf.split_to(len).freeze())
    }

    /// Takes the next body, of `len` bytes, without copying it: a [`Lease`] on its bytes
    /// from `skip` on (the part after a head decoded from [`RingIn::peek`]). Its space is
    /// handed back when the lease is dropped.
    ///
    /// # Errors
    /// `len` larger than the ring, or `skip` beyond it.
    pub(crate) fn lend(&mut self, len: usize, skip: usize) -> Result<Lease, String> {
        let (at, end) = self.next(len)?;
        if skip > len {
            return Err(format!("{skip} bytes skipped of a {len}-byte shared frame"));
        }
        self.head = end;
        self.ring
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((end, false));
        Ok(Lease {
            ring: Arc::clone(&self.ring),
            at: at + skip,
            left: len - skip,
            end,
        })
    }
}

/// Bytes of a body left in the ring ([`RingIn::lend`]): copied out once, in order, by
/// [`Lease::copy_to`]; the body's space goes back to the sender when this is dropped.
pub(crate) struct Lease {
    ring: Arc<Received>,
    /// Offset in the mapping of the next byte, and how many are left.
    at: usize,
    left: usize,
    /// Where the body ends, as a ring total.
    end: u64,
}

impl Lease {
    /// Bytes not yet copied out.
    pub(crate) fn len(&self) -> usize {
        self.left
    }

    /// Copies the next bytes into `out`, as many as fit; returns how many.
    pub(crate) fn copy_to(&mut self, out: &mut [u8]) -> usize {
        let n = self.left.min(out.len());
        // SAFETY: `at + left` never passes the body's end, which `RingIn::next` placed inside
        // the mapping; the mapping lives as long as `ring`, which this lease holds. A raw copy
        // of memory the peer may change (module docs), into `n` bytes of `out`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ring.map.ptr.as_ptr().add(self.at),
                out.as_mut_ptr(),
                n,
            );
        }
        self.at += n;
        self.left -= n;
        n
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ring.done(self.end);
    }
}

/// A shared, read-write mapping of a whole memory file, unmapped on drop.
/// The size of `fd`, a memfd sealed against shrinking (so a mapping of it never faults), or
/// a message naming `what` it should have been and what is wrong.
pub(crate) fn sealed_size(fd: &OwnedFd, what: &str) -> Result<i64, String> {
    let seals = rustix::fs::fcntl_get_seals(fd)
        .map_err(|e| format!("the descriptor sent for {what} is not a memfd ({e})"))?;
    if !seals.contains(SealFlags::SHRINK) {
        return Err(format!(
            "{what} is not sealed against shrinking (seals {:#x})",
            seals.bits()
        ));
    }
    Ok(rustix::fs::fstat(fd)
        .map_err(|e| format!("cannot read the size of {what}: {e}"))?
        .st_size)
}

/// A shared mapping of a whole memory file, unmapped on drop (the rings here, the heartbeat
/// page in `beat.rs`).
pub(crate) struct Map {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Map` is the sole owner of its mapping; every access goes through raw copies and
// the header's atomic counter, which are sound from any thread.
unsafe impl Send for Map {}
// SAFETY: as for `Send`.
unsafe impl Sync for Map {}

impl Map {
    fn new(fd: &OwnedFd, len: usize) -> io::Result<Map> {
        Map::with(fd, len, ProtFlags::READ | ProtFlags::WRITE)
    }

    /// Maps `len` bytes of `fd` with `prot`. The caller guarantees the file is at least `len`
    /// bytes long and cannot shrink (sealed by its maker, or checked before mapping).
    pub(crate) fn with(fd: &OwnedFd, len: usize, prot: ProtFlags) -> io::Result<Map> {
        // SAFETY: a new mapping chosen by the kernel (null hint) of `len` bytes of a file at
        // least that long that cannot shrink (sealed by us, or checked by `RingIn::open` and
        // `beat.rs`); no reference into it exists before this returns.
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Map { ptr, len })
    }

    /// The counter in the mapping's first 8 bytes (a ring's `consumed`, a heartbeat page's
    /// count). Only loaded through a read-only mapping.
    pub(crate) fn counter(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned and at least a page long, so its first 8 bytes
        // are a valid, aligned `u64` for as long as `self` lives; both processes access them
        // only atomically (mapped shared memory supports lock-free atomics across processes).
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().cast::<u64>()) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `Map::new`, unmapped only here,
        // and nothing borrowed from it outlives `self` (bodies are copied out).
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::warn!("munmap of a shared memory file failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn bodies_go_round_the_ring_and_come_out_intact_in_order() {
        for laps in [Laps::Whole, Laps::Short] {
            let (mut out, fd) = RingOut::create(laps).expect("ring");
            let mut inn = RingIn::open(fd, laps).expect("open");
            // Sizes that do not divide the ring, so bodies wrap at odd places, for several
            // laps.
            let sizes = [300_000, 1_048_576, 5, 700_001, 2_000_000, 123_457, 65_556];
            for lap in 0..6u8 {
                for (i, &len) in sizes.iter().enumerate() {
                    let b = body(len, lap ^ i as u8);
                    assert!(
                        out.put(&[&b]).expect("put"),
                        "{laps:?}: room for body {i} of lap {lap}"
                    );
                    let got = inn.take(len, &mut BytesMut::new()).expect("take");
                    assert_eq!(&got[..], &b[..], "{laps:?}");
                }
            }
        }
    }

    #[test]
    fn short_laps_keep_small_bodies_near_the_rings_start() {
        let cap = RING as u64;
        let len = 65_556usize;
        // Eight bodies one after the other, then the ninth at the next lap's start.
        let mut head = 0;
        for i in 0..8u64 {
            let (start, end) = place(head, len, RING, Laps::Short);
            assert_eq!(start, i * len as u64, "body {i}");
            head = end;
        }
        assert_eq!(place(head, len, RING, Laps::Short).0, cap, "the ninth");
        assert_eq!(
            place(head, len, RING, Laps::Whole).0,
            head,
            "the whole ring goes on"
        );
        // A body of more than an eighth of the ring has the whole ring, as before.
        let big = 1_048_600usize;
        assert_eq!(
            place(2 * cap + 1000, big, RING, Laps::Short).0,
            2 * cap + 1000
        );
        assert_eq!(place(3 * cap - 10, big, RING, Laps::Short).0, 3 * cap);
        // A small body after a big one that left the head beyond its lap starts a new lap.
        assert_eq!(place(cap + 1_048_600, 100, RING, Laps::Short).0, 2 * cap);
        assert_eq!(place(cap + 700, 100, RING, Laps::Short).0, cap + 700);
    }

    #[test]
    fn a_short_lap_waits_for_the_first_body_of_the_lap_before() {
        let (mut out, fd) = RingOut::create(Laps::Short).expect("ring");
        let mut inn = RingIn::open(fd, Laps::Short).expect("open");
        let len = 65_556;
        let bodies: Vec<Vec<u8>> = (0..9u8).map(|i| body(len, i)).collect();
        for b in &bodies[..8] {
            assert!(out.put(&[b]).expect("put"));
        }
        // The ninth goes to the ring's start, where the first still lies.
        assert!(!out.put(&[&bodies[8]]).unwrap(), "the first is not taken");
        let first = inn.take(len, &mut BytesMut::new()).expect("take");
        assert_eq!(&first[..], &bodies[0][..]);
        assert!(out.put(&[&bodies[8]]).unwrap(), "room at the start");
        for b in &bodies[1..] {
            assert_eq!(&inn.take(len, &mut BytesMut::new()).unwrap()[..], &b[..]);
        }
        assert_eq!(inn.head, RING as u64 + len as u64);
    }

    #[test]
    fn a_small_body_is_not_copied_into_a_buffer_a_big_one_grew() {
        let (mut out, fd) = RingOut::create(Laps::Whole).expect("ring");
        let mut inn = RingIn::open(fd, Laps::Whole).expect("open");
        let mut buf = BytesMut::new();
        for len in [1_048_576, 65_600] {
            let b = body(len, 9);
            assert!(out.put(&[&b]).expect("put"));
            let got = inn.take(len, &mut buf).expect("take");
            assert_eq!(&got[..], &b[..]);
        }
        // The 64 KiB copy may be kept (a byte string sliced from it, held by a handler): it
        // must sit in an allocation of about its size, not in what is left of the 1 MiB one.
        assert!(
            buf.capacity() < 65_600,
            "{} bytes left beside the small copy",
            buf.capacity()
        );
    }

    #[test]
    fn a_lent_body_is_copied_out_in_pieces_and_its_space_comes_back_in_ring_order() {
        let (mut out, fd) = RingOut::create(Laps::Whole).expect("ring");
        let mut inn = RingIn::open(fd, Laps::Whole).expect("open");
        let half = RING / 2;
        let (a, b, c) = (body(half - 10, 1), body(1000, 2), body(half - 2000, 3));
        for x in [&a, &b, &c] {
            assert!(out.put(&[x]).expect("put"));
        }
        assert!(!out.put(&[&body(5000, 4)]).unwrap(), "full");
        // The first body lent past a 10-byte head, the second taken, the third lent whole.
        let mut head = [0u8; 10];
        assert_eq!(inn.peek(a.len(), &mut head).unwrap(), &a[..10]);
        let mut first = inn.lend(a.len(), 10).expect("lend");
        assert_eq!(
            &inn.take(b.len(), &mut BytesMut::new()).unwrap()[..],
            &b[..]
        );
        let mut third = inn.lend(c.len(), 0).expect("lend");
        assert_eq!(
            inn_counter(&inn),
            0,
            "nothing handed back while the first is lent"
        );
        let mut got = vec![0u8; 7];
        assert_eq!(first.copy_to(&mut got), 7);
        let mut rest = vec![0u8; a.len()];
        let n = first.copy_to(&mut rest);
        assert_eq!(n, a.len() - 17);
        assert_eq!(first.len(), 0);
        got.extend_from_slice(&rest[..n]);
        assert_eq!(got, a[10..]);
        let mut all = vec![0u8; c.len()];
        assert_eq!(third.copy_to(&mut all), c.len());
        assert_eq!(all, c);
        drop(third);
        assert_eq!(
            inn_counter(&inn),
            0,
            "the third is done, but the first is still lent"
        );
        assert!(!out.put(&[&body(5000, 4)]).unwrap(), "still full");
        drop(first);
        let total = place(
            place(
                place(0, a.len(), RING, Laps::Whole).1,
                b.len(),
                RING,
                Laps::Whole,
            )
            .1,
            c.len(),
            RING,
            Laps::Whole,
        )
        .1;
        assert_eq!(inn_counter(&inn), total, "all three handed back at once");
        assert!(out.put(&[&body(5000, 4)]).unwrap(), "room again");
        let lent = inn.lend(5000, 5001).err().expect("skip past the body");
        assert!(lent.contains("5001 bytes skipped"), "{lent}");
    }

    fn inn_counter(inn: &RingIn) -> u64 {
        inn.ring.map.counter().load(Ordering::Acquire)
    }

    #[test]
    fn a_full_ring_says_so_until_the_peer_takes_what_is_in_it() {
        let (mut out, fd) = RingOut::create(Laps::Whole).expect("ring");
        let mut inn = RingIn::open(fd, Laps::Whole).expect("open");
        let b = body(RING / 2, 1);
        let (head, tail) = b.split_at(1000);
        assert!(out.put(&[head, tail]).unwrap(), "a body in two parts");
        assert!(out.put(&[&b]).unwrap());
        assert!(!out.put(&[&body(10, 2)]).unwrap(), "the ring is full");
        assert!(
            !out.put(&[&body(RING / 2 + 1, 3)]).unwrap(),
            "too big for this ring"
        );
        assert_eq!(
            &inn.take(b.len(), &mut BytesMut::new()).unwrap()[..],
            &b[..]
        );
        assert!(out.put(&[&body(10, 2)]).unwrap(), "room again");
    }

    #[test]
    fn a_counter_beyond_what_was_placed_breaks_the_ring() {
        let (mut out, fd) = RingOut::create(Laps::Whole).expect("ring");
        let inn = RingIn::open(fd, Laps::Whole).expect("open");
        inn.ring.map.counter().store(1 << 40, Ordering::Release);
        let e = out.put(&[&body(10, 0)]).expect_err("lying peer");
        assert!(
            e.contains("took 1099511627776 ring bytes of 0 placed"),
            "{e}"
        );
    }

    #[test]
    fn a_ring_that_could_shrink_or_has_the_wrong_size_is_refused() {
        let open = rustix::fs::memfd_create(c"t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .expect("memfd");
        rustix::fs::ftruncate(&open, (HEADER + RING) as u64).expect("size");
        let e = RingIn::open(open, Laps::Whole).err().expect("can shrink");
        assert!(e.contains("not sealed against shrinking"), "{e}");

        let odd = rustix::fs::memfd_create(c"t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .expect("memfd");
        rustix::fs::ftruncate(&odd, (HEADER + 1000) as u64).expect("size");
        rustix::fs::fcntl_add_seals(&odd, SealFlags::SHRINK).expect("seal");
        let e = RingIn::open(odd, Laps::Whole).err().expect("size");
        assert!(e.contains("holds 5096 bytes"), "{e}");

        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let e = RingIn::open(OwnedFd::from(a), Laps::Whole)
            .err()
            .expect("socket");
        assert!(e.contains("not a memfd"), "{e}");
    }

    #[test]
    fn a_body_larger_than_the_ring_is_refused_by_the_receiver() {
        let (_out, fd) = RingOut::create(Laps::Whole).expect("ring");
        let mut inn = RingIn::open(fd, Laps::Whole).expect("open");
        let e = inn
            .take(RING + 1, &mut BytesMut::new())
            .expect_err("too big");
        assert!(e.contains("does not fit the ring"), "{e}");
    }
}
