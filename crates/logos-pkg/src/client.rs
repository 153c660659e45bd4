//! The registry client: reads the static layout (so any web server or object store can host
//! a registry), downloads with a progress bar and checks size and SHA-256 against the index,
//! and writes through the JSON API (publish, review, ping). Speaks HTTP(S) with reqwest over
//! rustls (ring), never OpenSSL.
//!
//! Trust is never taken from a registry: every package is verified by its signature when it
//! is added to the store. Never touches the store.

use crate::error::{Error, Result};
use crate::index::{Catalog, Counts, ModuleIndex, Ping, Published, Release, Review};
use crate::manifest::sha256_hex;
use crate::sign::{KeyPair, PUBLISH_DOMAIN};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One configured registry.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the registry at `url` (`http://` or `https://`).
    ///
    /// # Errors
    /// [`Error::Registry`] for a bad URL.
    pub fn new(url: &str) -> Result<Client> {
        let url = url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Registry {
                url,
                reason: "not an http:// or https:// URL".into(),
            });
        }
        // reqwest is built without a default crypto provider: install ring's for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("logoscore/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Registry {
                url: url.clone(),
                reason: format!("cannot make an HTTP client: {e}"),
            })?;
        Ok(Client { url, http })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Registry {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    async fn get(&self, path: &str) -> Result<Option<reqwest::Response>> {
        let resp = self
            .http
            .get(format!("{}/{path}", self.url))
            .send()
            .await
            .map_err(|e| self.err(format!("GET {path}: {}", chain(&e))))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            let s = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(self.err(format!("GET {path}: {s}: {}", api_message(&body))));
        }
        Ok(Some(resp))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let Some(resp) = self.get(path).await? else {
            return Ok(None);
        };
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.err(format!("GET {path}: {}", chain(&e))))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.err(format!("{path} is not what a registry serves: {e}")))
    }

    /// `index.json`: every module.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub async fn catalog(&self) -> Result<Catalog> {
        Ok(self.get_json("index.json").await?.unwrap_or_default())
    }

    /// A module's index, or `None` when this registry does not have it.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub async fn index(&self, name: &str) -> Result<Option<ModuleIndex>> {
        self.get_json(&format!("modules/{name}/index.json")).await
    }

    /// A module's reviews.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub async fn reviews(&self, name: &str) -> Result<Vec<Review>> {
        Ok(self
            .get_json(&format!("modules/{name}/reviews.json"))
            .await?
            .unwrap_or_default())
    }

    /// A module's download counts.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub async fn counts(&self, name: &str) -> Result<Counts> {
        Ok(self
            .get_json(&format!("modules/{name}/counts.json"))
            .await?
            .unwrap_or_default())
    }

    /// Downloads a release's package, checking its size and SHA-256 against the index;
    /// `progress` shows a bar on stderr.
    ///
    /// # Errors
    /// [`Error::Registry`] for transport errors or a file that is not what the index says.
    pub async fn download(&self, name: &str, release: &Release, progress: bool) -> Result<Vec<u8>> {
        let path = format!("modules/{name}/{}", release.file);
        let Some(mut resp) = self.get(&path).await? else {
            return Err(self.err(format!("{path}: not found, although the index lists it")));
        };
        let bar = if progress {
            let b = indicatif::ProgressBar::new(release.size);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(format!("downloading {name} {}", release.version));
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut body = Vec::with_capacity(release.size as usize);
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.err(format!("GET {path}: {}", chain(&e))))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > release.size {
                return Err(self.err(format!(
                    "{path} is larger than the {} bytes the index says",
                    release.size
                )));
            }
            bar.set_position(body.len() as u64);
        }
        bar.finish_and_clear();
        if body.len() as u64 != release.size || sha256_hex(&body) != release.sha256 {
            return Err(self.err(format!(
                "{path} does not match the index (size {} vs {}, or SHA-256); the registry or the connection altered it",
                body.len(),
                release.size
            )));
        }
        Ok(body)
    }

    /// Publishes a signed package, authenticating with `key` (which must be its signer).
    ///
    /// # Errors
    /// [`Error::Registry`] with the registry's reason (overwrite, unsigned, not the owner…).
    pub async fn publish(&self, package: Vec<u8>, key: &KeyPair) -> Result<Published> {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sig = key.sign(
            PUBLISH_DOMAIN,
            format!("{}\n{t}", sha256_hex(&package)).as_bytes(),
        );
        let resp = self
            .http
            .post(format!("{}/api/v1/publish", self.url))
            .header("x-logos-key", key.public().key)
            .header("x-logos-time", t.to_string())
            .header("x-logos-signature", hex::encode(sig))
            .header("content-type", "application/octet-stream")
            .body(package)
            .send()
            .await
            .map_err(|e| self.err(format!("publish: {}", chain(&e))))?;
        self.answer(resp, "publish").await
    }

    /// Posts a signed review.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub async fn review(&self, review: &Review) -> Result<serde_json::Value> {
        let resp = self
            .http
            .post(format!(
                "{}/api/v1/modules/{}/reviews",
                self.url, review.module
            ))
            .json(review)
            .send()
            .await
            .map_err(|e| self.err(format!("review: {}", chain(&e))))?;
        self.answer(resp, "review").await
    }

    /// Sends an adoption ping.
    ///
    /// # Errors
    /// [`Error::Registry`].
    pub async fn ping(&self, ping: &Ping) -> Result<()> {
        let resp = self
            .http
            .post(format!("{}/api/v1/ping", self.url))
            .json(ping)
            .send()
            .await
            .map_err(|e| self.err(format!("ping: {}", chain(&e))))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let s = resp.status();
            Err(self.err(format!(
                "ping: {s}: {}",
                api_message(&resp.text().await.unwrap_or_default())
            )))
        }
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> Result<T> {
        let s = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !s.is_success() {
            return Err(self.err(format!("{what} refused ({s}): {}", api_message(&body))));
        }
        serde_json::from_str(&body).map_err(|e| self.err(format!("{what}: unexpected answer: {e}")))
    }
}

fn api_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
