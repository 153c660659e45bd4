//! `logoscore run --http` over TLS (`--http-tls-cert`/`--http-tls-key`, TLS 1.3): a client
//! that trusts the certificate gets the endpoint, session cookies are `Secure`, plain HTTP to
//! it gets nothing; unusable certificate files stop `run` with the file named. Also
//! `http_metrics_auth`, which closes `/metrics` to strangers on loopback too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod web;

use reqwest::StatusCode;
use std::path::PathBuf;
use support::{COMMAND, World};

/// A self-signed certificate for 127.0.0.1 and localhost: `(cert.pem, key.pem, cert PEM)`.
fn certificate(w: &World, stem: &str) -> (PathBuf, PathBuf, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let pem = ck.cert.pem();
    let cert = w.write(&format!("{stem}.crt"), &pem);
    let key = w.write(&format!("{stem}.key"), &ck.signing_key.serialize_pem());
    (cert, key, pem)
}

fn trusting(pem: &str) -> reqwest::blocking::Client {
    web::http(); // installs the crypto provider
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(COMMAND)
        .build()
        .unwrap()
}

#[test]
fn https_serves_with_secure_cookies_and_plain_http_gets_nothing() {
    let w = World::new();
    w.stage("calc");
    let (cert, key, pem) = certificate(&w, "server");
    let d = w.daemon(&[
        "--http",
        "127.0.0.1:0",
        "--http-tls-cert",
        &cert.display().to_string(),
        "--http-tls-key",
        &key.display().to_string(),
        "--load",
        "calc",
    ]);
    let url = d.ready["httpUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let client = trusting(&pem);
    assert_eq!(
        client
            .get(format!("{url}/healthz"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "ok\n"
    );
    assert_eq!(
        client
            .get(format!("{url}/metrics"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let token = std::fs::read_to_string(w.token()).unwrap();
    let r = client
        .post(format!("{url}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", token.trim()))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // Plain HTTP to the TLS port, and a client that does not trust the certificate: nothing.
    let plain = url.replacen("https://", "http://", 1);
    let r = web::http()
        .get(format!("{plain}/healthz"))
        .timeout(COMMAND)
        .send();
    assert!(
        r.as_ref().map_or(true, |r| !r.status().is_success()),
        "{r:?}"
    );
    let stranger = reqwest::blocking::Client::builder()
        .timeout(COMMAND)
        .build()
        .unwrap();
    assert!(stranger.get(format!("{url}/healthz")).send().is_err());
}

#[test]
fn unusable_certificates_stop_run_naming_the_file() {
    let w = World::new();
    let (cert, key, _) = certificate(&w, "a");
    let (_, other_key, _) = certificate(&w, "b");
    let garbage = w.write("garbage.pem", "not a certificate\n");
    let missing = w.dir.path().join("missing.pem");
    let run = |cert: &PathBuf, key: &PathBuf| {
        let mut cmd = w.command();
        cmd.args(["run", "--http", "127.0.0.1:0", "--http-tls-cert"])
            .arg(cert)
            .arg("--http-tls-key")
            .arg(key)
            .arg("-m")
            .arg(&w.modules);
        support::finish(cmd, COMMAND)
    };
    for (c, k, says) in [
        (&missing, &key, missing.display().to_string()),
        (&garbage, &key, garbage.display().to_string()),
        (&cert, &garbage, garbage.display().to_string()),
        (&cert, &other_key, "does not go with".to_owned()),
    ] {
        let out = run(c, k);
        assert_ne!(out.code, Some(0), "{c:?} {k:?}");
        assert!(out.stderr.contains(&says), "{says}\n{}", out.stderr);
        assert!(
            !w.runtime.join("core.sock").exists(),
            "the core is stopped again"
        );
    }
    // One of the pair alone is a usage error.
    let out = w.cli(&[
        "run",
        "--http",
        "127.0.0.1:0",
        "--http-tls-cert",
        &cert.display().to_string(),
    ]);
    out.expect_code(1);
    assert!(out.stderr.contains("--http-tls-key"), "{}", out.stderr);
}

#[test]
fn metrics_auth_closes_metrics_on_loopback_too() {
    let w = World::new();
    w.stage("calc");
    let cfg = w.write(
        "logoscore.toml",
        "http = \"127.0.0.1:0\"\nhttp_metrics_auth = true\nload = [\"calc\"]\n",
    );
    let d = w.daemon(&["-c", &cfg.display().to_string()]);
    let base = web::base(&d.ready);
    let r = web::http().get(format!("{base}/metrics")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let token = std::fs::read_to_string(w.token()).unwrap();
    let r = web::http()
        .get(format!("{base}/metrics"))
        .bearer_auth(token.trim())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .unwrap()
            .contains("logos_module_up{module=\"calc\"}")
    );
}
