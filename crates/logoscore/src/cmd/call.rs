//! `logoscore call MODULE METHOD ARG…` (and the reference's `module M method F ARG…`): one call
//! through the core, its result on stdout.
//!
//! Owns the argument notation (see [`parse_arg`]). Output: text results as they are and
//! anything else as JSON; with `--json` the reference's envelope
//! `{"status": "ok", "module", "method", "result"}` (bytes as `{"_bytes": "<base64url>"}`).
//! Errors keep the module's own message.

use crate::Ctx;
use crate::client::{CALL_TIMEOUT, Client, with_context};
use crate::error::Error;
use crate::output;
use base64::Engine as _;
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
        .call_mapped(&module, &method, values, CALL_TIMEOUT, |f| {
            with_context(f, &module, &method)
        })
        .await?;
    if ctx.json {
        output::json(
            &serde_json::json!({
                "status": "ok",
                "module": module,
                "method": method,
                "result": output::value_json(&result),
            }),
            false,
        )?;
    } else {
        output::line(&output::value_text(&result))?;
    }
    Ok(())
}

/// Parses argument number `n` (1-based, for messages). The first rule that matches wins:
///
/// 1. `json:VALUE` is VALUE parsed as JSON; `json:@FILE` the file parsed as JSON (`json:@-`:
///    standard input).
/// 2. `str:TEXT` is TEXT, verbatim.
/// 3. `@FILE` is the file's contents as text (`@-`: standard input).
/// 4. A word that looks like an unknown prefix is refused (see [`unknown_prefix`]).
/// 5. Valid JSON is that value (`2`, `-1.5`, `"x"`, `[1]`, `{"a":1}`, `true`, `null`).
/// 6. Otherwise text, unless it could be mistaken for JSON: it starts with `{`, `[`, `"`, a
///    digit, `+`, `.`, or `-` followed by a digit or `.`, or is `true`/`false`/`null`/`nan`/
///    `inf` in another case. Those are refused with the parse error and how to quote.
///
/// In JSON, an object that is exactly `{"_bytes": "<base64url>"}` (the reference's form) or
/// `{"$bytes": "<hex>"}` (ours) is bytes; a malformed one is refused.
///
/// # Errors
/// [`Error::Usage`] naming the argument (or the file) and why.
pub(crate) fn parse_arg(n: usize, arg: &str) -> Result<Value, Error> {
    let usage = |why: String| Error::Usage(format!("argument {n} ({arg:?}): {why}"));
    if let Some(body) = arg.strip_prefix("json:") {
        let (text, from) = match body.strip_prefix('@') {
            Some(path) => (read_file(path).map_err(usage)?, describe(path)),
            None => (body.to_owned(), "it".to_owned()),
        };
        let json = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| usage(format!("{from} is not valid JSON: {e}")))?;
        return json_value(json).map_err(usage);
    }
    if let Some(text) = arg.strip_prefix("str:") {
        return Ok(Value::Text(text.to_owned()));
    }
    if let Some(path) = arg.strip_prefix('@') {
        return read_file(path).map(Value::Text).map_err(usage);
    }
    if let Some(prefix) = unknown_prefix(arg) {
        return Err(usage(format!(
            "`{prefix}:` looks like a prefix, and the known ones are json: and str:; to send this as text write 'str:{arg}'"
        )));
    }
    match serde_json::from_str::<serde_json::Value>(arg) {
        Ok(v) => json_value(v).map_err(usage),
        Err(e) if looks_like_json(arg) => Err(usage(format!(
            "not valid JSON: {e}; to send it as text, quote it as JSON ('{}') or write 'str:{arg}'",
            serde_json::Value::String(arg.to_owned())
        ))),
        Err(_) => Ok(Value::Text(arg.to_owned())),
    }
}

/// `standard input` or the file name, for messages.
fn describe(path: &str) -> String {
    if path == "-" {
        "standard input".to_owned()
    } else {
        path.to_owned()
    }
}

/// The contents of `path` (`-`: standard input) as UTF-8 text.
fn read_file(path: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = if path == "-" {
        std::io::stdin().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    read.map_err(|e| format!("cannot read {}: {e}", describe(path)))?;
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "{} is not UTF-8 text; send bytes as json:{{\"_bytes\": \"<base64url>\"}}",
            describe(path)
        )
    })
}

/// JSON to a value, with the two spellings of bytes. A malformed bytes object is an error,
/// never silently a map.
fn json_value(json: serde_json::Value) -> Result<Value, String> {
    match json {
        serde_json::Value::Array(items) => Ok(Value::List(
            items
                .into_iter()
                .map(json_value)
                .collect::<Result<_, _>>()?,
        )),
        serde_json::Value::Object(obj) => {
            if obj.len() == 1 {
                if let Some(v) = obj.get("_bytes") {
                    let text = v.as_str().ok_or("\"_bytes\" must be a base64url string")?;
                    let engine = base64::engine::GeneralPurpose::new(
                        &base64::alphabet::URL_SAFE,
                        base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(
                            base64::engine::DecodePaddingMode::Indifferent,
                        ),
                    );
                    return engine
                        .decode(text)
                        .map(Value::from)
                        .map_err(|e| format!("\"_bytes\": {text:?} is not base64url: {e}"));
                }
                if let Some(v) = obj.get("$bytes") {
                    let text = v.as_str().ok_or("\"$bytes\" must be a hex string")?;
                    return match Value::from_json(serde_json::json!({ "$bytes": text })) {
                        b @ Value::Bytes(_) => Ok(b),
                        _ => Err(format!(
                            "\"$bytes\": {text:?} is not hex (an even number of 0-9a-f)"
                        )),
                    };
                }
            }
            Ok(Value::Map(
                obj.into_iter()
                    .map(|(k, v)| json_value(v).map(|v| (k, v)))
                    .collect::<Result<_, _>>()?,
            ))
        }
        other => Ok(Value::from_json(other)),
    }
}

/// Words that, before a `:`, read as a type or a misspelt prefix.
const PREFIX_WORDS: [&str; 28] = [
    "json", "jsn", "jsno", "josn", "jso", "jason", "str", "string", "text", "txt", "bytes", "byte",
    "hex", "b64", "base64", "file", "int", "integer", "uint", "float", "double", "num", "number",
    "bool", "boolean", "list", "map", "raw",
];

/// The prefix of an argument that looks like `prefix:value` with a prefix logoscore does not
/// know: a type-like or misspelt word (`JSON:`, `jsn:`, `int:`, `bytes:`) before `:`, or any
/// word before `:` when JSON or a file follows (`x:[1]`, `x:@f`). Plain text with a colon
/// (`key:value`, `http://…`) is not.
fn unknown_prefix(arg: &str) -> Option<&str> {
    let (word, rest) = arg.split_once(':')?;
    if word.is_empty()
        || word.len() > 16
        || !word.starts_with(|c: char| c.is_ascii_alphabetic())
        || !word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    let typed = PREFIX_WORDS.iter().any(|w| word.eq_ignore_ascii_case(w));
    let structured = rest.starts_with(['[', '{', '"', '@']);
    (typed || structured).then_some(word)
}

/// Whether a string that failed to parse as JSON was probably meant as JSON.
fn looks_like_json(arg: &str) -> bool {
    let t = arg.trim();
    let mut chars = t.chars();
    let first = chars.next();
    let negative_number = first == Some('-') && matches!(chars.next(), Some('0'..='9' | '.'));
    negative_number
        || matches!(first, Some('{' | '[' | '"' | '+' | '.' | '0'..='9'))
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
        assert_eq!(
            ok("{\"$bytes\":\"00ff\"}"),
            Value::Bytes(vec![0, 255].into())
        );
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
            "0x10", "1e", "01", "[1,", "{a:1}", "\"open", "True", "NULL", "+1", ".5", "-1x", "-.",
            "NaN",
        ] {
            let m = refused(arg);
            assert!(m.starts_with("argument 2"), "{m}");
            assert!(m.contains("quote it") && m.contains("str:"), "{m}");
        }
    }

    #[test]
    fn words_starting_with_a_dash_are_text() {
        assert_eq!(ok("-x"), Value::Text("-x".into()));
        assert_eq!(ok("--flag"), Value::Text("--flag".into()));
        assert_eq!(ok("-"), Value::Text("-".into()));
        assert_eq!(ok("-7"), Value::Int(-7));
        assert_eq!(ok("-2.5"), Value::Float(-2.5));
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            ok("json:[1,2,3]"),
            Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)])
        );
        assert_eq!(ok("json:\"42\""), Value::Text("42".into()));
        assert_eq!(ok("json:null"), Value::Null);
        assert_eq!(ok("json:18446744073709551615"), Value::UInt(u64::MAX));
        assert_eq!(ok("str:42"), Value::Text("42".into()));
        assert_eq!(ok("str:json:x"), Value::Text("json:x".into()));
        assert_eq!(ok("str:"), Value::Text(String::new()));
        assert_eq!(ok("str:@x"), Value::Text("@x".into()));
        assert!(refused("json:[1,").contains("not valid JSON"));
        assert!(refused("json:").contains("not valid JSON"));
    }

    #[test]
    fn unknown_prefixes_are_refused_not_sent_as_text() {
        for arg in [
            "jsn:[1]",
            "JSON:[1]",
            "Json:{}",
            "int:5",
            "bytes:00",
            "text:hi",
            "x:[1]",
            "k:{\"a\":1}",
            "f:@file",
        ] {
            let m = refused(arg);
            assert!(m.contains("looks like a prefix"), "{arg}: {m}");
            assert!(m.contains(&format!("'str:{arg}'")), "{arg}: {m}");
        }
        for text in [
            "key:value",
            "http://example.com/a",
            "a:b:c",
            ":x",
            "C:\\dir",
        ] {
            assert_eq!(ok(text), Value::Text(text.into()), "{text}");
        }
    }

    #[test]
    fn bytes_in_both_spellings() {
        assert_eq!(
            ok("json:{\"_bytes\":\"aGVsbG8\"}"),
            Value::from(b"hello".to_vec())
        );
        assert_eq!(
            ok("json:{\"_bytes\":\"ABD_gA==\"}"),
            Value::Bytes(vec![0, 0x10, 0xff, 0x80].into())
        );
        assert_eq!(ok("json:{\"_bytes\":\"\"}"), Value::Bytes(vec![].into()));
        assert_eq!(
            ok("{\"$bytes\":\"00ff\"}"),
            Value::Bytes(vec![0, 255].into())
        );
        assert_eq!(
            ok("json:[{\"_bytes\":\"AQ\"}]"),
            Value::List(vec![Value::Bytes(vec![1].into())])
        );
        assert!(refused("json:{\"_bytes\":\"!!\"}").contains("not base64url"));
        assert!(refused("json:{\"_bytes\":5}").contains("base64url string"));
        assert!(refused("json:{\"$bytes\":\"zz\"}").contains("not hex"));
        // Two keys: a map like any other.
        assert!(matches!(
            ok("json:{\"_bytes\":\"AQ\",\"x\":1}"),
            Value::Map(_)
        ));
    }

    #[test]
    fn files_are_text_and_json_files_are_json() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let good = dir.path().join("good.json");
        let bad = dir.path().join("bad.json");
        let binary = dir.path().join("blob");
        std::fs::File::create(&good)
            .and_then(|mut f| f.write_all(b"{\"k\": [1, 2]}\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&bad, "not json").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&binary, [0xff, 0xfe]).unwrap_or_else(|e| panic!("{e}"));
        // @FILE: the raw contents, as text.
        assert_eq!(
            ok(&format!("@{}", good.display())),
            Value::Text("{\"k\": [1, 2]}\n".into())
        );
        assert_eq!(
            ok(&format!("@{}", bad.display())),
            Value::Text("not json".into())
        );
        // json:@FILE: one JSON value.
        let v = ok(&format!("json:@{}", good.display()));
        assert_eq!(
            v.get("k"),
            Some(&Value::List(vec![Value::Int(1), Value::Int(2)]))
        );
        let m = refused(&format!("json:@{}", bad.display()));
        assert!(m.contains("bad.json is not valid JSON"), "{m}");
        let m = refused(&format!("@{}/missing.json", dir.path().display()));
        assert!(m.contains("missing.json"), "{m}");
        let m = refused(&format!("@{}", binary.display()));
        assert!(m.contains("not UTF-8") && m.contains("_bytes"), "{m}");
    }
}
