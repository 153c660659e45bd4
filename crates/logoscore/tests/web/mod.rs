//! HTTP helpers for the tests of `logoscore run --http`: one blocking client per test binary
//! (no redirects followed, so a test sees them), the endpoint's base URL from the readiness
//! document, and a reader of Server-Sent Events with a deadline.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::sync::mpsc;
use std::time::Duration;

/// Deadline of one request.
pub const REQUEST: Duration = Duration::from_secs(60);

/// The client (reqwest's rustls needs a crypto provider: ring, as logos-pkg uses).
pub fn http() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client")
    })
}

/// `http://ADDR` of the daemon's endpoint, from its readiness document.
pub fn base(ready: &serde_json::Value) -> String {
    let addr = ready["http"]
        .as_str()
        .unwrap_or_else(|| panic!("readiness document has no http address: {ready}"));
    format!("http://{addr}")
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sse {
    pub event: String,
    pub data: String,
}

/// Events of an open SSE response, read by a thread so a test can wait with a deadline.
pub struct Events {
    rx: mpsc::Receiver<Sse>,
}

impl Events {
    pub fn open(resp: reqwest::blocking::Response) -> Events {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut event = String::new();
            let mut data = String::new();
            for line in BufReader::new(resp).lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    if !event.is_empty() || !data.is_empty() {
                        let e = Sse {
                            event: std::mem::take(&mut event),
                            data: std::mem::take(&mut data),
                        };
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        });
        Events { rx }
    }

    /// The next event that satisfies `want`, within `within`.
    #[track_caller]
    pub fn until(&self, within: Duration, mut want: impl FnMut(&Sse) -> bool) -> Sse {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) if want(&e) => return e,
                Ok(_) => {}
                Err(e) => panic!("no wanted event within {within:?}: {e}"),
            }
        }
    }
}
