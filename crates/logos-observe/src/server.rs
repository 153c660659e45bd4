//! [`Http`]: the endpoint, an axum server on the core's own tokio runtime.
//!
//! Routes (docs/operations.md has the details):
//!
//! Plain HTTP on loopback; HTTPS (`tls.rs`) with a certificate and key; plain HTTP off
//! loopback only with the explicit `insecure` opt-in.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /metrics` | anyone on a loopback bind (unless `metrics_auth`), else an operator | Prometheus text |
//! | `GET /healthz` | anyone | `ok` while the core runs |
//! | `GET /`, `/app.js`, `/style.css` | anyone (the page holds no data) | the dashboard, or the login form |
//! | `GET /login`, `POST /login`, `POST /logout` | anyone | session cookie |
//! | `GET /api/session` | operator | who, and the CSRF token for actions |
//! | `GET /api/view` | operator | the current [`View`] as JSON |
//! | `GET /api/events` | operator | SSE: the view again on every change |
//! | `GET /api/modules/{name}/logs` | operator | SSE: the module's log tail, then live lines |
//! | `POST /api/modules/{name}/{load,unload,reload}` | operator + CSRF | lifecycle actions |
//!
//! Never blocks supervision: handlers read the latest view from a `watch` channel (the
//! collector fills it), the core's own calls (`load`, `stats`, …) take their locks briefly
//! inside the core and never across an await here, and every live stream is bounded: at most
//! [`MAX_LIVE`] at once, views are latest-only (a slow client skips some), and a log follower
//! that falls more than 1024 lines behind is disconnected rather than buffered for.

use crate::auth::{Auth, COOKIE, Operator, Refusal, SESSION_TTL};
use crate::error::Error;
use crate::logs::LogTap;
use crate::tls::{TlsFiles, TlsListener};
use crate::view::View;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::Stream;
use logos_core::{Core, ErrorCode};
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio::task::JoinHandle;

/// Live streams (SSE) open at once; more get 503.
pub const MAX_LIVE: usize = 64;
/// How long [`Http::stop`] lets requests finish before it cuts the rest (live streams never
/// finish by themselves).
const STOP_GRACE: Duration = Duration::from_secs(1);

const INDEX: &str = include_str!("../assets/index.html");
const LOGIN: &str = include_str!("../assets/login.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// Where and how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Address to bind; port 0 picks a free one ([`Http::local_addr`] tells which).
    pub addr: SocketAddr,
    /// Serve on a non-loopback address without TLS (tokens cross the network in clear).
    pub insecure: bool,
    /// Serve HTTPS with this certificate and key (required off loopback, unless `insecure`).
    pub tls: Option<TlsFiles>,
    /// Require an operator token for `/metrics` even on a loopback address (a shared host
    /// whose other users should not read the figures). Off loopback it is always required.
    pub metrics_auth: bool,
}

impl HttpConfig {
    /// Serve plain HTTP on `addr`, loopback only unless [`HttpConfig::insecure`] is set.
    pub fn new(addr: SocketAddr) -> HttpConfig {
        HttpConfig {
            addr,
            insecure: false,
            tls: None,
            metrics_auth: false,
        }
    }

    /// Whether this configuration may be served at all.
    ///
    /// # Errors
    /// [`Error::NotLoopback`] for a non-loopback address with neither TLS nor `insecure`.
    pub fn check(&self) -> Result<(), Error> {
        if self.addr.ip().is_loopback() || self.insecure || self.tls.is_some() {
            Ok(())
        } else {
            Err(Error::NotLoopback { addr: self.addr })
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

struct App {
    core: Core,
    auth: Auth,
    view: watch::Receiver<Arc<View>>,
    logs: Option<LogTap>,
    /// `/metrics` without credentials (loopback binds).
    metrics_open: bool,
    /// Cookies get `Secure` (served over TLS).
    secure: bool,
    live: Arc<Semaphore>,
}

type Shared = Arc<App>;

/// The running endpoint. Dropping it stops the server and the collector at once; prefer
/// [`Http::stop`].
#[derive(Debug)]
pub struct Http {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    collector: JoinHandle<()>,
}

impl Http {
    /// Binds `config.addr` and serves `core` there until stopped; `logs` feeds the log tail
    /// (without it the dashboard shows none).
    ///
    /// # Errors
    /// [`Error::NotLoopback`] for a non-loopback address with neither TLS nor `insecure`,
    /// [`Error::Tls`] for a certificate or key that cannot be used, [`Error::Bind`] when the
    /// address cannot be bound. Nothing is left running on error.
    pub async fn start(
        core: &Core,
        config: &HttpConfig,
        logs: Option<LogTap>,
    ) -> Result<Http, Error> {
        config.check()?;
        let loopback = config.addr.ip().is_loopback();
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        let bind_error = |source| Error::Bind {
            addr: config.addr,
            source,
        };
        let (plain, secured) = match tls.clone() {
            None => (Some(listener), None),
            Some(tls) => (
                None,
                Some(TlsListener::new(listener, tls).map_err(bind_error)?),
            ),
        };
        let (view, collector) = crate::collect::spawn(core.clone());
        let app = Arc::new(App {
            core: core.clone(),
            auth: Auth::new(core.clone()),
            view,
            logs,
            metrics_open: loopback && !config.metrics_auth,
            secure: tls.is_some(),
            live: Arc::new(Semaphore::new(MAX_LIVE)),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = router(app);
        let stopped = async move {
            let _ = stopped.await;
        };
        let server = tokio::spawn(async move {
            let served = match (plain, secured) {
                (Some(l), _) => axum::serve(l, router).with_graceful_shutdown(stopped).await,
                (_, Some(l)) => axum::serve(l, router).with_graceful_shutdown(stopped).await,
                (None, None) => Ok(()),
            };
            if let Err(e) = served {
                tracing::error!("http endpoint stopped: {e}");
            }
        });
        let scheme = config.scheme();
        tracing::info!(%addr, "http endpoint: dashboard at {scheme}://{addr}/, metrics at {scheme}://{addr}/metrics");
        Ok(Http {
            addr,
            stop: Some(stop),
            server: Some(server),
            collector,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets running requests finish for a moment, then cuts what is left
    /// (live streams).
    ///
    /// # Cancel safety
    /// Dropping the future stops the server at once instead.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(STOP_GRACE, &mut server).await.is_err()
        {
            server.abort();
        }
        self.collector.abort();
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(s) = &self.server {
            s.abort();
        }
        self.collector.abort();
    }
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style))
        .route("/favicon.ico", get(favicon))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/session", get(session))
        .route("/api/view", get(view))
        .route("/api/events", get(events))
        .route("/api/modules/{name}/logs", get(logs))
        .route("/api/modules/{name}/{action}", post(action))
        .with_state(app)
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(serde_json::json!({ "error": self.reason })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"logoscore\""),
            );
        }
        r
    }
}

/// Headers every page gets: no framing by other sites, no sniffing, no caching of data.
fn hardened(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

async fn index(State(app): State<Shared>, headers: HeaderMap) -> Response {
    match app.auth.check(&headers) {
        Ok(_) => hardened(Html(INDEX).into_response()),
        Err(_) => hardened(Redirect::to("/login").into_response()),
    }
}

async fn login_page() -> Response {
    hardened(Html(LOGIN.replace("{{error}}", "")).into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    /// Missing is the same as wrong: 401 with the form again.
    #[serde(default)]
    token: String,
}

async fn login(State(app): State<Shared>, Form(form): Form<LoginForm>) -> Response {
    match app.auth.login(&form.token) {
        Ok((id, _csrf)) => {
            let cookie = format!(
                "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
                SESSION_TTL.as_secs(),
                if app.secure { "; Secure" } else { "" }
            );
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            hardened(r)
        }
        Err(refusal) => {
            let msg = html_escape(&refusal.reason);
            let body = LOGIN.replace("{{error}}", &format!("<p class=\"error\">{msg}</p>"));
            hardened((refusal.status, Html(body)).into_response())
        }
    }
}

async fn logout(State(app): State<Shared>, headers: HeaderMap) -> Response {
    app.auth.logout(&headers);
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("logos_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// No icon: an empty answer rather than a 404 in every browser's console.
async fn favicon() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if !app.metrics_open
        && let Err(r) = app.auth.check(&headers)
    {
        return r.into_response();
    }
    let view = app.view.borrow().clone();
    match crate::metrics::render(view) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn session(State(app): State<Shared>, headers: HeaderMap) -> Response {
    match app.auth.check(&headers) {
        Ok(Operator { who, csrf }) => axum::Json(
            serde_json::json!({ "who": who, "csrf": csrf, "instance": app.core.instance_id() }),
        )
        .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn view(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = app.auth.check(&headers) {
        return r.into_response();
    }
    let v = app.view.borrow().clone();
    axum::Json(&*v).into_response()
}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many live streams open (at most {MAX_LIVE}); close a dashboard tab"),
    )
        .into_response()
}

fn view_event(v: &View) -> Event {
    Event::default()
        .event("view")
        .json_data(v)
        .unwrap_or_else(|_| Event::default().event("error").data("view not encodable"))
}

/// The view now, then again after every change; ends when the collector does.
fn view_stream(
    rx: watch::Receiver<Arc<View>>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((rx, permit, true), |(mut rx, permit, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let v = rx.borrow_and_update().clone();
        Some((Ok(view_event(&v)), (rx, permit, false)))
    })
}

async fn events(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = app.auth.check(&headers) {
        return r.into_response();
    }
    let Ok(permit) = Arc::clone(&app.live).try_acquire_owned() else {
        return busy();
    };
    Sse::new(view_stream(app.view.clone(), permit))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn line_event(line: &crate::logs::LogLine) -> Event {
    Event::default()
        .event("line")
        .json_data(line)
        .unwrap_or_else(|_| Event::default().event("error").data("line not encodable"))
}

enum Follow {
    Tail(std::vec::IntoIter<Arc<crate::logs::LogLine>>),
    Live,
    Done,
}

/// The kept lines of `module`, then its new ones; a follower that falls behind gets a
/// `lagged` event and the stream ends (the browser reconnects and starts from the tail).
fn log_stream(
    tap: &LogTap,
    module: String,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    let live = tap.follow();
    let tail = tap.tail(&module).into_iter();
    let start = Event::default().event("reset").data(module.clone());
    let head = futures::stream::once(async move { Ok(start) });
    let rest = futures::stream::unfold(
        (Follow::Tail(tail), live, module, permit),
        |(mut state, mut live, module, permit)| async move {
            loop {
                match &mut state {
                    Follow::Tail(lines) => match lines.next() {
                        Some(l) => {
                            return Some((Ok(line_event(&l)), (state, live, module, permit)));
                        }
                        None => state = Follow::Live,
                    },
                    Follow::Live => match live.recv().await {
                        Ok(l) if l.module == module => {
                            return Some((Ok(line_event(&l)), (state, live, module, permit)));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let ev = Event::default().event("lagged").data(n.to_string());
                            return Some((Ok(ev), (Follow::Done, live, module, permit)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    Follow::Done => return None,
                }
            }
        },
    );
    futures::StreamExt::chain(head, rest)
}

async fn logs(State(app): State<Shared>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = app.auth.check(&headers) {
        return r.into_response();
    }
    if app.core.module(&name).is_err() {
        return (
            StatusCode::NOT_FOUND,
            format!("no module {name:?} is known"),
        )
            .into_response();
    }
    let Some(tap) = &app.logs else {
        return (
            StatusCode::NOT_FOUND,
            "this core keeps no log tail (it was started without one)",
        )
            .into_response();
    };
    let Ok(permit) = Arc::clone(&app.live).try_acquire_owned() else {
        return busy();
    };
    Sse::new(log_stream(tap, name, permit))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::UnknownModule => StatusCode::NOT_FOUND,
        ErrorCode::InvalidArgs => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::FORBIDDEN,
        _ => StatusCode::CONFLICT,
    }
}

async fn action(
    State(app): State<Shared>,
    Path((name, action)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let op = match app.auth.check_action(&headers) {
        Ok(op) => op,
        Err(r) => return r.into_response(),
    };
    let result = match action.as_str() {
        "load" => app.core.load(&name).await,
        "reload" => app.core.reload(&name).await,
        "unload" => {
            let cascade = query
                .get("cascade")
                .is_some_and(|v| v == "true" || v == "1");
            app.core.unload(&name, cascade).await
        }
        other => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({
                    "error": format!("unknown action {other:?}: use load, unload or reload")
                })),
            )
                .into_response();
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(module = %name, operator = %op.who, "http: {action} done");
            let state = app
                .core
                .module(&name)
                .map(|m| m.state.as_str())
                .unwrap_or("unknown");
            axum::Json(serde_json::json!({ "ok": true, "module": name, "state": state }))
                .into_response()
        }
        Err(e) => (
            status_of(e.code()),
            axum::Json(serde_json::json!({ "error": e.to_string(), "code": e.code().as_str() })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_needs_tls_or_the_explicit_opt_in() {
        let at = |a: &str| HttpConfig::new(a.parse().unwrap_or_else(|e| panic!("{a}: {e}")));
        assert!(at("127.0.0.1:9464").check().is_ok());
        assert!(at("[::1]:9464").check().is_ok());
        let open = at("0.0.0.0:9464");
        assert!(matches!(open.check(), Err(Error::NotLoopback { .. })));
        let mut tls = open.clone();
        tls.tls = Some(TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        });
        assert!(tls.check().is_ok());
        assert_eq!(tls.scheme(), "https");
        let mut insecure = open;
        insecure.insecure = true;
        assert!(insecure.check().is_ok());
        assert_eq!(insecure.scheme(), "http");
    }
}
