//! The registry's own page, rendered by a real browser: headless Chromium loads it from the
//! registry on 127.0.0.1, its DOM must list every module with its quality and adoption, and
//! the screenshot (saved as `target/<profile>/registry-page.png`) must show each quality
//! badge in its colour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use logos_pkg::KeyPair;
use logos_pkg::archive;
use logos_pkg::client::Client;
use logos_pkg::index::Ping;
use logos_pkg::manifest::Signer;
use logos_pkg::page::{FAIL_RGB, PASS_RGB, WARN_RGB};
use logos_pkg::quality::{Item, Report, Status};
use logos_pkg::server::Registry;
use logos_pkg::sign::MANIFEST_DOMAIN;
use std::path::Path;

fn package(dir: &Path, name: &str, status: Status, key: &KeyPair) -> Vec<u8> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("metadata.json"),
        format!(r#"{{"name":"{name}","version":"1.0.0","description":"{name} <b>module</b>","main":"run.sh"}}"#),
    )
    .unwrap();
    std::fs::write(d.join("run.sh"), "#!/bin/sh\n").unwrap();
    let mut c = archive::collect(
        &d,
        &[],
        Some(Signer {
            name: key.name.clone(),
            key: key.public().key,
        }),
    )
    .unwrap();
    c.manifest.quality = Some(Report::new(
        name,
        "1.0.0",
        "any",
        "test",
        vec![Item {
            id: "start_time".into(),
            status,
            value: "1ms".into(),
            detail: String::new(),
        }],
    ));
    let sig = key.sign(MANIFEST_DOMAIN, &c.manifest.to_bytes());
    archive::write(&c.manifest, Some(&sig), &c.sources).unwrap()
}

fn count(img: &[u8], width: usize, channels: usize, rgb: (u8, u8, u8)) -> usize {
    let near = |a: u8, b: u8| a.abs_diff(b) <= 3;
    img.chunks(channels)
        .take(width * (img.len() / channels / width))
        .filter(|p| near(p[0], rgb.0) && near(p[1], rgb.1) && near(p[2], rgb.2))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_modules_with_quality_and_adoption() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::open(tmp.path().join("reg")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(reg.serve(listener, async move {
        let _ = stopped.await;
    }));
    let client = Client::new(&url).unwrap();
    let key = KeyPair::generate("alice").unwrap();
    for (name, status) in [
        ("alpha", Status::Pass),
        ("beta", Status::Warn),
        ("gamma", Status::Fail),
    ] {
        client
            .publish(package(tmp.path(), name, status, &key), &key)
            .await
            .unwrap();
    }
    let idx = client.index("alpha").await.unwrap().unwrap();
    for _ in 0..3 {
        client
            .download("alpha", &idx.versions[0], false)
            .await
            .unwrap();
    }
    client
        .ping(&Ping {
            install_id: "c".repeat(32),
            modules: vec!["alpha@1.0.0".into()],
        })
        .await
        .unwrap();

    let shot = logos_testkit::target_dir().join("registry-page.png");
    let _ = std::fs::remove_file(&shot);
    let (dom, u2, s2, p1, p2) = (
        url.clone(),
        url.clone(),
        shot.clone(),
        tmp.path().join("profile1"),
        tmp.path().join("profile2"),
    );
    let dom = tokio::task::spawn_blocking(move || {
        logos_testkit::browser::headless(&p1, &dom, &["--dump-dom".into()])
    })
    .await
    .unwrap();
    tokio::task::spawn_blocking(move || {
        logos_testkit::browser::headless(
            &p2,
            &u2,
            &[
                "--window-size=1280,800".into(),
                format!("--screenshot={}", s2.display()),
            ],
        )
    })
    .await
    .unwrap();

    // What the browser built from the page.
    for (name, class) in [("alpha", "q-pass"), ("beta", "q-warn"), ("gamma", "q-fail")] {
        let row = dom
            .split("<tr")
            .find(|r| r.contains(&format!("data-name=\"{name}\"")))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{dom}"));
        assert!(row.contains(class), "{name}: {row}");
        assert!(
            row.contains("&lt;b&gt;module&lt;/b&gt;"),
            "descriptions are escaped: {row}"
        );
    }
    let alpha = dom
        .split("<tr")
        .find(|r| r.contains("data-name=\"alpha\""))
        .unwrap();
    assert!(
        alpha.contains("<td class=\"downloads\">3</td>")
            && alpha.contains("<td class=\"active\">1</td>"),
        "{alpha}"
    );

    // What a person sees: each badge in its colour.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3 && info.width >= 800, "{info:?}");
    let img = &buf[..info.buffer_size()];
    for (what, rgb) in [("pass", PASS_RGB), ("warn", WARN_RGB), ("fail", FAIL_RGB)] {
        let n = count(img, info.width as usize, channels, rgb);
        assert!(
            n > 400,
            "the {what} badge has {n} pixels of its colour in {}",
            shot.display()
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
