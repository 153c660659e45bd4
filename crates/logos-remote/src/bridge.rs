//! Joining a link to the local protocol path: [`bridge`] puts a TLS stream behind one end of a
//! Unix socketpair, so `logos-session` (which drives Unix sockets) runs over it unchanged, and
//! [`splice`] copies between two streams both ways (the core's relay of peer connections).
//!
//! Owns the copying and how it ends: when one direction ends (EOF, TLS close_notify, an
//! error) the other side's write half is shut down (for TLS, a close_notify is sent) and the
//! other direction gets [`LINGER`] to finish before both streams are dropped, so a peer that
//! went silent (SIGSTOP, a cut cable) never keeps a task or a socket alive. Also [`tune`]: the
//! TCP options of every link. Never looks at the bytes.

use bytes::BytesMut;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// How long the second direction may go on after the first has ended.
pub const LINGER: Duration = Duration::from_secs(5);
/// Bytes copied per read.
const CHUNK: usize = 64 * 1024;

/// Sets `TCP_NODELAY` (calls are small and latency-bound) and TCP keepalive (15 s idle, then
/// every 5 s, 3 probes: a vanished host is noticed within 30 s even when nothing is sent; the
/// heartbeat notices a silent process much sooner).
pub fn tune(stream: &TcpStream) {
    let sock = socket2::SockRef::from(stream);
    if let Err(e) = sock.set_tcp_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(15))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        tracing::debug!("TCP keepalive: {e}");
    }
}

/// Puts `io` behind a new Unix socketpair and returns the other end; `leftover` (bytes
/// already read from `io`) comes out of it first. The copying runs in its own task until
/// either side closes (see the module docs).
///
/// # Errors
/// The socketpair cannot be made (out of descriptors).
pub fn bridge<S>(io: S, leftover: BytesMut) -> io::Result<UnixStream>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (ours, theirs) = UnixStream::pair()?;
    tokio::spawn(async move {
        let mut ours = ours;
        if !leftover.is_empty() && ours.write_all(&leftover).await.is_err() {
            return;
        }
        if let Err(e) = splice(io, ours).await {
            tracing::debug!("link ended: {e}");
        }
    });
    Ok(theirs)
}

/// Copies `a` → `b` and `b` → `a` until both directions end, or one ends and the other does
/// not within [`LINGER`]. The first error, if any, is returned (a TLS peer that closed without
/// close_notify shows up here as `UnexpectedEof`).
///
/// # Errors
/// The first copy error.
///
/// # Cancel safety
/// Dropping the future drops both streams.
pub async fn splice<A, B>(a: A, b: B) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let up = pump(&mut ar, &mut bw);
    let down = pump(&mut br, &mut aw);
    tokio::pin!(up, down);
    let (first, rest) = tokio::select! {
        r = &mut up => (r, tokio::time::timeout(LINGER, &mut down).await),
        r = &mut down => (r, tokio::time::timeout(LINGER, &mut up).await),
    };
    first?;
    match rest {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// Copies `r` to `w` until EOF, flushing whenever a read returned, then shuts `w` down.
async fn pump<R, W>(r: &mut R, w: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = w.shutdown().await;
                return Err(e);
            }
        };
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bridge_carries_leftover_then_both_directions() {
        let (mut far, near) = tokio::io::duplex(4096);
        let mut local = bridge(near, BytesMut::from(&b"early"[..])).unwrap();
        far.write_all(b" late").await.unwrap();
        let mut got = [0u8; 10];
        local.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"early late");
        local.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        far.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
        drop(far);
        let mut rest = Vec::new();
        assert_eq!(
            local.read_to_end(&mut rest).await.unwrap(),
            0,
            "EOF passes on"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_side_is_dropped_after_the_linger() {
        let (a_far, a) = tokio::io::duplex(64);
        let (mut b_far, b) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(a, b));
        // b's peer goes away; a's peer stays silent and never closes.
        b_far.shutdown().await.unwrap();
        drop(b_far);
        let done = tokio::time::timeout(LINGER * 2, task).await;
        assert!(done.is_ok(), "splice ended within the linger");
        drop(a_far);
    }
}
