//! `chat`: messages as events, with a bounded in-memory history.
//!
//! Shows a module with state and typed events: `send` records a message and emits
//! `chatMessage [timestamp, nick, message]` to exactly the connections subscribed to it;
//! `history` returns the most recent messages. The history lives in memory only and holds at
//! most [`HISTORY_LIMIT`] messages: it is lost on restart and never grows without bound.
//!
//! `send` takes `&mut self`, so the SDK runs it alone (no other call of this module at the
//! same time) and the history needs no `Mutex`; `history` takes `&self` and may run alongside
//! other `history` calls. Both borrow their text arguments (`&str`) from the call.

use logos_sdk::{Context, Events, module};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// Messages kept for `history`; older ones are dropped first.
pub const HISTORY_LIMIT: usize = 1000;

/// The events of the chat module.
#[derive(Debug, Events)]
pub enum ChatEvent {
    /// A message was sent: data `[timestamp (unix ms), nick, message]`.
    ChatMessage {
        timestamp: i64,
        nick: String,
        message: String,
    },
}

/// One message of the history (`{"timestamp", "nick", "message"}` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Unix time in milliseconds when the message was sent.
    pub timestamp: i64,
    /// Who sent it.
    pub nick: String,
    /// The text.
    pub message: String,
}

/// The chat module.
#[derive(Debug, Default)]
pub struct Chat {
    history: VecDeque<Message>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[module(events = ChatEvent)]
impl Chat {
    /// Sends `message` as `nick`: every subscriber of `chatMessage` gets it.
    pub fn send(&mut self, ctx: &Context, nick: &str, message: &str) -> Result<(), String> {
        if nick.is_empty() {
            return Err("nick must not be empty".to_owned());
        }
        let entry = Message {
            timestamp: now_ms(),
            nick: nick.to_owned(),
            message: message.to_owned(),
        };
        if self.history.len() == HISTORY_LIMIT {
            self.history.pop_front();
        }
        self.history.push_back(entry.clone());
        ctx.emit(ChatEvent::ChatMessage {
            timestamp: entry.timestamp,
            nick: entry.nick,
            message: entry.message,
        })?;
        Ok(())
    }

    /// The last `limit` messages (all kept ones when left out), oldest first, newest last.
    pub fn history(&self, limit: Option<u64>) -> Vec<Message> {
        let history = &self.history;
        let n = limit.map_or(history.len(), |l| {
            usize::try_from(l).unwrap_or(usize::MAX).min(history.len())
        });
        history.iter().skip(history.len() - n).cloned().collect()
    }
}

logos_sdk::export_module!(Chat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_newest_last() {
        let ctx = Context::standalone("chat", std::env::temp_dir());
        let mut chat = Chat::default();
        for i in 0..HISTORY_LIMIT + 5 {
            chat.send(&ctx, "ada", &format!("m{i}")).unwrap();
        }
        let all = chat.history(None);
        assert_eq!(all.len(), HISTORY_LIMIT);
        assert_eq!(all[0].message, "m5");
        let last = chat.history(Some(2));
        assert_eq!(
            last.iter().map(|m| m.message.as_str()).collect::<Vec<_>>(),
            [
                format!("m{}", HISTORY_LIMIT + 3),
                format!("m{}", HISTORY_LIMIT + 4)
            ]
        );
        assert_eq!(chat.history(Some(0)), vec![]);
        assert!(chat.send(&ctx, "", "x").is_err());
    }

    #[test]
    fn event_data_is_timestamp_nick_message() {
        let e = ChatEvent::ChatMessage {
            timestamp: 1,
            nick: "n".into(),
            message: "m".into(),
        };
        assert_eq!(e.name(), "chatMessage");
        assert_eq!(
            e.into_data().unwrap(),
            vec![1.into(), "n".into(), "m".into()]
        );
    }
}
