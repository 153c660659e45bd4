//! `p2p-echo`: a libp2p protocol served by an external module through `p2p`.
//!
//! Registers `/logos/echo/1.0.0`; each inbound stream is echoed back as it arrives, and our
//! half is closed once the remote closes its own. `ping` is the client side. The protocol
//! logic lives here, never in `p2p`: this module could run in another process or on another
//! machine. The registration dies with this module's connection to `p2p`, so the serve loop
//! registers again when `p2p` comes back.

use logos_sdk::p2p::{Options, P2p, P2pError, P2pStream};
use logos_sdk::{ByteBuf, Context, module};
use std::time::Duration;

/// The protocol id.
pub const ECHO: &str = "/logos/echo/1.0.0";

/// The echo module.
#[derive(Debug, Default)]
pub struct P2pEcho;

#[module(name = "p2p-echo")]
impl P2pEcho {
    #[init]
    fn new(ctx: &Context) -> Self {
        tokio::spawn(serve(P2p::new(ctx)));
        P2pEcho
    }

    /// Sends `data` to the echo protocol of `peer` (dialling `addrs` if needed), half-closes,
    /// and returns everything that came back.
    pub async fn ping(
        &self,
        ctx: &Context,
        peer: &str,
        addrs: Vec<String>,
        data: ByteBuf,
    ) -> Result<ByteBuf, P2pError> {
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut s = P2p::new(ctx)
            .open_stream(peer, &[ECHO], &addrs, Duration::from_secs(10))
            .await?;
        s.write(&data).await?;
        s.close().await?;
        Ok(ByteBuf::from(s.read_to_end(usize::MAX, None).await?))
    }
}

/// Registers the protocol and echoes every stream, registering again whenever the
/// registration ends (`p2p` restarted).
async fn serve(p2p: P2p) {
    loop {
        match p2p.register(&[ECHO], Options::default()).await {
            Ok(reg) => loop {
                match reg.accept(Duration::from_secs(3600)).await {
                    Ok(s) => drop(tokio::spawn(echo(s))),
                    Err(e) if e.is("timeout") => {}
                    Err(e) => {
                        tracing::info!("echo registration ended: {e}");
                        break;
                    }
                }
            },
            Err(e) => tracing::debug!("cannot register {ECHO} yet: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn echo(mut s: P2pStream) {
    loop {
        match s.read(64 * 1024, None).await {
            Ok(chunk) if s.write(&chunk).await.is_ok() => {}
            Ok(_) => return,
            Err(e) if e.is("eof") => break,
            Err(e) => return tracing::debug!(stream = s.id(), "echo stream ended: {e}"),
        }
    }
    let _ = s.close().await;
}

logos_sdk::export_module!(P2pEcho);
