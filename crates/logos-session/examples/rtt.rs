//! Round-trip benchmark: a `Session::call` against a raw Unix-socket ping-pong measured in the
//! same run (DESIGN §7: report ratios, not absolute times).
//!
//! Owns nothing the library uses; never run by `cargo test`. Run with
//! `cargo run --release -p logos-session --example rtt [ROUNDS]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::BoxFuture;
use logos_session::{Config, Fault, Handler, Refuse, Session};
use logos_wire::{Call, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, Value, Welcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

struct Echo;
impl Handler for Echo {
    fn call(&self, _: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        Box::pin(async move { Ok(call.args.into_iter().next().unwrap_or_default()) })
    }
}

async fn raw_rtt(rounds: u32) -> Duration {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while b.read_exact(&mut buf).await.is_ok() {
            if b.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 64];
    let start = Instant::now();
    for _ in 0..rounds {
        a.write_all(&buf).await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
    }
    let took = start.elapsed();
    drop(a);
    let _ = server.await;
    took / rounds
}

async fn session_rtt(rounds: u32) -> Duration {
    let (sa, sb) = UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let pending = logos_session::read_hello(sb, Config::default())
            .await
            .unwrap();
        let welcome = Welcome {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            identity: "echo".into(),
            attrs: Default::default(),
        };
        pending
            .accept("bench".into(), welcome, Arc::new(Echo))
            .await
            .unwrap()
    });
    let hello = Hello {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: "bench".into(),
        token: Default::default(),
        attrs: Default::default(),
    };
    let (client, _) = logos_session::connect(sa, hello, Arc::new(Refuse), Config::default())
        .await
        .unwrap();
    let _server = server.await.unwrap();
    let arg = Value::Bytes(vec![0; 32].into());
    let start = Instant::now();
    for _ in 0..rounds {
        client
            .call("echo", "echo", vec![arg.clone()], Duration::from_secs(5))
            .await
            .unwrap();
    }
    start.elapsed() / rounds
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    for (name, rt) in [
        (
            "current_thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "multi_thread(2)",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
    ] {
        rt.block_on(async {
            // Warm up both paths once.
            raw_rtt(rounds / 10 + 1).await;
            session_rtt(rounds / 10 + 1).await;
            let raw = raw_rtt(rounds).await;
            let session = session_rtt(rounds).await;
            println!(
                "{name:>16}: raw {raw:>9.2?}  session call {session:>9.2?}  ratio {:.2}",
                session.as_secs_f64() / raw.as_secs_f64()
            );
        });
    }
}
