//! `logoscore call MODULE METHOD ARG…`: one call through the core, its result on stdout.
//!
//! Owns the argument notation (see [`parse_arg`]): every ARG is a JSON value; a bare word that
//! cannot be mistaken for JSON is text; `@FILE` reads one JSON value from a file (`@-` from
//! stdin). Output: text results as they are and anything else as JSON; with `--json` always
//! the JSON document of the result. Errors keep the module's own message.

use crate::Ctx;
use crate::client::{CALL_TIMEOUT, Client, with_context};
use crate::error::Error;
use crate::output;
use logos_wire::Value;
use std::io::Read as _;

pub(crate) async fn run(
    ctx: &Ctx,
    module: String,
    method: String,
    args: Vec<String>,
) -> Result<(), Error> {
    let values = args
        .iter()
        .enumerate()
        .map(|(i, a)| parse_arg(i + 1, a))
        .collect::<Result<Vec<Value>, Error>>()?;
    let client = Client::connect(ctx).await?;
    let result = client
        .call_fault(&module, &method, values, CALL_TIMEOUT)
        .await
        .map_err(|f| with_context(f, &module, &method))?;
    if ctx.json {
        output::json(&result.to_json(), false)?;
    } else {
        output::line(&output::value_text(&result))?;
    }
    Ok(())
}

/// Parses argument number `n` (1-based, for messages).
///
/// 1. `@PATH`: the file's content must be one JSON value (`@-`: standard input).
/// 2. Valid JSON: that value (`2`, `-1.5`, `"x"`, `[1]`, `{"a":1}`, `true`, `null`).
/// 3. Otherwise text, unless it could be mistaken for JSON: it starts with `{`, `[`, `"`, a
///    digit, `-`, `+` or `.`, or is `true`/`false`/`null`/`nan`/`inf` in another case. Those
///    are refused with the parse error and how to quote.
///
/// # Errors
/// [`Error::Usage`] naming the argument (or the file) and why.
pub(crate) fn parse_arg(n: usize, arg: &str) -> Result<Value, Error> {
    if let Some(path) = arg.strip_prefix('@') {
        let (name, text) = if path == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::Usage(format!("argument {n} (@-): cannot read stdin: {e}")))?;
            ("standard input".to_owned(), s)
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Usage(format!("argument {n} ({arg}): cannot read {path}: {e}"))
            })?;
            (path.to_owned(), text)
        };
        return serde_json::from_str::<serde_json::Value>(&text)
            .map(Value::from_json)
            .map_err(|e| {
                Error::Usage(format!(
                    "argument {n} ({arg}): {name} does not hold one JSON value: {e}"
                ))
            });
    }
    match serde_json::from_str::<serde_json::Value>(arg) {
        Ok(v) => Ok(Value::from_json(v)),
        Err(e) if looks_like_json(arg) => Err(Error::Usage(format!(
            "argument {n} ({arg:?}) is not valid JSON: {e}; to send it as text, quote it as JSON: '{}'",
            serde_json::Value::String(arg.to_owned())
        ))),
        Err(_) => Ok(Value::Text(arg.to_owned())),
    }
}

/// Whether a string that failed to parse as JSON was probably meant as JSON.
fn looks_like_json(arg: &str) -> bool {
    let t = arg.trim();
    let first = t.chars().next();
    matches!(first, Some('{' | '[' | '"' | '-' | '+' | '.' | '0'..='9'))
        || ["true", "false", "null", "nan", "inf", "infinity", "none"]
            .iter()
            .any(|w| t.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn ok(arg: &str) -> Value {
        parse_arg(1, arg).unwrap_or_else(|e| panic!("{arg:?}: {e}"))
    }

    fn refused(arg: &str) -> String {
        match parse_arg(2, arg) {
            Err(Error::Usage(m)) => m,
            other => panic!("{arg:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn json_values() {
        assert_eq!(ok("2"), Value::Int(2));
        assert_eq!(ok("-5"), Value::Int(-5));
        assert_eq!(ok("1.5"), Value::Float(1.5));
        assert_eq!(ok("18446744073709551615"), Value::UInt(u64::MAX));
        assert_eq!(ok("true"), Value::Bool(true));
        assert_eq!(ok("null"), Value::Null);
        assert_eq!(ok("\"42\""), Value::Text("42".into()));
        assert_eq!(
            ok("[1,\"a\"]"),
            Value::List(vec![Value::Int(1), Value::Text("a".into())])
        );
        assert_eq!(ok("{\"$bytes\":\"00ff\"}"), Value::Bytes(vec![0, 255]));
    }

    #[test]
    fn plain_words_are_text() {
        assert_eq!(ok("Ada"), Value::Text("Ada".into()));
        assert_eq!(ok("hello world"), Value::Text("hello world".into()));
        assert_eq!(ok(""), Value::Text(String::new()));
        assert_eq!(ok("a1"), Value::Text("a1".into()));
    }

    #[test]
    fn things_that_look_like_json_must_be_json() {
        for arg in [
            "0x10", "1e", "01", "[1,", "{a:1}", "\"open", "True", "NULL", "+1", ".5", "-x", "NaN",
        ] {
            let m = refused(arg);
            assert!(m.starts_with("argument 2"), "{m}");
            assert!(m.contains("quote it"), "{m}");
        }
    }

    #[test]
    fn files_hold_one_json_value() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let good = dir.path().join("good.json");
        let bad = dir.path().join("bad.json");
        std::fs::File::create(&good)
            .and_then(|mut f| f.write_all(b"{\"k\": [1, 2]}\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&bad, "not json").unwrap_or_else(|e| panic!("{e}"));
        let v = ok(&format!("@{}", good.display()));
        assert_eq!(
            v.get("k"),
            Some(&Value::List(vec![Value::Int(1), Value::Int(2)]))
        );
        let m = refused(&format!("@{}", bad.display()));
        assert!(m.contains("bad.json does not hold one JSON value"), "{m}");
        let m = refused(&format!("@{}/missing.json", dir.path().display()));
        assert!(m.contains("missing.json"), "{m}");
    }
}
