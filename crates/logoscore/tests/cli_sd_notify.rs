//! `logoscore run` under systemd `Type=notify`: `READY=1` once the boot modules are loaded,
//! `WATCHDOG=1` at half of `$WATCHDOG_USEC`, `STOPPING=1` on SIGTERM; read from a real
//! notification socket (a Unix datagram socket, as systemd's), no systemd needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::{Daemon, EXIT, READY, World};

/// The next datagram containing `needle`, within `within`.
#[track_caller]
fn expect(sock: &UnixDatagram, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {needle:?} notification within {within:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        let Ok(n) = sock.recv(&mut buf) else {
            panic!("no {needle:?} notification within {within:?}");
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.lines().any(|l| l == needle) {
            return msg;
        }
    }
}

#[test]
fn ready_watchdog_and_stopping_reach_the_service_manager() {
    let w = World::new();
    w.stage("calc");
    let path = w.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut cmd = w.command();
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .arg("--json")
        .arg("run")
        .arg("-m")
        .arg(&w.modules)
        .args(["--load", "calc"]);
    let mut d = Daemon::spawn(cmd);
    let ready = expect(&sock, "READY=1", READY);
    assert!(ready.contains("STATUS=1 modules loaded"), "{ready}");
    // READY comes after the core is up: the readiness document is there too.
    d.ready = d.wait_ready();
    assert_eq!(d.loaded(), ["calc"]);
    for _ in 0..3 {
        expect(&sock, "WATCHDOG=1", Duration::from_secs(30));
    }
    d.proc.signal(rustix::process::Signal::TERM);
    expect(&sock, "STOPPING=1", EXIT);
    assert!(d.wait_exit(EXIT).success());
}
