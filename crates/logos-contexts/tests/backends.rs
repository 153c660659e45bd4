//! The storage backends under attack and against a real S3-compatible server.
//!
//! File system (`cap-std`): a symlink planted where a value file goes (absolute, and
//! relative into another context), a hard link to another context's value file, and a
//! context directory swapped for a symlink to another context's while the worker writes,
//! then after a restart. Each must fail closed (an error, never the other file's content)
//! and leave the other context's files untouched.
//!
//! S3 (`object_store`): `moto[server]` from PyPI, installed by this test into a venv under
//! `target/` (`logos_testkit::python_venv`), serving on 127.0.0.1: round trips, a prefix per
//! context (two contexts with the same keys never see each other's), quota, deletion.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_contexts::storage::{fs::FsBackend, s3};
use logos_contexts::{Config, ContextId, Keypair, ScriptRef, Statement, Worker, sha256};
use logos_wire::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Peer, envelope};

fn value_file(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("v-{}", hex(&sha256(key.as_bytes()))))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(w: &Worker, who: &Peer, script: &str) -> Result<Value, logos_contexts::Error> {
    w.submit(&envelope(who, who, ScriptRef::Inline(script.into()), Value::Null).to_bytes())
        .map(|s| s.value)
}

fn fs_worker(root: &Path) -> Worker {
    Worker::builder(root)
        .backend(Arc::new(FsBackend::new(&root.join("data")).unwrap()))
        .open()
        .unwrap()
}

#[test]
fn planted_symlinks_and_hard_links_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let (alice, carol) = (Peer::new(1), Peer::new(3));
    let w = fs_worker(&root);
    w.create_context(alice.id(), None).unwrap();
    w.create_context(carol.id(), None).unwrap();
    run(&w, &carol, "put(\"secret\", \"carol's\")").unwrap();
    let a_dir = root.join("data").join(alice.ctx().to_string());
    let c_dir = root.join("data").join(carol.ctx().to_string());
    let carol_file = value_file(&c_dir, "secret");
    let carol_bytes = std::fs::read(&carol_file).unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"\x00\x01xoutside").unwrap();

    // Absolute and relative symlinks where Alice's values go.
    std::os::unix::fs::symlink(&outside, value_file(&a_dir, "abs")).unwrap();
    std::os::unix::fs::symlink(
        format!(
            "../{}/{}",
            carol.ctx(),
            carol_file.file_name().unwrap().to_str().unwrap()
        ),
        value_file(&a_dir, "rel"),
    )
    .unwrap();
    for key in ["abs", "rel"] {
        let e = run(&w, &alice, &format!("get(\"{key}\")")).unwrap_err();
        assert_eq!(e.code(), "storage", "{key}: {e}");
        // Writing replaces the link itself.
        run(&w, &alice, &format!("put(\"{key}\", 1)")).unwrap();
        assert!(
            !std::fs::symlink_metadata(value_file(&a_dir, key))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            run(&w, &alice, &format!("get(\"{key}\")")).unwrap(),
            Value::Int(1)
        );
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"\x00\x01xoutside");
    assert_eq!(std::fs::read(&carol_file).unwrap(), carol_bytes);

    // A hard link to Carol's value, under the name of Alice's key "secret".
    std::fs::hard_link(&carol_file, value_file(&a_dir, "secret")).unwrap();
    let e = run(&w, &alice, "get(\"secret\")").unwrap_err();
    assert!(e.to_string().contains("links"), "{e}");
    run(&w, &alice, "put(\"secret\", \"alice's\")").unwrap();
    assert_eq!(std::fs::read(&carol_file).unwrap(), carol_bytes);
    assert_eq!(
        run(&w, &carol, "get(\"secret\")").unwrap(),
        Value::Text("carol's".into())
    );
    // Listing shows none of the planted names as keys of another context.
    let keys = run(&w, &alice, "list(\"\")").unwrap();
    assert_eq!(
        keys,
        Value::List(
            ["abs", "rel", "secret"]
                .iter()
                .map(|k| Value::Text((*k).into()))
                .collect()
        )
    );
}

#[test]
fn a_directory_swapped_for_a_symlink_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let (alice, carol) = (Peer::new(1), Peer::new(3));
    let w = fs_worker(&root);
    w.create_context(alice.id(), None).unwrap();
    w.create_context(carol.id(), None).unwrap();
    run(&w, &carol, "put(\"c\", 1)").unwrap();
    let data = root.join("data");
    let a_dir = data.join(alice.ctx().to_string());
    let moved = data.join("moved-away");
    // A writer keeps writing while the directory is swapped under it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = Arc::new(w);
    let writer = {
        let (w, alice, stop, written) = (w.clone(), alice.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = written.load(std::sync::atomic::Ordering::Relaxed);
                run(&w, &alice, &format!("put(\"k{}\", {n})", n % 8)).unwrap();
                written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while written.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the writer stalled");
            std::thread::yield_now();
        }
    };
    wait_for(5);
    std::fs::rename(&a_dir, &moved).unwrap();
    std::os::unix::fs::symlink(carol.ctx().to_string(), &a_dir).unwrap();
    // The writer goes on with the path swapped, then stops.
    wait_for(written.load(std::sync::atomic::Ordering::Relaxed) + 20);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // Everything Alice wrote is in her (moved) directory, nothing in Carol's.
    let carol_dir = data.join(carol.ctx().to_string());
    assert_eq!(
        std::fs::read_dir(&carol_dir).unwrap().count(),
        1,
        "Carol's directory gained files"
    );
    assert!(std::fs::read_dir(&moved).unwrap().count() >= 1);
    // After a restart the swapped-in symlink is refused: Alice's context stays out of
    // service, Carol's works.
    drop(w);
    let w = fs_worker(&root);
    assert_eq!(run(&w, &alice, "1").unwrap_err().code(), "unknown_context");
    assert_eq!(run(&w, &carol, "get(\"c\")").unwrap(), Value::Int(1));
}

/// A moto S3 server on 127.0.0.1, killed on drop; its log lives (and goes) with `dir`.
struct Moto {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Moto {
        let req = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto-requirements.txt");
        let venv = logos_testkit::python_venv(&req);
        // A free port: bind, note, release (moto binds it again at once).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let child = std::process::Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto from {}: {e}", venv.display()));
        let m = Moto { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not listen on 127.0.0.1:{port} within 60 s; its log:\n{}",
                std::fs::read_to_string(m.dir.path().join("moto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// Creates `bucket` with a plain HTTP PUT (moto does not check signatures).
    fn bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{answer}"
        );
    }
}

#[test]
fn s3_backend_against_moto() {
    let moto = Moto::start();
    moto.bucket("contexts");
    let dir = tempfile::tempdir().unwrap();
    let cfg = s3::S3Config::new(
        &format!("http://127.0.0.1:{}", moto.port),
        "contexts",
        "worker1",
    )
    .with_credentials("test", "test");
    let mut config = Config::new();
    config.default_quota = 2048;
    let w = Worker::builder(dir.path())
        .config(config)
        .backend(Arc::new(s3::S3Backend::new(&cfg).unwrap()))
        .open()
        .unwrap();
    let (alice, carol) = (Peer::new(1), Peer::new(3));
    w.create_context(alice.id(), None).unwrap();
    w.create_context(carol.id(), None).unwrap();
    run(&w, &alice, "put(\"shared/name\", \"alice\"); put(\"a\", 1)").unwrap();
    run(&w, &carol, "put(\"shared/name\", \"carol\")").unwrap();
    assert_eq!(
        run(&w, &alice, "get(\"shared/name\")").unwrap(),
        Value::Text("alice".into())
    );
    assert_eq!(
        run(&w, &carol, "get(\"shared/name\")").unwrap(),
        Value::Text("carol".into())
    );
    assert_eq!(
        run(&w, &alice, "list(\"\")").unwrap(),
        Value::List(vec![
            Value::Text("a".into()),
            Value::Text("shared/name".into())
        ])
    );
    assert_eq!(
        run(&w, &carol, "list(\"\")").unwrap(),
        Value::List(vec![Value::Text("shared/name".into())])
    );
    assert_eq!(run(&w, &alice, "delete(\"a\")").unwrap(), Value::Bool(true));
    assert_eq!(run(&w, &alice, "get(\"a\")").unwrap(), Value::Null);
    // Quota, counted from the bucket again after a restart.
    let e = run(
        &w,
        &alice,
        &format!("put(\"big\", \"{}\")", "x".repeat(3000)),
    )
    .unwrap_err();
    assert_eq!(e.code(), "quota_exceeded");
    drop(w);
    let w = Worker::builder(dir.path())
        .backend(Arc::new(s3::S3Backend::new(&cfg).unwrap()))
        .open()
        .unwrap();
    let used = w.info(alice.ctx()).unwrap().used;
    assert!(used > 0 && used < 100, "{used}");
    // Deleting Alice's context removes her prefix, not Carol's.
    let sig = alice.key.sign_statement(&Statement::Delete {
        context: alice.ctx(),
        revision: 1,
    });
    w.delete_context(alice.ctx(), &sig).unwrap();
    assert_eq!(
        run(&w, &carol, "get(\"shared/name\")").unwrap(),
        Value::Text("carol".into())
    );
    let _ = (Keypair::from_seed(&[0; 32]), ContextId::of(alice.id()));
}
