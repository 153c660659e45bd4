//! `p2p-chat`: a chat over the libp2p protocol `/logos/chat/1.0.0`, served through `p2p`.
//!
//! A stream carries length-prefixed UTF-8 messages (unsigned varint, as nim's `writeLp`)
//! until its opener finishes it. Each message received becomes the event `chatMessage
//! [peer, text]` (the sender is the peer the stream came from, never what it claims) and
//! enters a history of the last 100. `send` opens a stream to a peer, writes one message and
//! waits for the peer to finish. The protocol lives here, never in `p2p`.

use logos_sdk::p2p::{Options, P2p, P2pError, P2pStream};
use logos_sdk::{Context, Events, module};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The protocol id.
pub const CHAT: &str = "/logos/chat/1.0.0";
/// The longest message taken; a longer one ends its stream with `limit`.
pub const MAX_MESSAGE: usize = 64 * 1024;
type History = Arc<Mutex<VecDeque<(String, String)>>>;

/// The events of the chat.
#[derive(Debug, Events)]
pub enum ChatEvent {
    /// A message arrived from `peer`.
    ChatMessage { peer: String, text: String },
}

/// The chat module.
#[derive(Debug, Default)]
pub struct P2pChat {
    history: History,
}

#[module(name = "p2p-chat", events = ChatEvent)]
impl P2pChat {
    #[init]
    fn new(ctx: &Context) -> Self {
        let chat = P2pChat::default();
        tokio::spawn(serve(ctx.clone(), Arc::clone(&chat.history)));
        chat
    }

    /// Sends `text` to `peer` (dialling `addrs` if needed).
    pub async fn send(
        &self,
        ctx: &Context,
        peer: &str,
        addrs: Vec<String>,
        text: &str,
    ) -> Result<(), P2pError> {
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut s = P2p::new(ctx)
            .open_stream(peer, &[CHAT], &addrs, Duration::from_secs(10))
            .await?;
        s.write_lp(text.as_bytes()).await?;
        s.close_with_eof(Duration::from_secs(10)).await
    }

    /// The last messages received, oldest first: `[[peer, text], …]`.
    pub fn history(&self) -> Vec<(String, String)> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// Registers the protocol (again whenever `p2p` restarts) and reads every stream.
async fn serve(ctx: Context, history: History) {
    let p2p = P2p::new(&ctx);
    loop {
        if let Ok(reg) = p2p.register(&[CHAT], Options::default()).await {
            loop {
                match reg.accept(Duration::from_secs(3600)).await {
                    Ok(s) => drop(tokio::spawn(receive(ctx.clone(), Arc::clone(&history), s))),
                    Err(e) if e.is("timeout") => {}
                    Err(_) => break,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn receive(ctx: Context, history: History, mut s: P2pStream) {
    while let Ok(msg) = s.read_lp(MAX_MESSAGE, None).await {
        let (peer, text) = (
            s.peer().to_owned(),
            String::from_utf8_lossy(&msg).into_owned(),
        );
        {
            let mut h = history.lock().unwrap_or_else(PoisonError::into_inner);
            if h.len() == 100 {
                h.pop_front();
            }
            h.push_back((peer.clone(), text.clone()));
        }
        let _ = ctx.emit(ChatEvent::ChatMessage { peer, text });
    }
    let _ = s.close().await;
}

logos_sdk::export_module!(P2pChat);
