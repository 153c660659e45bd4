//! Shared frames: a large frame's body in a sealed memory file instead of on the socket
//! (docs/protocol.md §3.1, docs/performance.md "Seventh step").
//!
//! Owns the two ends of that hand-over: making the file from an encoded body ([`seal`], the
//! sender) and mapping one a peer sent ([`map`], the receiver), with every check that makes
//! the mapping safe to read as immutable bytes for as long as anything holds them. Never
//! decides when a frame goes shared (`writer.rs`), never reads or writes the socket
//! (`unix_socket.rs` carries the descriptors), never interprets the body (`logos-wire`).
//!
//! # Why it is safe to map a peer's file
//!
//! A mapping of a file someone else can still write would be memory that changes under a
//! `&[u8]`, and one of a file someone can shrink raises `SIGBUS` on access. So [`map`] takes
//! only a memfd carrying the seals `F_SEAL_WRITE` (no write, no writable mapping, now or
//! later: the kernel refuses the seal while one exists) and `F_SEAL_SHRINK`, whose size is
//! exactly the length the frame announced. Anything else (another kind of descriptor, a seal
//! missing, a size that differs) is refused with a message naming what was wrong, and the
//! session closes the connection with `protocol_error`.
//!
//! The file's pages belong to the memory cgroup of the process that wrote them (the sender),
//! so a module cannot make its peer pay for what it sends.

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

/// The seals a received file must carry (see the module docs).
const REQUIRED: SealFlags = SealFlags::WRITE.union(SealFlags::SHRINK);

/// A sealed memory file holding `body`: written, then sealed against any change of content or
/// size and against further sealing.
///
/// # Errors
/// The OS error of `memfd_create`, the write or the seal (e.g. `EMFILE`, `ENOMEM`, a memory
/// cgroup at its limit); the caller sends the frame on the socket instead.
pub(crate) fn seal(body: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        c"logos-frame",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    // Sized first, so the write fills pages of a file already that long instead of growing
    // it page by page.
    rustix::fs::ftruncate(&fd, body.len() as u64)?;
    let mut at = 0;
    while at < body.len() {
        match rustix::io::pwrite(&fd, &body[at..], at as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?;
    Ok(fd)
}

/// The `len` bytes of the memory file `fd`, mapped read-only and shared (no copy): the
/// returned `Bytes` and every slice of it keep the mapping alive, and the last one dropped
/// unmaps it. `fd` itself is closed on return: the mapping does not need it.
///
/// # Errors
/// A message naming what is wrong with the file (see the module docs), for the session's
/// `protocol_error`.
pub(crate) fn map(fd: OwnedFd, len: usize) -> Result<Bytes, String> {
    let seals = rustix::fs::fcntl_get_seals(&fd)
        .map_err(|e| format!("the descriptor sent with a shared frame is not a memfd ({e})"))?;
    if !seals.contains(REQUIRED) {
        return Err(format!(
            "the memory file of a shared frame is not sealed against writing and shrinking \
             (seals {:#x})",
            seals.bits()
        ));
    }
    let size = rustix::fs::fstat(&fd)
        .map_err(|e| format!("cannot read the size of a shared frame's memory file: {e}"))?
        .st_size;
    if u64::try_from(size).ok() != Some(len as u64) {
        return Err(format!(
            "a shared frame announced {len} bytes but its memory file holds {size}"
        ));
    }
    // SAFETY: a new mapping chosen by the kernel (null hint), of `len` > 0 bytes (the wire
    // decoder refuses empty frames) of a file at least that long that can neither shrink nor
    // be written (checked above), read-only: no reference into it exists before this returns,
    // and nothing can change or remove its pages while it is mapped.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::SHARED,
            &fd,
            0,
        )
    }
    .map_err(|e| format!("cannot map a shared frame of {len} bytes: {e}"))?;
    let ptr = NonNull::new(ptr.cast::<u8>())
        .ok_or_else(|| String::from("mmap returned a null mapping"))?;
    Ok(Bytes::from_owner(Mapping { ptr, len }))
}

/// A read-only mapping of a sealed memory file, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and its file is sealed against writes, so the bytes never
// change and may be read from any thread; `Mapping` is the sole owner of the mapping.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: shared access is reads of immutable memory.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes (see `map`) that lives as
        // long as `self`, and its contents never change (sealed file).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`, unmapped only here; no
        // slice of it outlives `self` (`Bytes::from_owner` drops the owner last).
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::warn!("munmap of a shared frame failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_maps_back_byte_for_byte_without_its_descriptor() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let fd = seal(&body).expect("seal");
        let bytes = map(fd, body.len()).expect("map");
        assert_eq!(&bytes[..], &body[..]);
        let tail = bytes.slice(200_000..);
        drop(bytes);
        assert_eq!(
            &tail[..],
            &body[200_000..],
            "a slice keeps the mapping alive"
        );
    }

    #[test]
    fn a_file_that_could_still_change_is_refused() {
        let open = rustix::fs::memfd_create(c"t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .expect("memfd");
        rustix::io::write(&open, b"hello").expect("write");
        let e = map(open, 5).expect_err("unsealed");
        assert!(e.contains("not sealed"), "{e}");

        let shrinkable =
            rustix::fs::memfd_create(c"t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .expect("memfd");
        rustix::io::write(&shrinkable, b"hello").expect("write");
        rustix::fs::fcntl_add_seals(&shrinkable, SealFlags::WRITE).expect("seal");
        let e = map(shrinkable, 5).expect_err("can shrink");
        assert!(e.contains("shrinking"), "{e}");
    }

    #[test]
    fn a_size_other_than_announced_or_a_descriptor_other_than_a_memfd_is_refused() {
        let fd = seal(b"0123456789").expect("seal");
        let e = map(fd, 11).expect_err("size");
        assert!(
            e.contains("announced 11 bytes") && e.contains("holds 10"),
            "{e}"
        );

        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let e = map(OwnedFd::from(a), 4).expect_err("socket");
        assert!(e.contains("not a memfd"), "{e}");
    }
}
