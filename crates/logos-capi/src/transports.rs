//! The reference implementation's per-module transport sets, read for
//! `logos_core_set_module_transports`.
//!
//! A transport set is a JSON array of `{"protocol", "host", "port", "codec", "ca_file",
//! "cert_file", "key_file", "verify_peer"}` objects (every field optional; `protocol` one of
//! `local`, `qt_remote_plain`, `tcp`, `tcp_ssl`, `inproc`, default `local`). Every module of
//! this core is reachable through its local Unix socket only; remote modules (TCP + TLS) do not
//! exist yet. So a set that asks for nothing but `local` describes what the module gets anyway
//! and is accepted, and any other protocol is refused, saying so, rather than stored and
//! ignored. Malformed sets are refused the same way the reference does, naming the entry and
//! field. Pure: never touches the core.

use crate::error::Error;
use serde_json::Value as Json;

/// The parameter name used in errors.
const SET: &str = "transport_set_json";

/// Protocols the reference knows.
const PROTOCOLS: &[&str] = &["local", "qt_remote_plain", "tcp", "tcp_ssl", "inproc"];

/// Checks the transport set for `module`: `Ok` when it asks only for the local socket (or is
/// empty, the reference's "clear").
///
/// # Errors
/// [`Error::Invalid`]: not a transport set (naming the entry and field), or a protocol other
/// than `local`, which this core cannot serve yet.
pub(crate) fn check(module: &str, transport_set_json: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::Invalid { name: SET, reason };
    if transport_set_json.trim().is_empty() {
        return Ok(());
    }
    let set: Json = serde_json::from_str(transport_set_json).map_err(|e| {
        invalid(format!(
            "not JSON ({e}); pass an array such as [{{\"protocol\": \"local\"}}]"
        ))
    })?;
    let Json::Array(entries) = set else {
        return Err(invalid(format!(
            "expected a JSON array of transports, got {set}"
        )));
    };
    let mut remote = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Json::Object(o) = entry else {
            return Err(invalid(format!("entry {i} is not an object: {entry}")));
        };
        for (key, value) in o {
            let ok = match key.as_str() {
                "protocol" | "host" | "codec" | "ca_file" | "cert_file" | "key_file" => {
                    value.is_string()
                }
                "verify_peer" => value.is_boolean(),
                "port" => value.as_u64().is_some_and(|p| p <= u64::from(u16::MAX)),
                _ => {
                    return Err(invalid(format!(
                        "entry {i}: unknown field {key:?}; the fields are protocol, host, port, codec, ca_file, cert_file, key_file, verify_peer"
                    )));
                }
            };
            if !ok {
                return Err(invalid(format!(
                    "entry {i}: field {key:?} has the wrong type or range: {value}"
                )));
            }
        }
        let protocol = o.get("protocol").and_then(Json::as_str).unwrap_or("local");
        if !PROTOCOLS.contains(&protocol) {
            return Err(invalid(format!(
                "entry {i}: unknown protocol {protocol:?}; the protocols are {}",
                PROTOCOLS.join(", ")
            )));
        }
        let codec = o.get("codec").and_then(Json::as_str).unwrap_or("json");
        if !matches!(codec, "json" | "cbor") {
            return Err(invalid(format!(
                "entry {i}: unknown codec {codec:?}; the codecs are json, cbor"
            )));
        }
        if protocol != "local" && !remote.contains(&protocol) {
            remote.push(protocol);
        }
    }
    if remote.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "module {module}: transport {} cannot be served: this core has no remote modules yet, every module is reachable through its local socket only; pass [] or [{{\"protocol\": \"local\"}}]",
        remote.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        check("chat", s).unwrap_err().to_string()
    }

    #[test]
    fn local_sets_are_what_every_module_has() {
        for ok in ["", "[]", r#"[{"protocol":"local"}]"#, "[{}]"] {
            assert!(check("chat", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn remote_transports_are_refused_saying_why() {
        let e = err(
            r#"[{"protocol":"local"},{"protocol":"tcp_ssl","host":"0.0.0.0","port":7443,"ca_file":"/ca.pem","verify_peer":true}]"#,
        );
        assert!(
            e.starts_with(
                "invalid transport_set_json: module chat: transport tcp_ssl cannot be served: this core has no remote modules yet"
            ),
            "{e}"
        );
        assert!(
            err(r#"[{"protocol":"tcp"},{"protocol":"inproc"}]"#).contains("transport tcp, inproc")
        );
    }

    #[test]
    fn malformed_sets_name_the_entry() {
        assert!(err("{").contains("not JSON"));
        assert!(err("{}").contains("expected a JSON array"));
        assert!(err("[1]").contains("entry 0 is not an object"));
        assert!(err(r#"[{},{"port":70000}]"#).contains("entry 1: field \"port\""));
        assert!(err(r#"[{"port":-1}]"#).contains("field \"port\""));
        assert!(err(r#"[{"verify_peer":"yes"}]"#).contains("field \"verify_peer\""));
        assert!(err(r#"[{"protocol":"udp"}]"#).contains("unknown protocol \"udp\""));
        assert!(err(r#"[{"codec":"xml"}]"#).contains("unknown codec \"xml\""));
        assert!(err(r#"[{"hots":"x"}]"#).contains("unknown field \"hots\""));
    }
}
