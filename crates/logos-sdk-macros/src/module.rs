//! Expansion of `#[module]`: an `impl` block becomes a `logos_sdk::Module` implementation.
//!
//! Owns the reading of the block (which functions are methods, the constructor, per-method
//! attributes), the misuse errors with their spans, and the generated dispatch and
//! introspection. Generated code reaches the SDK only through `::logos_sdk::export`, so the SDK
//! can change its internals without breaking modules built with this macro. Never emits the C
//! ABI entry point: that is `logos_sdk::export_module!`, one per library.

use crate::names::{param_name, result_ok_type, return_type_name, type_name, wire_name};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use std::collections::BTreeMap;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, ImplItem, ImplItemFn, ItemImpl, LitStr, Pat, ReturnType, Type, Visibility,
};

/// Arguments of `#[module(...)]`.
#[derive(Default)]
struct ModuleArgs {
    name: Option<LitStr>,
    version: Option<LitStr>,
    events: Option<Type>,
}

impl ModuleArgs {
    fn parse(attr: TokenStream) -> syn::Result<ModuleArgs> {
        let mut args = ModuleArgs::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                check_module_name(&lit)?;
                args.name = Some(lit);
                Ok(())
            } else if meta.path.is_ident("version") {
                args.version = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("events") {
                args.events = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[module] argument; expected `name = \"...\"`, `version = \"...\"` or `events = EventsType`",
                ))
            }
        });
        syn::parse::Parser::parse2(parser, attr)?;
        Ok(args)
    }
}

fn check_module_name(lit: &LitStr) -> syn::Result<()> {
    // The same rule as the core's `ModuleName`: the name becomes a path component and a
    // socket file name.
    let name = lit.value();
    let problem = if name.is_empty() || name.len() > 64 {
        Some("module names are 1 to 64 bytes long")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Some("module names use only ASCII letters, digits, `_`, `-` and `.`")
    } else if name.starts_with(['.', '-']) {
        Some("module names start with a letter, digit or `_`")
    } else if name == "core" || name == "capability_module" {
        Some("`core` and `capability_module` are the core's built-in modules")
    } else {
        None
    };
    match problem {
        Some(p) => Err(syn::Error::new(lit.span(), p)),
        None => Ok(()),
    }
}

/// What `#[logos(...)]` says about one method.
#[derive(Default)]
struct MethodAttrs {
    name: Option<LitStr>,
    skip: bool,
    /// Span of the `#[logos]` attribute, for "misplaced" errors.
    span: Option<Span>,
}

/// One exported method.
struct Method {
    ident: syn::Ident,
    wire: String,
    is_async: bool,
    takes_ctx: bool,
    params: Vec<Param>,
    output: ReturnType,
    span: Span,
}

struct Param {
    name: String,
    ty: Type,
}

/// The `#[init]` constructor.
struct Init {
    ident: syn::Ident,
    takes_ctx: bool,
    returns_result: bool,
}

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = ModuleArgs::parse(attr)?;
    let mut block: ItemImpl = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("#[logos_sdk::module] goes on an inherent `impl Type {{ ... }}` block: {e}"),
        )
    })?;
    if let Some((_, path, _)) = &block.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[logos_sdk::module] goes on an inherent `impl Type { ... }` block, not a trait impl",
        ));
    }
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new(
            block.generics.span(),
            "a module type cannot be generic: the core loads one concrete type per library",
        ));
    }

    let mut errors: Vec<syn::Error> = Vec::new();
    let mut methods: Vec<Method> = Vec::new();
    let mut init: Option<Init> = None;

    for item in &mut block.items {
        let ImplItem::Fn(f) = item else { continue };
        let is_init = take_init_attr(&mut f.attrs);
        let attrs = match take_logos_attrs(&mut f.attrs) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(init_attr_span) = is_init {
            if let Some(span) = attrs.span {
                errors.push(syn::Error::new(
                    span,
                    "#[logos(...)] does not apply to the #[init] constructor",
                ));
            }
            if init.is_some() {
                errors.push(syn::Error::new(
                    init_attr_span,
                    "only one function may be marked #[init]",
                ));
                continue;
            }
            match read_init(f) {
                Ok(i) => init = Some(i),
                Err(e) => errors.push(e),
            }
            continue;
        }
        let exported = matches!(f.vis, Visibility::Public(_)) && has_receiver(f);
        if attrs.skip {
            continue;
        }
        if !exported {
            if let Some(span) = attrs.span {
                errors.push(syn::Error::new(
                    span,
                    "#[logos(...)] only applies to `pub fn` methods taking `&self`; only those are exported",
                ));
            }
            continue;
        }
        match read_method(f, &attrs) {
            Ok(m) => methods.push(m),
            Err(e) => errors.push(e),
        }
    }

    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    for m in &methods {
        if seen.insert(m.wire.clone(), m.span).is_some() {
            errors.push(syn::Error::new(
                m.span,
                format!(
                    "two methods have the wire name `{}`; rename one with #[logos(name = \"...\")]",
                    m.wire
                ),
            ));
        }
        if m.wire.starts_with('$') {
            errors.push(syn::Error::new(
                m.span,
                "wire names starting with `$` are reserved for the core",
            ));
        }
    }
    if let Some(first) = errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        return Err(first);
    }

    let self_ty = &block.self_ty;
    let name_expr = match &args.name {
        Some(lit) => quote!(#lit),
        None => quote!(::core::env!("CARGO_PKG_NAME")),
    };
    let version_expr = match &args.version {
        Some(lit) => quote!(#lit),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };
    let events_expr = match &args.events {
        Some(ty) => quote_spanned! {ty.span()=>
            <#ty as ::logos_sdk::Events>::describe()
        },
        None => quote!(&[]),
    };
    let method_infos = methods.iter().map(method_info);
    let arms = methods.iter().map(dispatch_arm);
    let init_body = init_body(init.as_ref(), self_ty);

    Ok(quote! {
        #block

        impl ::logos_sdk::Module for #self_ty {
            const NAME: &'static str = #name_expr;
            const VERSION: &'static str = #version_expr;

            fn methods() -> &'static [::logos_sdk::MethodInfo] {
                const METHODS: &[::logos_sdk::MethodInfo] = &[#(#method_infos),*];
                METHODS
            }

            fn events() -> &'static [::logos_sdk::EventInfo] {
                #events_expr
            }

            fn init(
                __logos_ctx: &::logos_sdk::Context,
            ) -> ::core::result::Result<Self, ::logos_sdk::Error> {
                #init_body
            }

            fn call<'__logos>(
                self: &'__logos ::logos_sdk::export::Arc<Self>,
                __logos_ctx: &'__logos ::logos_sdk::Context,
                __logos_method: &'__logos str,
                __logos_args: ::logos_sdk::export::Vec<::logos_sdk::Value>,
            ) -> ::logos_sdk::export::BoxFuture<
                '__logos,
                ::core::result::Result<::logos_sdk::Value, ::logos_sdk::Fault>,
            > {
                // One box per method, sized for that method's future alone: one async block
                // over every method would be as big as the largest of them, allocated and
                // copied on every call.
                match __logos_method {
                    #(#arms)*
                    __logos_other => ::logos_sdk::export::Box::pin(
                        ::logos_sdk::export::ready(::core::result::Result::Err(
                            ::logos_sdk::export::unknown_method(
                                <Self as ::logos_sdk::Module>::NAME,
                                __logos_other,
                            ),
                        )),
                    ),
                }
            }
        }
    })
}

/// Removes `#[init]` and returns its span if present.
fn take_init_attr(attrs: &mut Vec<Attribute>) -> Option<Span> {
    let pos = attrs.iter().position(|a| a.path().is_ident("init"))?;
    let attr = attrs.remove(pos);
    Some(attr.span())
}

/// Removes every `#[logos(...)]` and reads them.
fn take_logos_attrs(attrs: &mut Vec<Attribute>) -> syn::Result<MethodAttrs> {
    let mut out = MethodAttrs::default();
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        if !attr.path().is_ident("logos") {
            kept.push(attr);
            continue;
        }
        out.span = Some(attr.span());
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(lit.span(), "a wire name cannot be empty"));
                }
                out.name = Some(lit);
                Ok(())
            } else if meta.path.is_ident("skip") {
                out.skip = true;
                Ok(())
            } else {
                Err(meta.error("unknown #[logos] argument; expected `name = \"...\"` or `skip`"))
            }
        })?;
    }
    *attrs = kept;
    Ok(out)
}

fn has_receiver(f: &ImplItemFn) -> bool {
    matches!(f.sig.inputs.first(), Some(FnArg::Receiver(_)))
}

/// `true` when `ty` is written `&Context` (any path ending in `Context`).
fn is_context_ref(ty: &Type) -> bool {
    let Type::Reference(r) = ty else { return false };
    if r.mutability.is_some() {
        return false;
    }
    let Type::Path(p) = &*r.elem else {
        return false;
    };
    p.path.segments.last().is_some_and(|s| s.ident == "Context")
}

fn read_method(f: &ImplItemFn, attrs: &MethodAttrs) -> syn::Result<Method> {
    let sig = &f.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!(
                "module method `{}` cannot be generic: its argument types must be known to decode them",
                sig.ident
            ),
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "variadic methods are not supported",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) => {
            if r.reference.is_none() {
                return Err(syn::Error::new(
                    r.span(),
                    format!(
                        "module method `{}` takes `self` by value; module methods take `&self` (the module is shared by concurrent calls)",
                        sig.ident
                    ),
                ));
            }
            if r.mutability.is_some() {
                return Err(syn::Error::new(
                    r.span(),
                    format!(
                        "module method `{}` takes `&mut self`; module methods take `&self` because calls run concurrently: keep mutable state in a `Mutex`",
                        sig.ident
                    ),
                ));
            }
            if r.colon_token.is_some() {
                return Err(syn::Error::new(
                    r.span(),
                    format!("module method `{}` must take plain `&self`", sig.ident),
                ));
            }
        }
        _ => {
            return Err(syn::Error::new(
                sig.span(),
                "module methods take `&self` first",
            ));
        }
    }

    let mut takes_ctx = false;
    let mut params = Vec::new();
    for (i, arg) in inputs.enumerate() {
        let FnArg::Typed(pt) = arg else { continue };
        if i == 0 && is_context_ref(&pt.ty) {
            takes_ctx = true;
            continue;
        }
        if is_context_ref(&pt.ty) {
            return Err(syn::Error::new(
                pt.ty.span(),
                "`&Context` must be the first parameter after `&self`",
            ));
        }
        check_param_type(&pt.ty, &sig.ident)?;
        let name = match &*pt.pat {
            Pat::Ident(p) => param_name(&p.ident.to_string()),
            _ => format!("arg{}", params.len()),
        };
        params.push(Param {
            name,
            ty: (*pt.ty).clone(),
        });
    }

    let wire = match &attrs.name {
        Some(lit) => lit.value(),
        None => wire_name(&sig.ident.to_string()),
    };
    Ok(Method {
        ident: sig.ident.clone(),
        wire,
        is_async: sig.asyncness.is_some(),
        takes_ctx,
        params,
        output: sig.output.clone(),
        span: sig.ident.span(),
    })
}

fn check_param_type(ty: &Type, method: &syn::Ident) -> syn::Result<()> {
    match ty {
        Type::Reference(_) => Err(syn::Error::new(
            ty.span(),
            format!(
                "parameters of module method `{method}` must be owned (they are decoded from the call): use e.g. `String` instead of `&str`"
            ),
        )),
        Type::ImplTrait(_) => Err(syn::Error::new(
            ty.span(),
            format!(
                "parameters of module method `{method}` need a concrete type, not `impl Trait`"
            ),
        )),
        _ => Ok(()),
    }
}

fn read_init(f: &ImplItemFn) -> syn::Result<Init> {
    let sig = &f.sig;
    if sig.asyncness.is_some() {
        return Err(syn::Error::new(
            sig.asyncness.span(),
            "the #[init] constructor is synchronous; start async work from a method or spawn it",
        ));
    }
    if has_receiver(f) {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "the #[init] constructor takes no `self`: `fn new(ctx: &Context) -> Result<Self, E>`",
        ));
    }
    let takes_ctx = match sig.inputs.len() {
        0 => false,
        1 => match sig.inputs.first() {
            Some(FnArg::Typed(pt)) if is_context_ref(&pt.ty) => true,
            _ => {
                return Err(syn::Error::new(
                    sig.inputs.span(),
                    "the #[init] constructor takes nothing or `ctx: &Context`",
                ));
            }
        },
        _ => {
            return Err(syn::Error::new(
                sig.inputs.span(),
                "the #[init] constructor takes nothing or `ctx: &Context`",
            ));
        }
    };
    let returns_result = match &sig.output {
        ReturnType::Type(_, ty) => result_ok_type(ty).is_some(),
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "the #[init] constructor returns `Self` or `Result<Self, E>` where `E: Display`",
            ));
        }
    };
    Ok(Init {
        ident: sig.ident.clone(),
        takes_ctx,
        returns_result,
    })
}

fn init_body(init: Option<&Init>, self_ty: &Type) -> TokenStream {
    let Some(init) = init else {
        return quote_spanned! {self_ty.span()=>
            let _ = __logos_ctx;
            ::core::result::Result::Ok(<#self_ty as ::core::default::Default>::default())
        };
    };
    let ident = &init.ident;
    let call = if init.takes_ctx {
        quote!(<#self_ty>::#ident(__logos_ctx))
    } else {
        quote!({ let _ = __logos_ctx; <#self_ty>::#ident() })
    };
    if init.returns_result {
        quote! {
            match #call {
                ::core::result::Result::Ok(v) => ::core::result::Result::Ok(v),
                ::core::result::Result::Err(e) => ::core::result::Result::Err(
                    ::logos_sdk::export::init_failed(<Self as ::logos_sdk::Module>::NAME, &e),
                ),
            }
        }
    } else {
        quote!(::core::result::Result::Ok(#call))
    }
}

fn method_info(m: &Method) -> TokenStream {
    let wire = &m.wire;
    let returns = return_type_name(&m.output);
    let params = m.params.iter().map(|p| {
        let name = &p.name;
        let ty = type_name(&p.ty);
        quote!(::logos_sdk::ParamInfo { name: #name, ty: #ty })
    });
    quote! {
        ::logos_sdk::MethodInfo {
            name: #wire,
            params: &[#(#params),*],
            returns: #returns,
        }
    }
}

fn dispatch_arm(m: &Method) -> TokenStream {
    let wire = &m.wire;
    let ident = &m.ident;
    let names: Vec<&String> = m.params.iter().map(|p| &p.name).collect();
    let types: Vec<String> = m.params.iter().map(|p| type_name(&p.ty)).collect();
    let bindings: Vec<syn::Ident> = (0..m.params.len())
        .map(|i| syn::Ident::new(&format!("__logos_arg{i}"), Span::call_site()))
        .collect();
    let decodes = m
        .params
        .iter()
        .zip(&bindings)
        .zip(&types)
        .map(|((p, b), t)| {
            let ty = &p.ty;
            quote_spanned! {ty.span()=>
                #[allow(clippy::question_mark)]
                let #b: #ty = match __logos_reader.next::<#ty>(#t) {
                    ::core::result::Result::Ok(v) => v,
                    ::core::result::Result::Err(f) => return ::core::result::Result::Err(f),
                };
            }
        });
    let ctx_arg = if m.takes_ctx {
        quote!(__logos_ctx,)
    } else {
        quote!()
    };
    let await_ = if m.is_async { quote!(.await) } else { quote!() };
    let invoke = quote_spanned! {m.span=>
        <Self>::#ident(&**self, #ctx_arg #(#bindings),*) #await_
    };
    let reply = match &m.output {
        ReturnType::Default => quote! {
            let () = #invoke;
            ::core::result::Result::Ok(::logos_sdk::Value::Null)
        },
        ReturnType::Type(_, ty) if result_ok_type(ty).is_some() => quote_spanned! {ty.span()=>
            match #invoke {
                ::core::result::Result::Ok(v) => ::logos_sdk::export::encode_reply(
                    <Self as ::logos_sdk::Module>::NAME, #wire, &v,
                ),
                ::core::result::Result::Err(e) => {
                    #[allow(unused_imports)]
                    use ::logos_sdk::export::{FaultFromDisplay as _, FaultFromFault as _};
                    ::core::result::Result::Err(::logos_sdk::export::Failure(e).into_fault())
                }
            }
        },
        ReturnType::Type(_, ty) => quote_spanned! {ty.span()=>
            let v = #invoke;
            ::logos_sdk::export::encode_reply(<Self as ::logos_sdk::Module>::NAME, #wire, &v)
        },
    };
    let body = quote! {
        #[allow(unused_mut, clippy::question_mark)]
        let mut __logos_reader = match ::logos_sdk::export::ArgReader::new(
            <Self as ::logos_sdk::Module>::NAME,
            #wire,
            &[#(#names),*],
            __logos_args,
        ) {
            ::core::result::Result::Ok(r) => r,
            ::core::result::Result::Err(f) => return ::core::result::Result::Err(f),
        };
        #(#decodes)*
        #reply
    };
    // Everything runs when the future is first polled (inside the runtime's panic guard),
    // never while it is built; a sync method needs no async state machine at all.
    if m.is_async {
        quote! {
            #wire => ::logos_sdk::export::Box::pin(async move { #body }),
        }
    } else {
        quote! {
            #wire => ::logos_sdk::export::Box::pin(::logos_sdk::export::lazy(
                move |_| -> ::core::result::Result<::logos_sdk::Value, ::logos_sdk::Fault> {
                    #body
                },
            )),
        }
    }
}
