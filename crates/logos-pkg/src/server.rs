//! `logoscore registry serve`: a registry over HTTP (axum). Reads are plain files in the
//! static layout of `index.rs`, so the same dir can be served by any web server or object
//! store; writes are the JSON API:
//!
//! - `POST /api/v1/publish`: the `.lgx` as the body, authenticated by the publisher's key
//!   (`X-Logos-Key`, `X-Logos-Time`, `X-Logos-Signature` over the body's SHA-256 and the
//!   time). The package must be signed by that same key, every archive rule holds, the first
//!   publisher of a name owns it, and a published version is never overwritten.
//! - `POST /api/v1/modules/{name}/reviews`: a signed [`Review`].
//! - `POST /api/v1/ping`: an opt-in anonymous [`Ping`] (adoption). No address is stored:
//!   the handlers never look at the peer.
//! - `GET /api/v1/search?q=`, `GET /api/v1/modules/{name}`: the same data, filtered.
//! - `GET /`: the server-rendered page listing modules with quality and adoption.
//!
//! Downloads of package files are counted in memory and flushed to `counts.json` by one
//! writer task (and at shutdown), so concurrent downloads never lose a count. Never trusts
//! the registry's own files beyond their format; clients verify signatures themselves.

use crate::archive::{self, Limits};
use crate::error::{Error, Result};
use crate::index::{Catalog, CatalogEntry, Counts, ModuleIndex, Ping, Published, Release, Review};
use crate::manifest::{check_module_name, sha256_hex};
use crate::sign::{PUBLISH_DOMAIN, verify};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long an install counts as active after its last ping.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most install ids a registry keeps (each at most ~200 KiB of module names).
pub const MAX_INSTALLS: usize = 100_000;
/// How far a publish request's time may be from the server's.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A registry serving `dir`.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    limits: Limits,
    counts: Mutex<BTreeMap<String, Counts>>,
    pings: Mutex<BTreeMap<String, (u64, Vec<String>)>>,
    dirty: tokio::sync::Notify,
    write: tokio::sync::Mutex<()>,
}

type Shared = Arc<Registry>;

impl Registry {
    /// Opens `dir` (creating it), loading counts and pings.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Arc<Registry>> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("modules"))
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let mut counts = BTreeMap::new();
        for name in module_names(&dir) {
            let c: Counts =
                read_json(&dir.join("modules").join(&name).join("counts.json")).unwrap_or_default();
            counts.insert(name, c);
        }
        let pings = read_json::<BTreeMap<String, (u64, Vec<String>)>>(&dir.join("pings.json"))
            .unwrap_or_default();
        let r = Arc::new(Registry {
            dir,
            limits: Limits::default(),
            counts: Mutex::new(counts),
            pings: Mutex::new(pings),
            dirty: tokio::sync::Notify::new(),
            write: tokio::sync::Mutex::new(()),
        });
        r.write_catalog()?;
        Ok(r)
    }

    /// The router, for serving or for tests.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/index.json", get(catalog))
            .route("/modules/{name}/{file}", get(file))
            .route("/api/v1/search", get(search))
            .route("/api/v1/modules/{name}", get(details))
            .route("/api/v1/modules/{name}/reviews", post(review))
            .route("/api/v1/publish", post(publish))
            .route("/api/v1/ping", post(ping))
            .layer(DefaultBodyLimit::max(self.limits.max_compressed as usize))
            .with_state(Arc::clone(self))
    }

    /// Serves on `listener` until `shutdown` resolves, then flushes counts.
    ///
    /// # Errors
    /// [`Error::Io`] from the server.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let flusher = {
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                loop {
                    me.dirty.notified().await;
                    // Coalesce a burst of downloads into one write.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Err(e) = me.flush() {
                        tracing::warn!("cannot write counts: {e}");
                    }
                }
            })
        };
        let r = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::io("registry server", e));
        flusher.abort();
        self.flush()?;
        r
    }

    /// Writes counts, pings and the catalog.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn flush(&self) -> Result<()> {
        let counts = lock(&self.counts).clone();
        for (name, c) in &counts {
            let d = self.dir.join("modules").join(name);
            if d.is_dir() {
                write_json(&d.join("counts.json"), c)?;
            }
        }
        let pings = lock(&self.pings).clone();
        write_json(&self.dir.join("pings.json"), &pings)?;
        self.write_catalog()
    }

    fn index(&self, name: &str) -> Option<ModuleIndex> {
        check_module_name(name).ok()?;
        read_json(&self.dir.join("modules").join(name).join("index.json"))
    }

    fn reviews(&self, name: &str) -> Vec<Review> {
        read_json(&self.dir.join("modules").join(name).join("reviews.json")).unwrap_or_default()
    }

    fn active_installs(&self, name: &str) -> u64 {
        let now = now_secs();
        lock(&self.pings)
            .values()
            .filter(|(t, mods)| {
                now.saturating_sub(*t) <= ACTIVE_WINDOW.as_secs()
                    && mods.iter().any(|m| m.split('@').next() == Some(name))
            })
            .count() as u64
    }

    /// The catalog as it stands.
    pub fn catalog(&self) -> Catalog {
        let counts = lock(&self.counts).clone();
        let modules = module_names(&self.dir)
            .into_iter()
            .filter_map(|name| {
                let idx = self.index(&name)?;
                let latest = idx.latest()?.clone();
                let reviews = self.reviews(&name);
                let rating = (!reviews.is_empty()).then(|| {
                    reviews.iter().map(|r| f64::from(r.stars)).sum::<f64>() / reviews.len() as f64
                });
                Some(CatalogEntry {
                    downloads: counts.get(&name).map_or(0, Counts::total),
                    active_installs: self.active_installs(&name),
                    reviews: reviews.len() as u64,
                    rating,
                    latest: latest.version.clone(),
                    description: latest.description.clone(),
                    signer: latest.signer.name.clone(),
                    quality: latest.quality.as_ref().map(|q| q.status),
                    quality_summary: latest.quality.as_ref().map(|q| q.summary()),
                    name,
                })
            })
            .collect();
        Catalog { modules }
    }

    fn write_catalog(&self) -> Result<()> {
        write_json(&self.dir.join("index.json"), &self.catalog())
    }

    /// Checks and stores a published package.
    async fn publish(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Published, (StatusCode, String)> {
        let bad = |s: StatusCode, m: String| (s, m);
        let h = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (Some(key), Some(time), Some(sig)) =
            (h("x-logos-key"), h("x-logos-time"), h("x-logos-signature"))
        else {
            return Err(bad(
                StatusCode::UNAUTHORIZED,
                "publish needs a publisher key: X-Logos-Key, X-Logos-Time and X-Logos-Signature (logoscore publish sends them)".into(),
            ));
        };
        let t: u64 = time.parse().map_err(|_| {
            bad(
                StatusCode::BAD_REQUEST,
                "X-Logos-Time is not a number".into(),
            )
        })?;
        if now_secs().abs_diff(t) > CLOCK_SKEW.as_secs() {
            return Err(bad(
                StatusCode::UNAUTHORIZED,
                "X-Logos-Time is more than 5 minutes off the registry's clock".into(),
            ));
        }
        let sig = hex::decode(sig).map_err(|_| {
            bad(
                StatusCode::BAD_REQUEST,
                "X-Logos-Signature is not hex".into(),
            )
        })?;
        let message = format!("{}\n{t}", sha256_hex(body));
        verify(PUBLISH_DOMAIN, message.as_bytes(), &key, &sig).map_err(|e| {
            bad(
                StatusCode::UNAUTHORIZED,
                format!("publisher authentication failed: {e}"),
            )
        })?;
        let mut check = |m: &crate::manifest::Manifest,
                         bytes: &[u8],
                         s: Option<&[u8]>|
         -> Result<()> {
            let (Some(signer), Some(s)) = (&m.signer, s) else {
                return Err(Error::Untrusted {
                    package: m.id(),
                    reason: "is not signed; the registry accepts signed packages only (`logoscore pack --key NAME`)".into(),
                });
            };
            verify(crate::sign::MANIFEST_DOMAIN, bytes, &signer.key, s).map_err(|e| {
                Error::Untrusted {
                    package: m.id(),
                    reason: e,
                }
            })?;
            if signer.key != key {
                return Err(Error::Untrusted {
                    package: m.id(),
                    reason: format!(
                        "is signed by {:?}, not by the publishing key; publish with the key that signed it",
                        signer.name
                    ),
                });
            }
            Ok(())
        };
        let un = archive::read(body, "upload", &self.limits, &mut check, None).map_err(|e| {
            let status = match e {
                Error::Untrusted { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, e.to_string())
        })?;
        let m = un.manifest;
        let Some(signer) = m.signer.clone() else {
            return Err(bad(StatusCode::FORBIDDEN, "unsigned package".into()));
        };
        let _w = self.write.lock().await;
        let dir = self.dir.join("modules").join(&m.name);
        let mut idx = self.index(&m.name).unwrap_or(ModuleIndex {
            name: m.name.clone(),
            owners: vec![],
            versions: vec![],
        });
        if idx.owners.is_empty() {
            idx.owners.push(key.clone());
        } else if !idx.owners.contains(&key) {
            return Err(bad(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is owned by another publisher key; ask an owner to publish it",
                    m.name
                ),
            ));
        }
        if let Some(old) = idx.versions.iter().find(|r| r.version == m.version) {
            return Err(bad(
                StatusCode::CONFLICT,
                format!(
                    "{} {} is already published (root {}); published versions are never overwritten: bump the version",
                    m.name, m.version, old.root
                ),
            ));
        }
        let file = format!("{}-{}.lgx", m.name, m.version);
        std::fs::create_dir_all(&dir)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        crate::store::write_atomic(&dir.join(&file), body)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        idx.versions.push(Release {
            version: m.version.clone(),
            root: m.root.clone(),
            file: file.clone(),
            size: body.len() as u64,
            sha256: sha256_hex(body),
            signer,
            dependencies: m.dependencies.clone(),
            targets: m.targets.clone(),
            description: m.description.clone(),
            quality: m.quality.clone(),
            published_at: rfc3339(SystemTime::now()),
        });
        idx.versions.sort_by(|a, b| a.version.cmp(&b.version));
        write_json(&dir.join("index.json"), &idx)
            .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        lock(&self.counts).entry(m.name.clone()).or_default();
        let _ = self.write_catalog();
        tracing::info!(module = %m.name, version = %m.version, "published");
        Ok(Published {
            url: format!("modules/{}/{file}", m.name),
            name: m.name,
            version: m.version,
            root: m.root,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn module_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("modules"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| check_module_name(n).is_ok())
        .collect();
    v.sort();
    v
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

fn write_json<T: serde::Serialize>(p: &Path, v: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    bytes.push(b'\n');
    crate::store::write_atomic(p, &bytes)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC, seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let r = secs % 86400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        r / 3600,
        (r % 3600) / 60,
        r % 60
    )
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn page(State(r): State<Shared>) -> Html<String> {
    Html(crate::page::render(&r.catalog()))
}

async fn catalog(State(r): State<Shared>) -> Response {
    axum::Json(r.catalog()).into_response()
}

async fn file(
    State(r): State<Shared>,
    UrlPath((name, file)): UrlPath<(String, String)>,
) -> Response {
    let ok_file = !file.starts_with('.')
        && file.len() <= 200
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if check_module_name(&name).is_err() || !ok_file {
        return error(StatusCode::NOT_FOUND, "no such file".into());
    }
    let path = r.dir.join("modules").join(&name).join(&file);
    // Streamed, so concurrent downloads of a large package do not each hold it in memory.
    let (f, len) = match tokio::fs::File::open(&path).await {
        Ok(f) => match f.metadata().await {
            Ok(m) if m.is_file() => (f, m.len()),
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no file {file} for module {name}"),
                );
            }
        },
        Err(_) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no file {file} for module {name}"),
            );
        }
    };
    if let Some(version) = file
        .strip_suffix(".lgx")
        .and_then(|s| s.strip_prefix(&format!("{name}-")))
    {
        *lock(&r.counts)
            .entry(name.clone())
            .or_default()
            .downloads
            .entry(version.to_owned())
            .or_default() += 1;
        r.dirty.notify_one();
    }
    let ctype = if file.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(f));
    (
        [
            (header::CONTENT_TYPE, ctype.to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search(State(r): State<Shared>, Query(q): Query<SearchQuery>) -> Response {
    let needle = q.q.to_lowercase();
    let hits: Vec<CatalogEntry> = r
        .catalog()
        .modules
        .into_iter()
        .filter(|m| m.name.contains(&needle) || m.description.to_lowercase().contains(&needle))
        .collect();
    axum::Json(hits).into_response()
}

async fn details(State(r): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(idx) = r.index(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no module {name:?} in this registry"),
        );
    };
    let counts = lock(&r.counts).get(&name).cloned().unwrap_or_default();
    axum::Json(serde_json::json!({
        "index": idx,
        "counts": counts,
        "downloads": counts.total(),
        "active_installs": r.active_installs(&name),
        "reviews": r.reviews(&name),
    }))
    .into_response()
}

async fn review(State(r): State<Shared>, UrlPath(name): UrlPath<String>, body: Bytes) -> Response {
    let rev: Review = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a review: {e}")),
    };
    if rev.module != name {
        return error(
            StatusCode::BAD_REQUEST,
            "the review is for another module".into(),
        );
    }
    if let Err(e) = rev.check() {
        return error(StatusCode::FORBIDDEN, e);
    }
    let Some(idx) = r.index(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no module {name:?} in this registry"),
        );
    };
    if !idx.versions.iter().any(|v| v.version == rev.version) {
        return error(
            StatusCode::NOT_FOUND,
            format!("{name} {} is not published here", rev.version),
        );
    }
    let _w = r.write.lock().await;
    let mut all = r.reviews(&name);
    // One review per reviewer key and version: a new one replaces the old.
    all.retain(|x| !(x.reviewer.key == rev.reviewer.key && x.version == rev.version));
    all.push(rev);
    let path = r.dir.join("modules").join(&name).join("reviews.json");
    if let Err(e) = write_json(&path, &all) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let _ = r.write_catalog();
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"reviews": all.len()})),
    )
        .into_response()
}

async fn ping(State(r): State<Shared>, body: Bytes) -> Response {
    let p: Ping = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a ping: {e}")),
    };
    let id_ok = p.install_id.len() == 32 && p.install_id.bytes().all(|b| b.is_ascii_hexdigit());
    if !id_ok || p.modules.len() > 1000 || p.modules.iter().any(|m| m.len() > 200) {
        return error(
            StatusCode::BAD_REQUEST,
            "install_id must be 32 hex digits and modules at most 1000 name@version".into(),
        );
    }
    {
        let mut pings = lock(&r.pings);
        // Bounded: expired installs go first, and past the cap new ids are not recorded.
        if pings.len() >= MAX_INSTALLS && !pings.contains_key(&p.install_id) {
            let now = now_secs();
            pings.retain(|_, (t, _)| now.saturating_sub(*t) <= ACTIVE_WINDOW.as_secs());
            if pings.len() >= MAX_INSTALLS {
                return error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "this registry tracks no more installs".into(),
                );
            }
        }
        pings.insert(p.install_id, (now_secs(), p.modules));
    }
    r.dirty.notify_one();
    StatusCode::NO_CONTENT.into_response()
}

async fn publish(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    match r.publish(&headers, &body).await {
        Ok(p) => (StatusCode::CREATED, axum::Json(p)).into_response(),
        Err((s, m)) => error(s, m),
    }
}
