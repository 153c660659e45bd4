//! Everything `logoscore` prints: text tables and lines for people, JSON documents for
//! machines (`--json`: exactly one document per command on stdout, NDJSON for `watch`), and
//! error reports.
//!
//! Owns formats (durations, sizes, timestamps, method signatures) and the rule that a closed
//! stdout (`logoscore list | head -1`) is not an error. Never talks to the core and never
//! decides what to show: each `cmd/<verb>.rs` does.

use crate::error::{Error, Verb};
use logos_wire::Value;
use std::io::{ErrorKind, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Writes `text` and a newline to stdout. A closed pipe is reported as `Ok(false)`.
///
/// # Errors
/// Any other write failure.
pub(crate) fn line(text: &str) -> Result<bool, Error> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Error::io("cannot write to stdout", e)),
    }
}

/// Writes one JSON document (pretty when `pretty`, else one line).
///
/// # Errors
/// As [`line`].
pub(crate) fn json(doc: &serde_json::Value, pretty: bool) -> Result<bool, Error> {
    let text = if pretty {
        serde_json::to_string_pretty(doc)
    } else {
        serde_json::to_string(doc)
    };
    match text {
        Ok(t) => line(&t),
        Err(e) => Err(Error::io("cannot encode JSON", std::io::Error::other(e))),
    }
}

/// Prints a failed command: `error: …` with its causes (`{:#}`) on stderr, and with `--json`
/// also one error document on stdout, on one line (so it also ends an NDJSON stream cleanly):
/// `{"status": "error", "code", "message", "error": {"kind", "message", "exit"}, …}` — the
/// reference's `status`/`code`/`message` beside our `error` object, plus what the command had
/// done before it failed ([`Error::Partial`]).
pub(crate) fn report_error(e: Error, json_mode: bool, exit: u8, verb: Verb) {
    let kind = e.kind();
    let code = e.reference_code(verb);
    let (e, done) = match e {
        Error::Partial { error, done } => (*error, done),
        other => (other, serde_json::Map::new()),
    };
    let chain = format!("{:#}", anyhow::Error::new(e));
    eprintln!("error: {chain}");
    if json_mode {
        let mut doc = serde_json::Map::new();
        doc.insert("status".into(), "error".into());
        doc.insert("code".into(), code.into());
        doc.insert("message".into(), chain.clone().into());
        doc.insert(
            "error".into(),
            serde_json::json!({ "kind": kind, "message": chain, "exit": exit }),
        );
        for (k, v) in done {
            doc.entry(k).or_insert(v);
        }
        let _ = json(&serde_json::Value::Object(doc), false);
    }
}

/// A value as JSON for output: like [`Value::to_json`], except that bytes are the reference's
/// `{"_bytes": "<base64url, unpadded>"}` (what its clients decode), not `{"$bytes": hex}`.
pub(crate) fn value_json(v: &Value) -> serde_json::Value {
    use base64::Engine as _;
    match v {
        Value::Bytes(b) => serde_json::json!({
            "_bytes": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        }),
        Value::List(items) => serde_json::Value::Array(items.iter().map(value_json).collect()),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), value_json(v))).collect())
        }
        other => other.to_json(),
    }
}

/// Left-aligned columns with a header row, separated by two spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = render(&mut headers.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&render(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `450ms`, `12s`, `3m05s`, `2h07m`, `3d04h`.
pub(crate) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `812 KiB`, `12.4 MiB`, `1.2 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB * KIB {
        format!("{:.0} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / KIB / KIB)
    } else {
        format!("{:.1} GiB", b / KIB / KIB / KIB)
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2025-01-31T12:00:01.234Z`.
pub(crate) fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86400) as i64);
    let rem = secs % 86400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A value for people: text as it is, anything else as compact JSON.
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => value_json(other).to_string(),
    }
}

/// `name(a: int, b: int) -> int` from an interface entry
/// `{"name", "params": [{"name","type"}], "returns"}` (events have no `returns`).
pub(crate) fn signature(entry: &Value) -> String {
    let name = entry.get("name").and_then(Value::as_str).unwrap_or("?");
    let params: Vec<String> = entry
        .get("params")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let n = p.get("name").and_then(Value::as_str).unwrap_or("_");
            match p.get("type").and_then(Value::as_str) {
                Some(t) => format!("{n}: {t}"),
                None => n.to_owned(),
            }
        })
        .collect();
    let mut s = format!("{name}({})", params.join(", "));
    if let Some(r) = entry.get("returns") {
        let r = value_text(r);
        if !r.is_empty() && r != "null" {
            s.push_str(" -> ");
            s.push_str(&r);
        }
    }
    s
}

/// A text field of a map value, or `-`.
pub(crate) fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(x) => value_text(x),
    }
}

/// Milliseconds field as a duration, or `-`.
pub(crate) fn millis_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_u64)
        .map_or_else(|| "-".to_owned(), |ms| duration(Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(450)), "450ms");
        assert_eq!(duration(Duration::from_secs(12)), "12s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(7620)), "2h07m");
        assert_eq!(duration(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d04h");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_738_324_801_234);
        assert_eq!(timestamp(t), "2025-01-31T12:00:01.234Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["NAME", "STATE"],
            &[
                vec!["calc".into(), "ready".into()],
                vec!["greeter".into(), "-".into()],
            ],
        );
        assert_eq!(t, "NAME     STATE\ncalc     ready\ngreeter  -");
    }

    #[test]
    fn signatures() {
        let m = Value::from_json(serde_json::json!({
            "name": "add",
            "params": [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}],
            "returns": "int"
        }));
        assert_eq!(signature(&m), "add(a: int, b: int) -> int");
        let e = Value::from_json(serde_json::json!({"name": "tick", "params": []}));
        assert_eq!(signature(&e), "tick()");
    }

    #[test]
    fn bytes_are_base64url_in_output() {
        let v = Value::List(vec![
            Value::Bytes(vec![0, 0x10, 0xff, 0x80].into()),
            Value::Int(1),
        ]);
        assert_eq!(value_json(&v), serde_json::json!([{"_bytes": "ABD_gA"}, 1]));
    }

    #[test]
    fn sizes() {
        assert_eq!(size(812 * 1024), "812 KiB");
        assert_eq!(size(13 * 1024 * 1024), "13.0 MiB");
    }
}
