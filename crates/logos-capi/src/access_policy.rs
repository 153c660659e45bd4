//! The reference implementation's access policy document, read for
//! `logos_core_set_access_policy`, and turned into the core's restrictions.
//!
//! The document: `{"version": 1, "mode": "enforce", "restrictions": {"<target>":
//! {"allowedCallers": ["<caller>", …]}}}`. Only `enforce` exists here: this core always
//! enforces its access policy (a module may call its dependencies and permissions), so a mode
//! that would only observe cannot be honoured and is an error, never a silent no-op. Each
//! restriction lets only the listed callers call its target (`logos::Builder::restrict`).
//! Stricter than the reference, which ignores what it does not know: an unknown key, a name
//! that is not a module name, or a built-in target is an error naming where it is, because a
//! misspelt key in a security policy must not quietly leave a module open. Pure: never touches
//! the core.

use crate::error::Error;
use logos::ModuleName;
use serde_json::Value as Json;

/// The parameter name used in errors.
const POLICY: &str = "policy_json";

/// One restriction: a target and the only callers it accepts.
pub(crate) type Restriction = (String, Vec<String>);

/// Reads a policy document. `Ok(None)` for an empty document (the reference's "clear").
///
/// # Errors
/// [`Error::Invalid`] naming what is wrong and where.
pub(crate) fn parse(policy_json: &str) -> Result<Option<Vec<Restriction>>, Error> {
    if policy_json.trim().is_empty() {
        return Ok(None);
    }
    let invalid = |reason: String| Error::Invalid {
        name: POLICY,
        reason,
    };
    let doc: Json = serde_json::from_str(policy_json).map_err(|e| {
        invalid(format!(
            "not JSON ({e}); pass {{\"version\": 1, \"mode\": \"enforce\", \"restrictions\": {{...}}}}"
        ))
    })?;
    let Json::Object(doc) = doc else {
        return Err(invalid(
            "expected a JSON object with \"version\", \"mode\" and \"restrictions\"".to_owned(),
        ));
    };
    if let Some(key) = doc
        .keys()
        .find(|k| !matches!(k.as_str(), "version" | "mode" | "restrictions"))
    {
        return Err(invalid(format!(
            "unknown key {key:?}; the keys are \"version\", \"mode\" and \"restrictions\""
        )));
    }
    match doc.get("version") {
        None => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => {
            return Err(invalid(format!(
                "\"version\" {v} is not supported; this core reads version 1"
            )));
        }
    }
    match doc.get("mode") {
        Some(Json::String(m)) if m == "enforce" => {}
        Some(Json::String(m)) => {
            return Err(invalid(format!(
                "\"mode\" {m:?} is not supported: only \"enforce\" is. This core always enforces access (a module may call its dependencies and permissions, and the restrictions here narrow that), so a policy that is not enforced cannot be honoured; use \"enforce\", or pass NULL to use the default policy"
            )));
        }
        Some(other) => {
            return Err(invalid(format!(
                "\"mode\" must be the string \"enforce\", got {other}"
            )));
        }
        None => {
            return Err(invalid(
                "\"mode\" is missing; set \"mode\": \"enforce\" (the only mode)".to_owned(),
            ));
        }
    }
    let restrictions = match doc.get("restrictions") {
        None | Some(Json::Null) => return Ok(Some(Vec::new())),
        Some(Json::Object(r)) => r,
        Some(other) => {
            return Err(invalid(format!(
                "\"restrictions\" must be an object of {{\"<module>\": {{\"allowedCallers\": [...]}}}}, got {other}"
            )));
        }
    };
    let mut out = Vec::new();
    for (target, entry) in restrictions {
        let at = format!("restrictions.{target}");
        let t = ModuleName::new(target).map_err(|e| invalid(format!("{at}: {e}")))?;
        if t.is_reserved() {
            return Err(invalid(format!(
                "{at}: {target} is a built-in module every module may call; it cannot be restricted"
            )));
        }
        let Json::Object(entry) = entry else {
            return Err(invalid(format!(
                "{at} must be an object {{\"allowedCallers\": [...]}}, got {entry}"
            )));
        };
        if let Some(key) = entry.keys().find(|k| *k != "allowedCallers") {
            return Err(invalid(format!(
                "{at}: unknown key {key:?}; the only key is \"allowedCallers\""
            )));
        }
        let callers = match entry.get("allowedCallers") {
            // No list: no caller is allowed (fails closed, as in the reference).
            None => Vec::new(),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, c)| match c {
                    Json::String(c) => ModuleName::new(c)
                        .map(ModuleName::into_string)
                        .map_err(|e| invalid(format!("{at}.allowedCallers[{i}]: {e}"))),
                    other => Err(invalid(format!(
                        "{at}.allowedCallers[{i}] must be a module name, got {other}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(invalid(format!(
                    "{at}.allowedCallers must be an array of module names, got {other}"
                )));
            }
        };
        out.push((target.clone(), callers));
    }
    // Sorted by module, whatever order serde_json's map keeps (a dependency elsewhere in the
    // workspace, cedar-policy-core, turns on its `preserve_order`).
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_reference_document() {
        let p = parse(
            r#"{"version": 1, "mode": "enforce", "restrictions": {
                "package_manager": {"allowedCallers": ["package_manager_ui"]},
                "calc": {"allowedCallers": []},
                "kv": {}
            }}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            p,
            vec![
                ("calc".to_owned(), vec![]),
                ("kv".to_owned(), vec![]),
                (
                    "package_manager".to_owned(),
                    vec!["package_manager_ui".to_owned()]
                ),
            ]
        );
        assert_eq!(parse(r#"{"mode":"enforce"}"#).unwrap(), Some(vec![]));
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("  ").unwrap(), None);
    }

    #[test]
    fn every_other_mode_is_an_error() {
        for mode in ["audit", "off", "enforced", ""] {
            let e = err(&format!(r#"{{"version":1,"mode":"{mode}"}}"#));
            assert!(
                e.starts_with(&format!(
                    "invalid policy_json: \"mode\" {mode:?} is not supported: only \"enforce\" is"
                )),
                "{e}"
            );
        }
        assert!(err(r#"{"version":1}"#).contains("\"mode\" is missing"));
        assert!(err(r#"{"mode":true}"#).contains("\"mode\" must be the string \"enforce\""));
    }

    #[test]
    fn bad_documents_name_the_place() {
        assert!(err("{").contains("not JSON"));
        assert!(err("[]").contains("expected a JSON object"));
        assert!(
            err(r#"{"mode":"enforce","version":2}"#).contains("\"version\" 2 is not supported")
        );
        assert!(
            err(r#"{"mode":"enforce","restriction":{}}"#).contains("unknown key \"restriction\"")
        );
        assert!(err(r#"{"mode":"enforce","restrictions":[]}"#).contains("must be an object"));
        let e = err(r#"{"mode":"enforce","restrictions":{"calc":{"allowedcallers":["a"]}}}"#);
        assert!(
            e.contains("restrictions.calc: unknown key \"allowedcallers\""),
            "{e}"
        );
        let e = err(r#"{"mode":"enforce","restrictions":{"calc":{"allowedCallers":["ok", 3]}}}"#);
        assert!(
            e.contains("restrictions.calc.allowedCallers[1] must be a module name, got 3"),
            "{e}"
        );
        let e =
            err(r#"{"mode":"enforce","restrictions":{"calc":{"allowedCallers":["Bad Name"]}}}"#);
        assert!(e.contains("restrictions.calc.allowedCallers[0]: "), "{e}");
        let e = err(r#"{"mode":"enforce","restrictions":{"core":{"allowedCallers":[]}}}"#);
        assert!(e.contains("core is a built-in module"), "{e}");
        let e = err(r#"{"mode":"enforce","restrictions":{"calc":{"allowedCallers":"greeter"}}}"#);
        assert!(e.contains("must be an array of module names"), "{e}");
    }
}
