//! Wire names and interface type names derived from Rust syntax.
//!
//! Owns the two purely syntactic mappings both macros share: a Rust identifier to its
//! lowerCamelCase wire name, and a Rust type to its logos interface type name
//! (docs/architecture.md, "Module process contract" §5). Works on tokens only: it never
//! resolves a type, so an alias or a re-export under another name maps by the name written.

use heck::ToLowerCamelCase;
use syn::{GenericArgument, PathArguments, Type};

/// The wire name of a Rust method or variant name: lowerCamelCase, raw prefix and leading
/// underscores dropped (`stream_to` → `streamTo`, `ChatMessage` → `chatMessage`).
pub fn wire_name(rust: &str) -> String {
    let bare = rust.strip_prefix("r#").unwrap_or(rust);
    bare.trim_start_matches('_').to_lower_camel_case()
}

/// A parameter or field name as shown in the interface: the identifier without `r#` or leading
/// underscores, otherwise as written.
pub fn param_name(rust: &str) -> String {
    let bare = rust.strip_prefix("r#").unwrap_or(rust);
    let trimmed = bare.trim_start_matches('_');
    if trimmed.is_empty() {
        bare.to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The logos interface type name of a Rust type.
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
            Some(seg) => path_type_name(&seg.ident.to_string(), &seg.arguments),
            None => "any".to_owned(),
        },
        // `&[u8]` borrows the bytes of a `bytes` argument (a list does not decode into it).
        Type::Reference(r) if is_u8_slice(&r.elem) => "bytes".to_owned(),
        Type::Reference(r) => type_name(&r.elem),
        Type::Paren(p) => type_name(&p.elem),
        Type::Group(g) => type_name(&g.elem),
        Type::Tuple(t) if t.elems.is_empty() => "null".to_owned(),
        Type::Tuple(_) => "list<any>".to_owned(),
        Type::Array(a) => format!("list<{}>", type_name(&a.elem)),
        Type::Slice(s) => format!("list<{}>", type_name(&s.elem)),
        _ => "any".to_owned(),
    }
}

fn is_u8_slice(ty: &Type) -> bool {
    matches!(ty, Type::Slice(s) if matches!(&*s.elem, Type::Path(p) if p.path.is_ident("u8")))
}

/// The type a method's return value maps to: the `Ok` type of a `Result`, `null` when nothing
/// is returned.
pub fn return_type_name(output: &syn::ReturnType) -> String {
    match output {
        syn::ReturnType::Default => "null".to_owned(),
        syn::ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => type_name(ok),
            None => type_name(ty),
        },
    }
}

/// `Some(T)` when `ty` is written as `Result<T, ..>` (any path ending in `Result`).
pub fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Result" {
        return None;
    }
    generic_types(&seg.arguments).into_iter().next()
}

fn path_type_name(ident: &str, args: &PathArguments) -> String {
    let inner = generic_types(args);
    let first = || {
        inner
            .first()
            .map_or_else(|| "any".to_owned(), |t| type_name(t))
    };
    let last = || {
        inner
            .last()
            .map_or_else(|| "any".to_owned(), |t| type_name(t))
    };
    match ident {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" | "NonZeroU8" | "NonZeroU16" | "NonZeroU32" | "NonZeroU64" | "NonZeroI64" => {
            "int".to_owned()
        }
        "f32" | "f64" => "float".to_owned(),
        "bool" => "bool".to_owned(),
        "String" | "str" | "char" => "text".to_owned(),
        "ByteBuf" | "ByteArray" => "bytes".to_owned(),
        "Value" => "any".to_owned(),
        "Option" => format!("optional<{}>", first()),
        "Vec" | "VecDeque" | "LinkedList" | "HashSet" | "BTreeSet" | "BinaryHeap" => {
            format!("list<{}>", first())
        }
        "HashMap" | "BTreeMap" => format!("map<{}>", last()),
        "Box" | "Arc" | "Rc" | "Cow" => first(),
        "Result" => first(),
        other => other.to_owned(),
    }
}

fn generic_types(args: &PathArguments) -> Vec<&Type> {
    match args {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> Type {
        match syn::parse_str(s) {
            Ok(t) => t,
            Err(e) => panic!("bad test type {s}: {e}"),
        }
    }

    #[test]
    fn wire_names_are_lower_camel_case() {
        assert_eq!(wire_name("add"), "add");
        assert_eq!(wire_name("stream_to"), "streamTo");
        assert_eq!(wire_name("set_unhealthy"), "setUnhealthy");
        assert_eq!(wire_name("request_token"), "requestToken");
        assert_eq!(wire_name("r#type"), "type");
        assert_eq!(wire_name("_private_ish"), "privateIsh");
        assert_eq!(wire_name("ChatMessage"), "chatMessage");
        assert_eq!(wire_name("Tick"), "tick");
        assert_eq!(wire_name("URLChanged"), "urlChanged");
        assert_eq!(wire_name("add2_numbers"), "add2Numbers");
    }

    #[test]
    fn param_names_drop_raw_and_underscores() {
        assert_eq!(param_name("r#type"), "type");
        assert_eq!(param_name("_unused"), "unused");
        assert_eq!(param_name("_"), "_");
        assert_eq!(param_name("max_len"), "max_len");
    }

    #[test]
    fn type_names_follow_the_contract() {
        let cases = [
            ("i64", "int"),
            ("u8", "int"),
            ("f32", "float"),
            ("bool", "bool"),
            ("String", "text"),
            ("&str", "text"),
            ("&[u8]", "bytes"),
            ("Cow<'_, str>", "text"),
            ("logos_sdk::ByteBuf", "bytes"),
            ("serde_bytes::ByteBuf", "bytes"),
            ("Vec<u8>", "list<int>"),
            ("Value", "any"),
            ("logos_sdk::Value", "any"),
            ("()", "null"),
            ("Option<String>", "optional<text>"),
            ("Vec<Option<i64>>", "list<optional<int>>"),
            ("std::collections::HashMap<String, f64>", "map<float>"),
            ("BTreeMap<String, Vec<bool>>", "map<list<bool>>"),
            ("Box<i32>", "int"),
            ("[u16; 4]", "list<int>"),
            ("(i64, String)", "list<any>"),
            ("Message", "Message"),
            ("chat::Message<T>", "Message"),
        ];
        for (rust, logos) in cases {
            assert_eq!(type_name(&ty(rust)), logos, "{rust}");
        }
    }

    #[test]
    fn return_types_unwrap_result() {
        let out: syn::ReturnType = match syn::parse_str("-> Result<u64, String>") {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(return_type_name(&out), "int");
        assert_eq!(return_type_name(&syn::ReturnType::Default), "null");
    }
}
