//! The remote module listener: accepts TCP connections, bounds what an unauthenticated peer
//! may cost, runs TLS and the link handshake, checks the credential, and hands each link to
//! its handler (control → `supervisor::remote`, call and accept → `relay.rs`).
//!
//! Owns the pre-authentication limits: at most `max_per_peer` connections per IP address
//! (refused at accept, before any TLS work), at most `max_handshakes` in their handshake at
//! once (a newer one pushes out the one that waited longest, so idle or stalling peers never
//! lock real ones out; logos-session's `Admission`), `handshake_timeout` (5 s) for TLS and the
//! link `hello` together, and a 64 KiB cap on that `hello`. Accept errors (`EMFILE`) back off
//! instead of spinning. Every refusal is logged with the peer and the reason. Never changes a
//! module's state itself.

use super::{Held, Remote, ServerTls, Verdict};
use crate::name::ModuleName;
use crate::state::Inner;
use bytes::BytesMut;
use logos_remote::link::{self, Purpose, ReadError};
use logos_wire::{ErrorCode, Hello, MAX_HANDSHAKE_FRAME, Message};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};

/// Longest pause between failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a refusal may take to reach a peer.
const REFUSAL: Duration = Duration::from_secs(1);

pub(super) async fn run(weak: Weak<Inner>, remote: Arc<Remote>, listener: TcpListener) {
    let mut pause = Duration::from_millis(10);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => {
                pause = Duration::from_millis(10);
                x
            }
            Err(e) => {
                tracing::warn!(
                    "remote listener: accept failed: {e}; retrying in {pause:?} (out of file descriptors?)"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Some(inner) = weak.upgrade() else { return };
        let limits = inner.settings.remote;
        drop(inner);
        let Some(slot) = remote.enter_peer(peer.ip(), limits.max_per_peer) else {
            tracing::warn!(
                %peer,
                "remote listener: refused a connection: {} has {} connections open already (the per-peer limit)",
                peer.ip(),
                limits.max_per_peer
            );
            drop(tcp);
            continue;
        };
        let ticket = remote.admission.enter();
        let (weak, remote) = (weak.clone(), Arc::clone(&remote));
        tokio::spawn(async move {
            let mut ticket = ticket;
            let handshake = handshake(&remote, tcp, peer, slot, limits.handshake_timeout);
            let outcome = tokio::select! {
                o = handshake => o,
                () = ticket.evicted() => {
                    tracing::warn!(
                        %peer,
                        "remote listener: closed a connection still in its handshake: {} newer ones are waiting (handshakes at once are bounded)",
                        remote.admission.max()
                    );
                    return;
                }
            };
            drop(ticket);
            let Some((tls, buf, hello)) = outcome else {
                return;
            };
            let Some(inner) = weak.upgrade() else { return };
            admit(inner, remote, tls, buf, hello, peer).await;
        });
    }
}

/// TLS and the link `hello`, within `limit`. `None` after logging why the peer was refused.
async fn handshake(
    remote: &Remote,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: super::PeerSlot,
    limit: Duration,
) -> Option<(Held<ServerTls>, BytesMut, Hello)> {
    let work = async {
        // A TLS connection starts with a handshake record (0x16); anything else is not TLS.
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => return Err("it closed the connection without sending anything".to_owned()),
            Ok(_) if first[0] != 0x16 => {
                return Err(format!(
                    "it does not speak TLS (first byte {:#04x}; {}): remote modules connect with TLS 1.3 and a credential from `logoscore remote grant`",
                    first[0],
                    if first[0] == 0 {
                        "it looks like the logos protocol in plain TCP"
                    } else {
                        "garbage"
                    }
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("reading failed: {e}")),
        }
        logos_remote::tune(&tcp);
        let tls = remote
            .acceptor
            .accept(tcp)
            .await
            .map_err(|e| tls_failure(&e))?;
        let mut tls = Held {
            inner: tls,
            _slot: slot,
        };
        let mut buf = BytesMut::new();
        let hello = match link::read_frame(&mut tls, &mut buf, MAX_HANDSHAKE_FRAME).await {
            Ok((Message::Hello(h), _)) => h,
            Ok((other, _)) => {
                let why = format!("its first message is {}, not hello", other.kind_name());
                link::refuse(&mut tls, ErrorCode::ProtocolError, &why, REFUSAL).await;
                return Err(why);
            }
            Err(ReadError::Wire(e)) => {
                let why = format!("its link hello is invalid: {e}");
                link::refuse(&mut tls, e.code(), &why, REFUSAL).await;
                return Err(why);
            }
            Err(e) => return Err(format!("no link hello: {e}")),
        };
        if let Err(e) = logos_wire::handshake::check_version(hello.major, hello.minor) {
            let why = e.to_string();
            link::refuse(&mut tls, ErrorCode::ProtocolError, &why, REFUSAL).await;
            return Err(why);
        }
        Ok((tls, buf, hello))
    };
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(x)) => Some(x),
        Ok(Err(why)) => {
            tracing::warn!(%peer, "remote listener: refused a connection: {why}");
            None
        }
        Err(_) => {
            tracing::warn!(
                %peer,
                "remote listener: refused a connection: the TLS handshake and link hello did not complete within {limit:?}"
            );
            None
        }
    }
}

/// Says why a TLS handshake failed, in the listener's words.
fn tls_failure(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::PeerIncompatible(why)) => format!(
            "its TLS is incompatible ({why:?}): this listener speaks TLS 1.3 only, and the peer offers no TLS 1.3 (a TLS 1.2 client?)"
        ),
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the peer aborted the TLS handshake ({alert:?}); a remote module does this when the core's certificate is not the one its credential pins (a credential of another core, or this core's key was replaced)"
        ),
        Some(other) => format!("TLS handshake failed: {other}"),
        None => format!("TLS handshake failed: {e}"),
    }
}

/// Checks the link hello's credential and purpose, then hands the link on.
async fn admit(
    inner: Arc<Inner>,
    remote: Arc<Remote>,
    mut tls: Held<ServerTls>,
    buf: BytesMut,
    hello: Hello,
    peer: SocketAddr,
) {
    let claimed: String = hello.identity.chars().take(80).collect();
    type Checked = (
        ModuleName,
        std::collections::BTreeSet<String>,
        Option<SystemTime>,
        Purpose,
    );
    let checked: Result<Checked, (String, ErrorCode)> = async {
        let name = ModuleName::new(&hello.identity).map_err(|e| {
            (format!("its link hello names no valid module: {e}"), ErrorCode::Unauthorized)
        })?;
        let allow = match remote.store.verify(name.as_str(), &hello.token, SystemTime::now()) {
            Verdict::Valid { allow, expires_at } => (allow, expires_at),
            Verdict::OtherModule { owner } => {
                return Err((
                    format!("it presented the credential of module {owner:?} as module {claimed:?}; a credential is valid for its own module only"),
                    ErrorCode::Unauthorized,
                ));
            }
            Verdict::Revoked { at } => {
                return Err((
                    format!("the credential of module {claimed:?} was revoked at {}; ask the operator for a new one (`logoscore remote grant {claimed}`)", crate::operators::rfc3339(at)),
                    ErrorCode::Unauthorized,
                ));
            }
            Verdict::Expired { at } => {
                return Err((
                    format!("the credential of module {claimed:?} expired at {}; ask the operator for a new one (`logoscore remote grant {claimed}`)", crate::operators::rfc3339(at)),
                    ErrorCode::Unauthorized,
                ));
            }
            Verdict::Unknown => {
                return Err((
                    format!("no credential of module {claimed:?} matches the secret presented (never issued by this core, or replaced)"),
                    ErrorCode::Unauthorized,
                ));
            }
        };
        let purpose = Purpose::from_attrs(&hello.attrs).map_err(|e| (e, ErrorCode::ProtocolError))?;
        Ok((name, allow.0, allow.1, purpose))
    }
    .await;
    let (name, allow, expires_at, purpose) = match checked {
        Ok(x) => x,
        Err((why, code)) => {
            tracing::warn!(%peer, module = %claimed, "remote listener: refused a link: {why}");
            link::refuse(&mut tls, code, &why, REFUSAL).await;
            return;
        }
    };
    match purpose {
        Purpose::Control => {
            tracing::info!(%peer, module = %name, "remote module authenticated; control link");
            let who = super::Authenticated {
                name,
                allow,
                expires_at,
            };
            crate::supervisor::remote::control_link(inner, remote, tls, buf, who, peer).await;
        }
        Purpose::Call { target } => {
            super::relay::call_link(inner, remote, tls, buf, name, target, peer).await;
        }
        Purpose::Accept { ticket } => {
            super::relay::accept_link(inner, remote, tls, buf, name, ticket, peer).await;
        }
    }
}
