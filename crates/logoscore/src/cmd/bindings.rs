//! `logoscore bindings NAME --lang rust|python|ts [--interface FILE] [--out FILE]`: a typed
//! client of module NAME, generated from its interface (`core.getPluginMethods`, served while
//! it is loaded, or a saved interface JSON with `--interface`), so callers write
//! `calc.add(2, 3)` instead of naming methods in strings.
//!
//! Generation is a pure function of the interface: the same interface always gives the same
//! bytes (methods and events in interface order, nothing time- or machine-dependent), so a
//! generated file can be committed and checked for staleness. Reads the interface, writes the
//! client; never calls the module.
//!
//! Types map as docs/architecture.md §5 names them: `int` → i64 / int / number (bigint-free:
//! TypeScript callers keep to ±2^53), `float`, `bool`, `text`, `bytes` (ByteBuf / bytes /
//! Uint8Array), `null`, `list<T>`, `map<T>`, `optional<T>`; `any` and names the interface
//! does not define map to the language's "any value" type.

use crate::Ctx;
use crate::client::Client;
use crate::error::Error;
use crate::output;
use logos_wire::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The client's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// A struct over `logos_sdk::Client` (async methods returning `Result<T, Fault>`).
    Rust,
    /// A class over `logos_module.Client` (async methods, `on_<event>` subscriptions).
    Python,
    /// A TypeScript class over any `call(module, method, args)` transport.
    Ts,
}

/// What `bindings` needs.
#[derive(Debug, clap::Args)]
pub(crate) struct BindingsArgs {
    /// The module whose client to generate (it must be loaded, unless --interface is given).
    pub name: String,
    /// The client's language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Read the interface from this JSON file (`logoscore call core getPluginMethods NAME
    /// --json` prints one) instead of asking a running core.
    #[arg(long, value_name = "FILE")]
    pub interface: Option<PathBuf>,
    /// Write the client here instead of to standard output.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub(crate) async fn run(ctx: &Ctx, args: BindingsArgs) -> Result<(), Error> {
    let interface = match &args.interface {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Usage(format!("{} is not JSON: {e}", path.display())))?;
            // `logoscore call … --json` wraps the interface as `result`.
            let json = json.get("result").cloned().unwrap_or(json);
            Value::from_json(json)
        }
        None => {
            let client = Client::connect(ctx).await?;
            client
                .core("getPluginMethods", vec![Value::from(args.name.as_str())])
                .await?
        }
    };
    let iface = Interface::read(&args.name, &interface)?;
    let code = match args.lang {
        Lang::Rust => rust(&iface),
        Lang::Python => python(&iface),
        Lang::Ts => typescript(&iface),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &code)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            output::line(&format!(
                "wrote the {} client of {} to {}",
                lang_name(args.lang),
                iface.name,
                path.display()
            ))?;
        }
        None => {
            output::line(code.trim_end())?;
        }
    }
    Ok(())
}

fn lang_name(l: Lang) -> &'static str {
    match l {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Ts => "TypeScript",
    }
}

/// A logos type, parsed from its interface name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ty {
    Int,
    Float,
    Bool,
    Text,
    Bytes,
    Null,
    Any,
    List(Box<Ty>),
    Map(Box<Ty>),
    Optional(Box<Ty>),
}

impl Ty {
    /// `list<optional<int>>` and the rest; an unknown name is `Any`.
    pub(crate) fn parse(s: &str) -> Ty {
        let s = s.trim();
        let inner = |prefix: &str| {
            s.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix('>'))
                .map(|r| Box::new(Ty::parse(r)))
        };
        match s {
            "int" => Ty::Int,
            "float" => Ty::Float,
            "bool" => Ty::Bool,
            "text" => Ty::Text,
            "bytes" => Ty::Bytes,
            "null" => Ty::Null,
            _ => {
                if let Some(t) = inner("list<") {
                    Ty::List(t)
                } else if let Some(t) = inner("map<") {
                    Ty::Map(t)
                } else if let Some(t) = inner("optional<") {
                    Ty::Optional(t)
                } else {
                    Ty::Any
                }
            }
        }
    }
}

struct Param {
    name: String,
    ty: Ty,
    raw: String,
}

struct Method {
    name: String,
    params: Vec<Param>,
    returns: Ty,
    raw_returns: String,
}

struct Event {
    name: String,
    params: Vec<Param>,
}

pub(crate) struct Interface {
    name: String,
    version: String,
    methods: Vec<Method>,
    events: Vec<Event>,
}

impl Interface {
    /// Reads `{"name", "version", "methods", "events"}` (architecture.md §5).
    fn read(asked: &str, v: &Value) -> Result<Interface, Error> {
        let bad = |what: &str| {
            Error::Usage(format!(
                "the interface of {asked} is not {{\"name\", \"version\", \"methods\", \"events\"}}: {what}"
            ))
        };
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let params = |v: &Value| -> Result<Vec<Param>, Error> {
            v.get("params")
                .and_then(Value::as_list)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let name = text(p, "name").ok_or_else(|| bad("a parameter without a name"))?;
                    let raw = text(p, "type").unwrap_or_else(|| "any".to_owned());
                    Ok(Param {
                        name,
                        ty: Ty::parse(&raw),
                        raw,
                    })
                })
                .collect()
        };
        let name = text(v, "name").ok_or_else(|| bad("no name"))?;
        let methods = v
            .get("methods")
            .and_then(Value::as_list)
            .ok_or_else(|| bad("no methods list"))?
            .iter()
            .map(|m| {
                let raw_returns = text(m, "returns").unwrap_or_else(|| "any".to_owned());
                Ok(Method {
                    name: text(m, "name").ok_or_else(|| bad("a method without a name"))?,
                    params: params(m)?,
                    returns: Ty::parse(&raw_returns),
                    raw_returns,
                })
            })
            .collect::<Result<_, Error>>()?;
        let events = v
            .get("events")
            .and_then(Value::as_list)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                Ok(Event {
                    name: text(e, "name").ok_or_else(|| bad("an event without a name"))?,
                    params: params(e)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Interface {
            name,
            version: text(v, "version").unwrap_or_default(),
            methods,
            events,
        })
    }
}

fn signature(params: &[Param]) -> String {
    params
        .iter()
        .map(|p| format!("{}: {}", p.name, p.raw))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `streamTo` → `stream_to`; anything but ASCII letters and digits becomes `_`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `my-mod` → `MyMod`.
fn camel_type(name: &str) -> String {
    let mut s: String = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| p[..1].to_ascii_uppercase() + &p[1..])
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s.insert(0, 'M');
    }
    s
}

const RUST_KEYWORDS: [&str; 39] = [
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where",
    "while", "abstract", "try", "yield",
];

fn rust_ident(name: &str) -> String {
    let s = snake(name);
    if matches!(s.as_str(), "self" | "Self" | "super" | "crate") {
        format!("{s}_")
    } else if RUST_KEYWORDS.contains(&s.as_str()) {
        format!("r#{s}")
    } else {
        s
    }
}

fn rust_owned(t: &Ty) -> String {
    match t {
        Ty::Int => "i64".into(),
        Ty::Float => "f64".into(),
        Ty::Bool => "bool".into(),
        Ty::Text => "String".into(),
        Ty::Bytes => "logos_sdk::ByteBuf".into(),
        Ty::Null => "()".into(),
        Ty::Any => "logos_sdk::Value".into(),
        Ty::List(t) => format!("Vec<{}>", rust_owned(t)),
        Ty::Map(t) => format!("std::collections::BTreeMap<String, {}>", rust_owned(t)),
        Ty::Optional(t) => format!("Option<{}>", rust_owned(t)),
    }
}

fn rust_param(t: &Ty) -> String {
    match t {
        Ty::Text => "&str".into(),
        Ty::Bytes => "&logos_sdk::ByteBuf".into(),
        Ty::Any => "&logos_sdk::Value".into(),
        Ty::List(t) => format!("&[{}]", rust_owned(t)),
        Ty::Map(_) => format!("&{}", rust_owned(t)),
        _ => rust_owned(t),
    }
}

/// The Rust client: a struct over `logos_sdk::Client`.
pub(crate) fn rust(i: &Interface) -> String {
    let ty = format!("{}Client", camel_type(&i.name));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "//! Typed client of module `{}` {}, generated by `logoscore bindings {} --lang rust`\n\
         //! from its interface. Do not edit: regenerate.\n",
        i.name, i.version, i.name
    );
    let _ = writeln!(s, "/// Calls to `{}`, typed from its interface.", i.name);
    let _ = writeln!(
        s,
        "#[derive(Clone)]\npub struct {ty} {{\n    client: logos_sdk::Client,\n}}\n"
    );
    let _ = writeln!(s, "impl {ty} {{");
    let _ = writeln!(
        s,
        "    /// The module's name.\n    pub const MODULE: &'static str = {:?};",
        i.name
    );
    for e in &i.events {
        let constant = snake(&e.name).to_ascii_uppercase();
        let _ = writeln!(
            s,
            "    /// Event `{}({})`: subscribe with `ctx.on_event({ty}::MODULE, {ty}::{constant}, …)`.\n    pub const {constant}: &'static str = {:?};",
            e.name,
            signature(&e.params),
            e.name
        );
    }
    let _ = writeln!(
        s,
        "\n    /// A client for calls from the module that owns `ctx`.\n    pub fn new(ctx: &logos_sdk::Context) -> Self {{\n        Self {{\n            client: ctx.client(Self::MODULE),\n        }}\n    }}"
    );
    for m in &i.methods {
        let params: Vec<String> = m
            .params
            .iter()
            .map(|p| format!("{}: {}", rust_ident(&p.name), rust_param(&p.ty)))
            .collect();
        let args: Vec<String> = m.params.iter().map(|p| rust_ident(&p.name)).collect();
        let tuple = match args.len() {
            0 => "()".to_owned(),
            1 => format!("({},)", args[0]),
            _ => format!("({})", args.join(", ")),
        };
        let _ = writeln!(
            s,
            "\n    /// `{}.{}({}) -> {}`\n    pub async fn {}(&self{}) -> Result<{}, logos_sdk::Fault> {{\n        self.client.call({:?}, {tuple}).await\n    }}",
            i.name,
            m.name,
            signature(&m.params),
            m.raw_returns,
            rust_ident(&m.name),
            params.iter().map(|p| format!(", {p}")).collect::<String>(),
            rust_owned(&m.returns),
            m.name,
        );
    }
    s.push_str("}\n");
    s
}

const PY_KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

fn py_ident(name: &str) -> String {
    let s = snake(name);
    if PY_KEYWORDS.contains(&s.as_str()) || s == "self" {
        format!("{s}_")
    } else {
        s
    }
}

fn py_type(t: &Ty) -> String {
    match t {
        Ty::Int => "int".into(),
        Ty::Float => "float".into(),
        Ty::Bool => "bool".into(),
        Ty::Text => "str".into(),
        Ty::Bytes => "bytes".into(),
        Ty::Null => "None".into(),
        Ty::Any => "Any".into(),
        Ty::List(t) => format!("list[{}]", py_type(t)),
        Ty::Map(t) => format!("dict[str, {}]", py_type(t)),
        Ty::Optional(t) => format!("{} | None", py_type(t)),
    }
}

/// The Python client: a class over `logos_module.Client`.
pub(crate) fn python(i: &Interface) -> String {
    let ty = format!("{}Client", camel_type(&i.name));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\"\"\"Typed client of module `{}` {}, generated by `logoscore bindings {} --lang python`\nfrom its interface. Do not edit: regenerate.\"\"\"\n\nfrom __future__ import annotations\n\nfrom typing import Any, Callable\n\nfrom logos_module import Context\n\n",
        i.name, i.version, i.name
    );
    let _ = writeln!(
        s,
        "class {ty}:\n    \"\"\"Calls to `{}`, typed from its interface.\"\"\"\n\n    MODULE = {:?}\n",
        i.name, i.name
    );
    let _ = writeln!(
        s,
        "    def __init__(self, ctx: Context, timeout: float = 30.0):\n        self._client = ctx.client(self.MODULE, timeout)"
    );
    for m in &i.methods {
        let params: String = m
            .params
            .iter()
            .map(|p| format!(", {}: {}", py_ident(&p.name), py_type(&p.ty)))
            .collect();
        let args: String = m
            .params
            .iter()
            .map(|p| format!(", {}", py_ident(&p.name)))
            .collect();
        let _ = writeln!(
            s,
            "\n    async def {}(self{params}) -> {}:\n        \"\"\"`{}.{}({}) -> {}`\"\"\"\n        return await self._client.call({:?}{args})",
            py_ident(&m.name),
            py_type(&m.returns),
            i.name,
            m.name,
            signature(&m.params),
            m.raw_returns,
            m.name
        );
    }
    for e in &i.events {
        let types: Vec<String> = e.params.iter().map(|p| py_type(&p.ty)).collect();
        let _ = writeln!(
            s,
            "\n    def on_{}(self, handler: Callable[[{}], Any]) -> None:\n        \"\"\"Runs `handler` for each `{}({})` event.\"\"\"\n        self._client.on_event({:?}, handler)",
            snake(&e.name),
            types.join(", "),
            e.name,
            signature(&e.params),
            e.name
        );
    }
    s
}

fn ts_type(t: &Ty) -> String {
    match t {
        Ty::Int | Ty::Float => "number".into(),
        Ty::Bool => "boolean".into(),
        Ty::Text => "string".into(),
        Ty::Bytes => "Uint8Array".into(),
        Ty::Null => "null".into(),
        Ty::Any => "unknown".into(),
        Ty::List(t) => format!("Array<{}>", ts_type(t)),
        Ty::Map(t) => format!("Record<string, {}>", ts_type(t)),
        Ty::Optional(t) => format!("{} | null", ts_type(t)),
    }
}

fn ts_ident(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

/// The TypeScript client: a class over any transport that can make a call.
pub(crate) fn typescript(i: &Interface) -> String {
    let ty = format!("{}Client", camel_type(&i.name));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// Typed client of module `{}` {}, generated by `logoscore bindings {} --lang ts`\n// from its interface. Do not edit: regenerate.\n",
        i.name, i.version, i.name
    );
    s.push_str(
        "/** Whatever carries a call to a module (a binding of the C API, a bridge, a test double). */\n\
         export interface LogosCaller {\n  call(module: string, method: string, args: unknown[]): Promise<unknown>;\n}\n\n",
    );
    for e in &i.events {
        let fields: Vec<String> = e
            .params
            .iter()
            .map(|p| format!("{}: {}", ts_ident(&p.name), ts_type(&p.ty)))
            .collect();
        let _ = writeln!(
            s,
            "/** Data of event `{}({})`, in order. */\nexport type {}{}Event = [{}];\n",
            e.name,
            signature(&e.params),
            camel_type(&i.name),
            camel_type(&e.name),
            fields.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "/** Calls to `{}`, typed from its interface. */\nexport class {ty} {{\n  static readonly MODULE = {:?};\n\n  constructor(private readonly caller: LogosCaller) {{}}",
        i.name, i.name
    );
    for m in &i.methods {
        let params: Vec<String> = m
            .params
            .iter()
            .map(|p| format!("{}: {}", ts_ident(&p.name), ts_type(&p.ty)))
            .collect();
        let args: Vec<String> = m.params.iter().map(|p| ts_ident(&p.name)).collect();
        let _ = writeln!(
            s,
            "\n  /** `{}.{}({}) -> {}` */\n  async {}({}): Promise<{}> {{\n    return (await this.caller.call({ty}.MODULE, {:?}, [{}])) as {};\n  }}",
            i.name,
            m.name,
            signature(&m.params),
            m.raw_returns,
            ts_ident(&m.name),
            params.join(", "),
            ts_type(&m.returns),
            m.name,
            args.join(", "),
            ts_type(&m.returns),
        );
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse() {
        assert_eq!(
            Ty::parse("list<optional<int>>"),
            Ty::List(Box::new(Ty::Optional(Box::new(Ty::Int))))
        );
        assert_eq!(Ty::parse("map<bytes>"), Ty::Map(Box::new(Ty::Bytes)));
        assert_eq!(Ty::parse("StreamReport"), Ty::Any);
        assert_eq!(Ty::parse("list<"), Ty::Any);
    }

    #[test]
    fn names() {
        assert_eq!(snake("streamTo"), "stream_to");
        assert_eq!(rust_ident("type"), "r#type");
        assert_eq!(rust_ident("self"), "self_");
        assert_eq!(py_ident("from"), "from_");
        assert_eq!(camel_type("my-mod"), "MyMod");
        assert_eq!(ts_ident("a-b"), "a_b");
    }
}
