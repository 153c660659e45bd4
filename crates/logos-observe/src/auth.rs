//! [`Auth`]: who may see the dashboard and act on the core over HTTP.
//!
//! Two ways in, both with an operator's token (the client token in the runtime dir, or a
//! live named token from `logoscore issue-token`, checked by [`logos_core::Core::authenticate`]
//! exactly as the control socket checks it):
//!
//! - `Authorization: Bearer <64 hex digits>` on each request (scripts, curl);
//! - the login form: `POST /login` with the token sets a session cookie (`HttpOnly`,
//!   `SameSite=Strict`, random 256-bit id). The session keeps the token in memory only and
//!   checks it again on every request, so a revoked or expired named token ends its
//!   sessions at once.
//!
//! Actions (load, unload, reload) made with a cookie must also carry the session's CSRF
//! token in `X-CSRF-Token` and, when the browser sends one, an `Origin` that is this server;
//! a bearer header cannot be sent by another site's page, so it needs neither. Missing or
//! wrong credentials are 401; a good session with a bad CSRF token or origin is 403. Never
//! logs a token or a session id.

use axum::http::{HeaderMap, StatusCode, header};
use logos_core::Core;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq as _;

/// The session cookie's name.
pub const COOKIE: &str = "logos_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; a new login past it pushes out the oldest.
const MAX_SESSIONS: usize = 256;

#[derive(Debug)]
struct Login {
    token: Vec<u8>,
    csrf: String,
    expires: Instant,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401 or 403.
    pub status: StatusCode,
    /// For the person: what is wrong and what to do.
    pub reason: String,
}

impl Refusal {
    fn unauthorized(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }

    fn forbidden(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }
}

/// An authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// `client` or the named token's name.
    pub who: String,
    /// The session's CSRF token; `None` for a bearer request.
    pub csrf: Option<String>,
}

/// The HTTP endpoint's logins.
#[derive(Debug)]
pub struct Auth {
    core: Core,
    sessions: Mutex<HashMap<String, Login>>,
}

fn random_hex() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

/// The token text as bytes: 64 hex digits, surrounding blanks ignored.
fn parse_token(text: &str) -> Result<Vec<u8>, Refusal> {
    let t = text.trim();
    match hex::decode(t) {
        Ok(b) if b.len() == logos_core::TOKEN_LEN => Ok(b),
        _ => Err(Refusal::unauthorized(
            "that is not an operator token: paste the 64 hex digits of the client token (the runtime dir's client.token) or of a token from `logoscore issue-token`",
        )),
    }
}

/// The value of cookie `name` in `headers`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Auth {
    /// Logins for `core`.
    pub fn new(core: Core) -> Auth {
        Auth {
            core,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn verify(&self, token: &[u8]) -> Result<String, Refusal> {
        self.core
            .authenticate(token)
            .map_err(|e| Refusal::unauthorized(e.to_string()))
    }

    /// Checks `token_text` and opens a session: `(session id, csrf token)`.
    ///
    /// # Errors
    /// 401 when it is not a live operator token.
    pub fn login(&self, token_text: &str) -> Result<(String, String), Refusal> {
        let token = parse_token(token_text)?;
        self.verify(&token)?;
        let fail = |e: getrandom::Error| Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            reason: format!("no randomness for a session id: {e}"),
        };
        let id = random_hex().map_err(fail)?;
        let csrf = random_hex().map_err(fail)?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, l| l.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, l)| l.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Login {
                token,
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, csrf))
    }

    /// Ends the session `headers` carry, if any.
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.sessions.lock().remove(id);
        }
    }

    /// Who sent this request.
    ///
    /// # Errors
    /// 401 without a valid bearer token or session.
    pub fn check(&self, headers: &HeaderMap) -> Result<Operator, Refusal> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let text = value.to_str().unwrap_or("");
            let Some(token) = text.strip_prefix("Bearer ") else {
                return Err(Refusal::unauthorized(
                    "the Authorization header must be `Bearer <operator token>`",
                ));
            };
            let who = self.verify(&parse_token(token)?)?;
            return Ok(Operator { who, csrf: None });
        }
        let Some(id) = cookie(headers, COOKIE) else {
            return Err(Refusal::unauthorized(
                "log in first (the form at /login), or send `Authorization: Bearer <operator token>`",
            ));
        };
        let (token, csrf) = {
            let sessions = self.sessions.lock();
            match sessions.get(id) {
                Some(l) if l.expires > Instant::now() => (l.token.clone(), l.csrf.clone()),
                _ => {
                    return Err(Refusal::unauthorized(
                        "your session has ended; log in again at /login",
                    ));
                }
            }
        };
        match self.verify(&token) {
            Ok(who) => Ok(Operator {
                who,
                csrf: Some(csrf),
            }),
            Err(r) => {
                self.sessions.lock().remove(id);
                Err(r)
            }
        }
    }

    /// Who sent this action, with the CSRF checks a cookie needs.
    ///
    /// # Errors
    /// 401 as [`Auth::check`]; 403 when a session's CSRF token or the origin is wrong.
    pub fn check_action(&self, headers: &HeaderMap) -> Result<Operator, Refusal> {
        let op = self.check(headers)?;
        let Some(csrf) = &op.csrf else {
            return Ok(op);
        };
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(csrf.as_bytes())) {
            return Err(Refusal::forbidden(
                "missing or wrong X-CSRF-Token: actions from a logged-in browser must come from the dashboard page (it sends the token from /api/session)",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let origin = origin.to_str().unwrap_or("");
            let ours = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o == host);
            if !ours {
                return Err(Refusal::forbidden(format!(
                    "actions are accepted only from this server's own page, not from origin {origin:?}"
                )));
            }
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_and_tokens_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; logos_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(parse_token(&"ab".repeat(32)).is_ok());
        assert!(parse_token(&format!("  {}\n", "ab".repeat(32))).is_ok());
        for bad in ["", "xyz", &"ab".repeat(31), &"ab".repeat(33)] {
            assert_eq!(
                parse_token(bad).map_err(|r| r.status),
                Err(StatusCode::UNAUTHORIZED),
                "{bad:?}"
            );
        }
    }
}
