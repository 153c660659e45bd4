//! Captures a module's stdout and stderr line by line into the core's log.
//!
//! Lines are tagged with the module name and capped in length, so a module that writes a
//! gigabyte without a newline costs the core one capped buffer, not a gigabyte. Stderr lines are
//! also kept in the module's [`StderrTail`] for crash reports. Never blocks the module: the
//! pipe is drained as fast as it fills.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest line forwarded; the rest of a longer line is cut and marked.
pub const MAX_LINE: usize = 4096;

/// Last lines a module wrote to stderr, bounded.
#[derive(Debug, Clone, Default)]
pub(crate) struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    /// Lines kept.
    pub const KEEP: usize = 20;

    /// Records one line, forgetting the oldest beyond [`Self::KEEP`].
    pub fn push(&self, line: String) {
        let mut l = self.lines.lock();
        if l.len() == Self::KEEP {
            l.pop_front();
        }
        l.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().iter().cloned().collect()
    }
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pipe {
    Stdout,
    Stderr,
}

/// Reads `pipe` to its end, logging each line as `module`'s and keeping stderr in `tail`.
pub(crate) async fn forward<R: AsyncRead + Unpin>(
    module: String,
    which: Pipe,
    pipe: R,
    tail: StderrTail,
) {
    let mut reader = BufReader::with_capacity(8192, pipe);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut cut = false;
    loop {
        let (consumed, done) = match reader.fill_buf().await {
            Ok([]) | Err(_) => {
                if !line.is_empty() {
                    emit(&module, which, &line, cut, &tail);
                }
                return;
            }
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    take(&mut line, &buf[..nl], &mut cut);
                    (nl + 1, true)
                }
                None => {
                    take(&mut line, buf, &mut cut);
                    (buf.len(), false)
                }
            },
        };
        reader.consume(consumed);
        if done {
            emit(&module, which, &line, cut, &tail);
            line.clear();
            cut = false;
        }
    }
}

fn take(line: &mut Vec<u8>, bytes: &[u8], cut: &mut bool) {
    let room = MAX_LINE.saturating_sub(line.len());
    if bytes.len() > room {
        *cut = true;
    }
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn emit(module: &str, which: Pipe, line: &[u8], cut: bool, tail: &StderrTail) {
    let mut text = String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_owned();
    if cut {
        text.push_str(" …[line cut]");
    }
    match which {
        Pipe::Stdout => tracing::info!(target: "module", module, "{text}"),
        Pipe::Stderr => {
            // A line from the SDK's logger starts with its level: log it at that level.
            let (level, rest) = split_level(&text);
            match level {
                Some(tracing::Level::ERROR) => tracing::error!(target: "module", module, "{rest}"),
                Some(tracing::Level::WARN) => tracing::warn!(target: "module", module, "{rest}"),
                Some(tracing::Level::DEBUG) => tracing::debug!(target: "module", module, "{rest}"),
                Some(tracing::Level::TRACE) => tracing::trace!(target: "module", module, "{rest}"),
                Some(_) => tracing::info!(target: "module", module, "{rest}"),
                None => tracing::info!(target: "module", module, stream = "stderr", "{rest}"),
            }
            tail.push(text);
        }
    }
}

/// `"  WARN x: y"` → `(Some(WARN), "x: y")`; a line without a leading level is kept whole.
fn split_level(line: &str) -> (Option<tracing::Level>, &str) {
    let trimmed = line.trim_start();
    for (word, level) in [
        ("ERROR ", tracing::Level::ERROR),
        ("WARN ", tracing::Level::WARN),
        ("INFO ", tracing::Level::INFO),
        ("DEBUG ", tracing::Level::DEBUG),
        ("TRACE ", tracing::Level::TRACE),
    ] {
        if let Some(rest) = trimmed.strip_prefix(word) {
            return (Some(level), rest.trim_start());
        }
    }
    (None, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_tail_is_bounded() {
        let mut input = Vec::new();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE * 3));
        input.push(b'\n');
        for i in 0..30 {
            input.extend(format!("line {i}\n").bytes());
        }
        input.extend(b"no newline at end");
        let tail = StderrTail::default();
        forward("m".into(), Pipe::Stderr, &input[..], tail.clone()).await;
        let lines = tail.snapshot();
        assert_eq!(lines.len(), StderrTail::KEEP);
        assert_eq!(lines.last().map(String::as_str), Some("no newline at end"));
        assert_eq!(lines[0], "line 11");
    }

    #[test]
    fn a_leading_level_is_recognised() {
        assert_eq!(
            split_level(" WARN logos_sdk: slow"),
            (Some(tracing::Level::WARN), "logos_sdk: slow")
        );
        assert_eq!(split_level("plain text"), (None, "plain text"));
        assert_eq!(split_level("INFORMATION"), (None, "INFORMATION"));
    }

    #[tokio::test]
    async fn a_cut_line_is_marked() {
        let mut input = vec![b'y'; MAX_LINE + 10];
        input.push(b'\n');
        let tail = StderrTail::default();
        forward("m".into(), Pipe::Stderr, &input[..], tail.clone()).await;
        let lines = tail.snapshot();
        assert!(lines[0].ends_with("[line cut]"));
        assert!(lines[0].len() < MAX_LINE + 20);
    }
}
