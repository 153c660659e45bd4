//! A session over TLS on TCP (`Transport::tls`, remote module links): the handshake, calls
//! both ways with arguments far larger than a socket buffer (so writes meet `WouldBlock` and
//! the records left behind must still reach the peer), an 8 MiB stream under credit, and
//! close_notify ending the peer's side cleanly. Real TCP on 127.0.0.1 and real `rustls` (the
//! configurations remote links use, a self-signed certificate made here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use futures::future::BoxFuture;
use logos_session::{ByteStream, Config, Fault, Handler, Session, Transport};
use logos_wire::{Call, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, Value, Welcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes every call; counts a stream's bytes and writes the count back.
struct Echo;

impl Handler for Echo {
    fn call(&self, _session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        Box::pin(async move { Ok(Value::List(call.args)) })
    }

    fn stream(&self, _session: &Session, _protocol: String, mut stream: ByteStream) {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 100_000];
            let mut total: u64 = 0;
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(_) => return,
                }
            }
            let _ = stream.write_all(&total.to_le_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// A TLS session pair over loopback TCP: (client, server).
async fn tls_pair() -> (Session, Session) {
    let made = rcgen::generate_simple_self_signed(vec!["logos-core".to_owned()]).unwrap();
    let cert = made.cert.der().to_vec();
    let key = made.signing_key.serialize_der();
    let pin = logos_remote::Pin::of_certificate(&cert);
    let acceptor =
        tokio_rustls::TlsAcceptor::from(logos_remote::tls::server_config(cert, key).unwrap());
    let connector =
        tokio_rustls::TlsConnector::from(logos_remote::tls::client_config(pin).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let (tcp, conn) = tls.into_inner();
        let pending = logos_session::read_hello_over(
            Transport::tls(tcp, conn),
            BytesMut::new(),
            Config::default(),
        )
        .await
        .unwrap();
        assert_eq!(pending.pid, None, "no peer credentials over TCP");
        let welcome = Welcome {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            identity: "server".into(),
            attrs: Default::default(),
        };
        pending
            .accept("client".into(), welcome, Arc::new(Echo))
            .await
            .unwrap()
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(logos_remote::tls::server_name(), tcp)
        .await
        .unwrap();
    let (tcp, conn) = tls.into_inner();
    let hello = Hello {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: "client".into(),
        token: Default::default(),
        attrs: Default::default(),
    };
    let (client, welcome) = logos_session::connect_over(
        Transport::tls(tcp, conn),
        BytesMut::new(),
        hello,
        Arc::new(Echo),
        Config::default(),
    )
    .await
    .unwrap();
    assert_eq!(welcome.identity, "server");
    (client, server.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_streams_and_close_work_over_tls() {
    exercise().await;
}

/// The same on one thread, where the reader, the writers and the flusher share it.
#[tokio::test]
async fn calls_streams_and_close_work_over_tls_on_one_thread() {
    exercise().await;
}

/// A thread polling for its answer (`PollingCaller`, the C API's caller) gets it over TLS
/// too: TLS reads ask the kernel each time, as Unix ones do, so the thread may read the
/// connection itself (`read_now`) or be handed the answer by the reader task; either way it
/// comes, and the connection keeps serving calls both ways after it.
#[test]
fn a_polling_caller_gets_its_answer_over_tls() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (client, server) = rt.block_on(tls_pair());
    let _context = rt.enter();
    let _polling = logos_session::PollingCaller::mark();
    for i in 0..100 {
        let mut call = std::pin::pin!(client.call(
            "server",
            "echo",
            vec![Value::from(i)],
            Duration::from_secs(30)
        ));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let answer = loop {
            if let std::task::Poll::Ready(answer) = call.as_mut().poll(&mut cx) {
                break answer;
            }
            assert!(std::time::Instant::now() < deadline, "no answer over TLS");
            logos_session::PollingCaller::read_now();
            std::thread::yield_now();
        };
        assert_eq!(answer.unwrap(), Value::List(vec![Value::from(i)]));
    }
    drop(_polling);
    let back = rt.block_on(server.call(
        "client",
        "echo",
        vec![Value::from(1)],
        Duration::from_secs(30),
    ));
    assert_eq!(back.unwrap(), Value::List(vec![Value::from(1)]));
}

async fn exercise() {
    let (client, server) = tls_pair().await;
    let t = Duration::from_secs(30);

    // Small and large calls, both directions, several in flight at once.
    let small = client.call("server", "echo", vec![Value::from(7)], t).await;
    assert_eq!(small.unwrap(), Value::List(vec![Value::from(7)]));
    let big = Value::Bytes((0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect());
    let calls = (0..4).map(|_| client.call("server", "echo", vec![big.clone()], t));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap(), Value::List(vec![big.clone()]));
    }
    let back = server.call("client", "echo", vec![big.clone()], t).await;
    assert_eq!(back.unwrap(), Value::List(vec![big.clone()]));
    // Shared frames need a Unix socket: over TLS neither side announces or sends them.
    assert_eq!(client.peer().attrs.get(logos_wire::SHARED_ATTR), None);
    assert_eq!(server.peer().attrs.get(logos_wire::SHARED_ATTR), None);
    assert_eq!(client.shared_frames(), (0, 0));
    assert_eq!(server.shared_frames(), (0, 0));

    // A stream far larger than the credit window.
    let mut stream = client.open_stream("count").unwrap();
    let chunk = vec![0x5a_u8; 64 * 1024];
    for _ in 0..128 {
        stream.write_all(&chunk).await.unwrap();
    }
    stream.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).await.unwrap();
    assert_eq!(u64::from_le_bytes(count), 8 * 1024 * 1024);

    // Closing one side ends the other promptly (close_notify), failing nothing silently.
    client.close(Fault::new(logos_wire::ErrorCode::Unavailable, "done"));
    let reason = tokio::time::timeout(t, server.closed()).await.unwrap();
    assert!(
        reason.contains("done") || reason.contains("closed"),
        "{reason}"
    );
    let after = server.call("client", "echo", vec![], t).await;
    assert_eq!(after.unwrap_err().code, logos_wire::ErrorCode::Unavailable);
}
