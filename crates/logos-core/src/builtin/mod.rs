//! The built-in modules the core serves itself, over the same protocol as any module:
//! `core` (the RFC's Core Manager) and `capability_module` (tokens).
//!
//! Each built-in is one file exposing `handle(inner, caller, method, args)`. Argument checking
//! helpers live here so both report bad arguments the same way.

pub(crate) mod capability;
pub(crate) mod manager;

use logos_session::Fault;
use logos_wire::{ErrorCode, Value};

/// Text argument `index` named `name` of `module.method`.
pub(crate) fn text_arg<'a>(
    args: &'a [Value],
    index: usize,
    name: &str,
    method: &str,
) -> Result<&'a str, Fault> {
    match args.get(index) {
        Some(Value::Text(s)) => Ok(s),
        Some(other) => Err(Fault::new(
            ErrorCode::InvalidArgs,
            format!(
                "{method}: argument {index} ({name}) must be text, got {}",
                other.type_name()
            ),
        )),
        None => Err(Fault::new(
            ErrorCode::InvalidArgs,
            format!("{method}: missing argument {index} ({name})"),
        )),
    }
}

/// Module-name argument `index` named `name` of `module.method`: text no longer than a module
/// name can be, refused before anything looks it up (see `crate::name::check_name_len`).
pub(crate) fn name_arg<'a>(
    args: &'a [Value],
    index: usize,
    name: &str,
    method: &str,
) -> Result<&'a str, Fault> {
    let text = text_arg(args, index, name, method)?;
    crate::name::check_name_len(text).map_err(|e| {
        Fault::new(
            ErrorCode::InvalidArgs,
            format!("{method}: argument {index} ({name}): {e}"),
        )
    })?;
    Ok(text)
}

/// Optional bool argument.
pub(crate) fn bool_arg(
    args: &[Value],
    index: usize,
    name: &str,
    method: &str,
) -> Result<bool, Fault> {
    match args.get(index) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Fault::new(
            ErrorCode::InvalidArgs,
            format!(
                "{method}: argument {index} ({name}) must be a bool, got {}",
                other.type_name()
            ),
        )),
    }
}

/// Refuses more than `max` arguments.
pub(crate) fn at_most(args: &[Value], max: usize, method: &str) -> Result<(), Fault> {
    if args.len() > max {
        Err(Fault::new(
            ErrorCode::InvalidArgs,
            format!(
                "{method} takes at most {max} argument(s), got {}",
                args.len()
            ),
        ))
    } else {
        Ok(())
    }
}
