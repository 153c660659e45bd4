//! The registry over real HTTP on 127.0.0.1: publishing (signed, authenticated, never
//! overwritten), downloads counted under 200 concurrent clients, signed reviews, adoption
//! pings. The server is the one `logoscore registry serve` runs; the client is the one the
//! CLI uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use logos_pkg::KeyPair;
use logos_pkg::archive;
use logos_pkg::client::Client;
use logos_pkg::index::{Ping, Review};
use logos_pkg::manifest::Signer;
use logos_pkg::server::Registry;
use logos_pkg::sign::{MANIFEST_DOMAIN, REVIEW_DOMAIN};
use std::net::SocketAddr;
use std::path::Path;

fn package(dir: &Path, version: &str, key: Option<&KeyPair>) -> Vec<u8> {
    let d = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("metadata.json"),
        format!(r#"{{"name":"calc","version":"{version}","description":"adds","main":"run.sh"}}"#),
    )
    .unwrap();
    std::fs::write(d.join("run.sh"), format!("#!/bin/sh\n# {version}\n")).unwrap();
    let signer = key.map(|k| Signer {
        name: k.name.clone(),
        key: k.public().key,
    });
    let c = archive::collect(&d, &[], signer).unwrap();
    let sig = key.map(|k| k.sign(MANIFEST_DOMAIN, &c.manifest.to_bytes()));
    archive::write(&c.manifest, sig.as_deref(), &c.sources).unwrap()
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<logos_pkg::Result<()>>,
}

async fn serve(dir: &Path) -> Server {
    let reg = Registry::open(dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(reg.serve(listener, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_download_review_ping() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = serve(&tmp.path().join("reg")).await;
    let client = Client::new(&srv.url()).unwrap();
    let alice = KeyPair::generate("alice").unwrap();
    let mallory = KeyPair::generate("mallory").unwrap();

    let v1 = package(tmp.path(), "1.0.0", Some(&alice));
    let p = client.publish(v1.clone(), &alice).await.unwrap();
    assert_eq!(p.url, "modules/calc/calc-1.0.0.lgx");

    // Never overwritten, not even with the same bytes.
    let e = client
        .publish(v1.clone(), &alice)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("409") && e.contains("never overwritten"), "{e}");
    // Unsigned.
    let unsigned = package(tmp.path(), "1.1.0", None);
    let e = client
        .publish(unsigned, &alice)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not signed"), "{e}");
    // Signed by someone else than the publishing key.
    let e = client
        .publish(package(tmp.path(), "1.2.0", Some(&alice)), &mallory)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not by the publishing key"), "{e}");
    // Another key cannot take over the name.
    let e = client
        .publish(package(tmp.path(), "1.3.0", Some(&mallory)), &mallory)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("owned by another publisher"), "{e}");
    // A forged publisher signature.
    let forged = reqwest::Client::new()
        .post(format!("{}/api/v1/publish", srv.url()))
        .header("x-logos-key", alice.public().key)
        .header("x-logos-time", "0")
        .header("x-logos-signature", "00".repeat(64))
        .body(package(tmp.path(), "1.4.0", Some(&alice)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    client
        .publish(package(tmp.path(), "2.0.0", Some(&alice)), &alice)
        .await
        .unwrap();

    // 200 concurrent downloads, each checked against the index, all counted.
    let idx = client.index("calc").await.unwrap().unwrap();
    assert_eq!(idx.versions.len(), 2);
    let rel = idx.versions[0].clone();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (c, r) = (client.clone(), rel.clone());
        tasks.push(tokio::spawn(async move {
            c.download("calc", &r, false).await.map(|b| b.len())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap() as u64, rel.size);
    }
    let details: serde_json::Value = reqwest::get(format!("{}/api/v1/modules/calc", srv.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(details["downloads"], 200, "{details}");
    assert_eq!(details["counts"]["downloads"]["1.0.0"], 200);

    // A signed review; a tampered one is refused.
    let mut r = Review {
        module: "calc".into(),
        version: semver::Version::new(1, 0, 0),
        stars: 4,
        text: "solid".into(),
        reviewer: mallory.public(),
        time: "2026-01-01T00:00:00Z".into(),
        signature: String::new(),
    };
    r.signature = hex::encode(mallory.sign(REVIEW_DOMAIN, &r.signed_bytes()));
    client.review(&r).await.unwrap();
    let mut bad = r.clone();
    bad.stars = 5;
    let e = client.review(&bad).await.unwrap_err().to_string();
    assert!(e.contains("does not verify"), "{e}");

    // Two installs ping; one pings twice: two active installs.
    for id in ["a".repeat(32), "b".repeat(32), "a".repeat(32)] {
        client
            .ping(&Ping {
                install_id: id,
                modules: vec!["calc@1.0.0".into()],
            })
            .await
            .unwrap();
    }
    let cat = client.catalog().await.unwrap();
    let calc = &cat.modules[0];
    assert_eq!(
        (calc.downloads, calc.active_installs, calc.reviews),
        (200, 2, 1),
        "{calc:?}"
    );
    assert_eq!(calc.latest, semver::Version::new(2, 0, 0));
    let page = reqwest::get(srv.url()).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("data-name=\"calc\"") && page.contains("<td class=\"downloads\">200</td>"),
        "{page}"
    );

    srv.stop().await;
    // Counts and pings survive a restart (flushed at shutdown), and no address was stored.
    let pings = std::fs::read_to_string(tmp.path().join("reg/pings.json")).unwrap();
    assert!(!pings.contains("127.0.0.1"), "{pings}");
    let srv = serve(&tmp.path().join("reg")).await;
    let cat = Client::new(&srv.url()).unwrap().catalog().await.unwrap();
    assert_eq!(
        (cat.modules[0].downloads, cat.modules[0].active_installs),
        (200, 2)
    );
    srv.stop().await;
}
