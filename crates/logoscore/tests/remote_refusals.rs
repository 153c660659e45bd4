//! Issue 11: what the remote module listener refuses, each with its reason in the core's log,
//! while local modules and a connected remote one keep answering. Real cores, real
//! `logos_host --remote`, and raw clients written here with `rustls` (a TLS 1.2-only client,
//! a slowloris, garbage, plain TCP, links presenting the wrong credential or claiming another
//! module), all on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod remote_support;
mod support;

use logos_remote::{Credential, DialError, Purpose};
use logos_wire::{ErrorCode, Hello, Message, PROTOCOL_MAJOR, PROTOCOL_MINOR};
use remote_support::{CONNECT, core, grant, listen, log, remote, spawn_remote, wait_state};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use support::{EXIT, World, wait_for};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn read_credential(path: &Path) -> Credential {
    Credential::parse(&std::fs::read_to_string(path).expect("credential"), path)
        .expect("a credential")
}

/// Waits until the core's log holds `needle`.
#[track_caller]
fn logged(d: &support::Daemon, needle: &str) {
    d.proc.wait_stderr(needle, CONNECT);
}

#[test]
fn issue_11_wrong_pin_another_modules_credential_revoked_and_expired_are_refused() {
    let w = World::new();
    let d = core(&w, "", &[]);
    let other = World::new();
    let d2 = core(&other, "", &[]);

    // Wrong pin: a credential of another core (another key) pointed at this one.
    let foreign = grant(&other, "calc", &[]);
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&foreign).expect("read")).expect("json");
    doc["core"] = serde_json::json!([listen(&d)]);
    std::fs::write(&foreign, doc.to_string()).expect("rewrite");
    let mut calc = spawn_remote("calc", &foreign);
    let status = calc
        .proc
        .wait(EXIT)
        .expect("a remote with a wrong pin gives up");
    assert_eq!(status.code(), Some(1));
    let err = calc.proc.stderr_text();
    assert!(err.contains("the credential pins"), "{err}");
    logged(&d, "the peer aborted the TLS handshake");
    drop(d2);

    // Another module's credential, presented in that module's name.
    let calc_cred = grant(&w, "calc", &[]);
    let mut stolen = read_credential(&calc_cred);
    stolen.module = "chat".to_owned();
    let refused = runtime().block_on(logos_remote::dial(
        &stolen,
        &Purpose::Control,
        Duration::from_secs(10),
    ));
    match refused {
        Err(DialError::Refused { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Unauthorized);
            assert!(
                message.contains("credential of module \"calc\""),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {:?}", other.map(|d| d.addr)),
    }
    logged(
        &d,
        "presented the credential of module \"calc\" as module \"chat\"",
    );
    // logos_host refuses a library that is not the credential's module before it connects.
    let mut wrong = spawn_remote("chat", &calc_cred);
    let status = wrong.proc.wait(EXIT).expect("refused");
    assert_eq!(status.code(), Some(3), "{}", wrong.proc.stderr_text());
    assert!(
        wrong
            .proc
            .stderr_text()
            .contains("says its name is \"chat\""),
        "{}",
        wrong.proc.stderr_text()
    );

    // Revoked before it was ever used.
    let relay_cred = grant(&w, "relay", &["--allow", "probe"]);
    w.cli(&["remote", "revoke", "relay"]).ok();
    let mut relay = spawn_remote("relay", &relay_cred);
    assert_eq!(relay.proc.wait(EXIT).and_then(|s| s.code()), Some(1));
    assert!(relay.proc.stderr_text().contains("was revoked"));
    logged(&d, "the credential of module \"relay\" was revoked at");

    // Expiry: the link opened before it is closed at expiry, and the credential refused after.
    let kv_cred = grant(&w, "kv", &["--expires", "3s"]);
    let expires = read_credential(&kv_cred)
        .expires_at
        .expect("an expiry in the credential");
    let at = humantime::parse_rfc3339(&expires).expect("RFC 3339");
    let mut kv = spawn_remote("kv", &kv_cred);
    kv.wait_connected(1);
    logged(
        &d,
        "the remote module's credential expired; closing its link",
    );
    assert!(SystemTime::now() >= at, "closed before its expiry");
    assert_eq!(kv.proc.wait(EXIT).and_then(|s| s.code()), Some(1));
    assert!(kv.proc.stderr_text().contains("expired at"));
    logged(&d, "the credential of module \"kv\" expired at");
    let listed = w.cli_json(&["remote", "list"]);
    assert!(listed.to_string().contains("\"kv\""), "{listed}");
}

/// Accepts any certificate: the TLS 1.2 client below must get as far as the core lets it.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Reads until the peer closes (or `within` passes); whether it closed.
fn closed_by_peer(s: &mut TcpStream, within: Duration) -> bool {
    let _ = s.set_read_timeout(Some(within));
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn issue_11_plain_tcp_tls_1_2_a_slowloris_and_1000_garbage_connections_leave_local_modules_answering()
 {
    let w = World::new();
    w.stage_all(&["calc"]);
    let d = core(&w, "", &["calc"]);
    let addr = listen(&d);
    // A remote module already connected must not notice the abuse either.
    let _kv = remote(&w, "kv", &[]);
    w.cli(&["call", "kv", "set", "k", "1"]).ok();

    // Plain TCP: the logos protocol without TLS.
    let mut plain = TcpStream::connect(&addr).expect("connect");
    let mut frame = Vec::new();
    logos_wire::encode_frame(
        &Message::Hello(Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            identity: "calc".into(),
            token: Default::default(),
            attrs: Default::default(),
        }),
        &mut frame,
    )
    .expect("encode");
    plain.write_all(&frame).expect("write");
    assert!(closed_by_peer(&mut plain, CONNECT));
    logged(&d, "it looks like the logos protocol in plain TCP");

    // A TLS 1.2-only client.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("TLS 1.2")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    let tls12 = runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(logos_remote::tls::server_name(), tcp)
            .await
    });
    assert!(tls12.is_err(), "a TLS 1.2 client got a session");
    logged(&d, "this listener speaks TLS 1.3 only");

    // A slowloris: a TLS record header, then nothing. The core closes it after 5 s.
    let started = Instant::now();
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(&[0x16, 0x03]).expect("write");
    assert!(
        closed_by_peer(&mut slow, CONNECT),
        "the slowloris was never closed"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed before its deadline"
    );
    logged(&d, "did not complete within 5s");

    // 1000 garbage connections, 20 at a time, while calc keeps answering.
    let before = log(&d).matches("remote listener: refused").count();
    let flood = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let workers: Vec<_> = (0..20)
                .map(|t| {
                    let addr = addr.clone();
                    std::thread::spawn(move || {
                        for i in 0..50u32 {
                            let Ok(mut s) = TcpStream::connect(&addr) else {
                                continue;
                            };
                            let junk: Vec<u8> = (0..64u32)
                                .map(|k| (k.wrapping_mul(31) ^ i ^ t) as u8 | 0x80)
                                .collect();
                            let _ = s.write_all(&junk);
                            closed_by_peer(&mut s, Duration::from_secs(30));
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.join();
            }
        }
    });
    let mut answered = 0;
    while !flood.is_finished() {
        assert_eq!(w.cli_json(&["call", "calc", "add", "2", "3"])["result"], 5);
        assert_eq!(w.cli_json(&["call", "kv", "get", "k"])["result"], 1);
        answered += 1;
    }
    flood.join().expect("the flood");
    assert!(answered >= 1);
    wait_for("1000 refusals in the log", CONNECT, || {
        log(&d).matches("remote listener: refused").count() >= before + 1000
    });
    assert!(log(&d).contains("garbage"), "the reason is logged");
    assert_eq!(w.cli_json(&["call", "calc", "add", "1", "1"])["result"], 2);
    assert_eq!(remote_support::record(&w, "kv")["state"], "ready");
}

#[test]
fn issue_11_the_per_peer_limit_refuses_more_connections_from_one_address() {
    let w = World::new();
    w.stage_all(&["calc"]);
    let d = core(&w, "[remote]\nmax_per_peer = 3\n", &["calc"]);
    let addr = listen(&d);
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    // Accepted in order: the three idle ones hold their places (5 s) when this one comes.
    let mut fourth = TcpStream::connect(&addr).expect("connect");
    assert!(
        closed_by_peer(&mut fourth, Duration::from_secs(3)),
        "the fourth was kept"
    );
    logged(&d, "connections open already (the per-peer limit)");
    assert_eq!(w.cli_json(&["call", "calc", "add", "2", "2"])["result"], 4);
    drop(idle);
}

#[test]
fn issue_11_a_remote_module_cannot_act_as_another_module_or_as_the_operator() {
    let w = World::new();
    w.stage_all(&["relay", "chat"]);
    let d = core(&w, "", &["relay", "chat"]);
    let _probe = remote(&w, "probe", &["--allow", "relay", "--allow", "chat"]);
    let probe_cred = read_credential(
        &std::fs::read_dir(w.dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("probe-"))
            .expect("probe's credential"),
    );
    let rt = runtime();

    // A control link authenticated as probe whose module hello says relay.
    let refusal = rt.block_on(async {
        let dialed = logos_remote::dial(&probe_cred, &Purpose::Control, Duration::from_secs(10))
            .await
            .expect("the link itself is probe's");
        let unix = logos_remote::bridge(dialed.stream, dialed.leftover).expect("bridge");
        let hello = Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            identity: "relay".into(),
            token: Default::default(),
            attrs: [("version".to_owned(), logos_wire::Value::from("1.0.0"))]
                .into_iter()
                .collect(),
        };
        logos_session::connect(
            unix,
            hello,
            Arc::new(logos_session::Refuse),
            Default::default(),
        )
        .await
        .err()
    });
    let refusal = refusal.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refusal.contains("authenticated as module \"probe\""),
        "{refusal}"
    );

    // A call link authenticated as probe whose peer hello claims to be chat.
    let refusal = rt.block_on(async {
        let purpose = Purpose::Call {
            target: "relay".into(),
        };
        let dialed = logos_remote::dial(&probe_cred, &purpose, Duration::from_secs(10))
            .await
            .expect("probe may open a call link");
        let unix = logos_remote::bridge(dialed.stream, dialed.leftover).expect("bridge");
        let hello = Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            identity: "chat".into(),
            token: bytes::Bytes::from(vec![0u8; 32]),
            attrs: Default::default(),
        };
        logos_session::connect(
            unix,
            hello,
            Arc::new(logos_session::Refuse),
            Default::default(),
        )
        .await
        .err()
    });
    let refusal = refusal.map(|e| e.to_string()).unwrap_or_default();
    assert!(refusal.contains("cannot act as another"), "{refusal}");
    logged(&d, "a remote module cannot act as another");

    // Nor ask for a token in another module's name, manage credentials or change what runs.
    let out = w.cli(&["call", "probe", "requestTokenAs", "relay", "chat"]);
    out.expect_code(3);
    let out = w.cli(&["call", "probe", "invoke", "core", "remoteGrant", "[\"x\"]"]);
    out.expect_code(3);
    assert!(out.stderr.contains("operators only"), "{}", out.stderr);
    let out = w.cli(&[
        "call",
        "probe",
        "invoke",
        "core",
        "unloadPlugin",
        "[\"relay\"]",
    ]);
    out.expect_code(3);
    assert_eq!(
        w.cli_json(&["call", "relay", "forward", "probe", "echo", "[1]"])["result"],
        1,
        "the real probe still works"
    );
    wait_state(&w, "probe", "ready");
}

#[test]
fn issue_18_method_grants_hold_on_relayed_connections_both_ways() {
    let w = World::new();
    w.stage_all(&["relay", "chat"]);
    let d = core(
        &w,
        "[[deny]]\ncaller = \"probe\"\ntarget = \"chat\"\nmethods = [\"send\"]\n\n\
         [[deny]]\ncaller = \"relay\"\ntarget = \"probe\"\nmethods = [\"pid\"]\n",
        &["relay", "chat"],
    );
    let _probe = remote(&w, "probe", &["--allow", "relay", "--allow", "chat"]);

    // A remote caller, relayed by the core to a local target: the target enforces the grant.
    assert!(
        w.cli_json(&["call", "probe", "invoke", "chat", "history", "[5]"])["result"].is_array(),
        "an allowed method of chat answers the remote probe"
    );
    let out = w.cli(&[
        "call",
        "probe",
        "invoke",
        "chat",
        "send",
        "[\"probe\", \"hi\"]",
    ]);
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stderr.contains("denied by configuration"),
        "{}",
        out.stderr
    );
    assert!(
        w.cli_json(&["call", "chat", "history", "5"])["result"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "the denied send never ran"
    );

    // A local caller, relayed by the core to the remote target: the remote SDK enforces it.
    assert_eq!(
        w.cli_json(&["call", "relay", "forward", "probe", "echo", "[7]"])["result"],
        7
    );
    let out = w.cli(&["call", "relay", "forward", "probe", "pid", "[]"]);
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stderr.contains("denied by configuration"),
        "{}",
        out.stderr
    );
    // Both refusals reach the core (counted there), the remote one over its control link.
    logged(&d, "chat refused probe's call to chat.send");
    logged(&d, "probe refused relay's call to probe.pid");
}
