//! [`LogTap`]: the live log tail per module, as a `tracing` layer.
//!
//! The core already logs every line a module writes (target `module`, field `module`) and
//! its own lines about a module (targets `logos_core::*` with a `module` field: state
//! changes, crashes). The tap keeps the last [`KEEP`] of them per module and passes each new
//! one to live followers through a bounded broadcast channel, so a follower that reads too
//! slowly loses lines (and is told) instead of making the core buffer them. Add it to the
//! subscriber the binary installs; it never writes anything anywhere itself.
//!
//! Module output is the operator's to read, never other modules': only authenticated
//! dashboard requests reach it.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept per module.
pub const KEEP: usize = 200;
/// Modules with a tail at most (names come from the core's own logging, so this is a net).
const MAX_MODULES: usize = 4096;
/// Lines in flight to live followers before the slowest misses some.
const LIVE: usize = 1024;
/// Longest line kept (the core already cuts module lines at 4 KiB).
const MAX_TEXT: usize = 4096;

/// One log line about a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// The module.
    pub module: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// `module` for the module's own output, else the core's log target.
    pub target: String,
    /// The text, with the event's other fields appended as `key=value`.
    pub text: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

#[derive(Debug)]
struct Shared {
    tails: Mutex<HashMap<String, VecDeque<Arc<LogLine>>>>,
    live: broadcast::Sender<Arc<LogLine>>,
}

/// The tap: a `tracing` layer and the handle that reads what it kept. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogTap {
    shared: Arc<Shared>,
}

impl Default for LogTap {
    fn default() -> Self {
        LogTap {
            shared: Arc::new(Shared {
                tails: Mutex::new(HashMap::new()),
                live: broadcast::channel(LIVE).0,
            }),
        }
    }
}

impl LogTap {
    /// A new, empty tap.
    pub fn new() -> LogTap {
        LogTap::default()
    }

    /// The kept lines of `module`, oldest first.
    pub fn tail(&self, module: &str) -> Vec<Arc<LogLine>> {
        self.shared
            .tails
            .lock()
            .get(module)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every new line from now on (of every module: filter by [`LogLine::module`]).
    pub fn follow(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.shared.live.subscribe()
    }

    fn keep(&self, line: LogLine) {
        let line = Arc::new(line);
        {
            let mut tails = self.shared.tails.lock();
            if tails.len() >= MAX_MODULES && !tails.contains_key(&line.module) {
                return;
            }
            let tail = tails.entry(line.module.clone()).or_default();
            if tail.len() == KEEP {
                tail.pop_front();
            }
            tail.push_back(Arc::clone(&line));
        }
        // No follower is not an error.
        let _ = self.shared.live.send(line);
    }
}

/// Collects an event's `module`, `message` and other fields.
#[derive(Default)]
struct Fields {
    module: Option<String>,
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "module" => self.module = Some(value.to_owned()),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "module" => self.module = Some(format!("{value:?}")),
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for LogTap {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let target = meta.target();
        if target != "module" && !target.starts_with("logos_core") {
            return;
        }
        if *meta.level() > Level::INFO && target != "module" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(module) = fields.module else { return };
        let mut text = fields.message;
        text.push_str(&fields.rest);
        if text.len() > MAX_TEXT {
            let mut cut = MAX_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        self.keep(LogLine {
            module,
            level: meta.level().to_string(),
            target: target.to_owned(),
            text,
            at_ms: crate::view::now_ms(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn lines_about_modules_are_kept_per_module_and_bounded() {
        let tap = LogTap::new();
        let mut live = tap.follow();
        let subscriber = tracing_subscriber::registry().with(tap.clone());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..(KEEP + 5) {
                tracing::info!(target: "module", module = "calc", "line {i}");
            }
            tracing::warn!(target: "logos_core::registry", module = "chat", from = "ready", "module state changed");
            tracing::info!(target: "elsewhere", module = "calc", "not about a module's log");
            tracing::info!(target: "module", "no module field");
        });
        let calc = tap.tail("calc");
        assert_eq!(calc.len(), KEEP);
        assert_eq!(calc[0].text, "line 5");
        let chat = tap.tail("chat");
        assert_eq!(chat.len(), 1);
        assert_eq!(chat[0].text, "module state changed from=ready");
        assert_eq!(chat[0].level, "WARN");
        assert_eq!(
            live.try_recv().map(|l| l.text.clone()).ok().as_deref(),
            Some("line 0")
        );
    }
}
