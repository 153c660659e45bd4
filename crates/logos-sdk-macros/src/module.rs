//! Expansion of `#[module]`: an `impl` block becomes a `logos_sdk::Module` implementation.
//!
//! Owns the reading of the block (which functions are methods, the constructor, per-method
//! attributes), the misuse errors with their spans, and the generated dispatch and
//! introspection. Generated code reaches the SDK only through `::logos_sdk::export`, so the SDK
//! can change its internals without breaking modules built with this macro. Never emits the C
//! ABI entry point: that is `logos_sdk::export_module!`, one per library.
//!
//! What a parameter *is* is left to the type checker, never guessed from its spelling: each
//! parameter goes through `export::Param`, which `&logos_sdk::Context` implements as the
//! context and every `Deserialize` type as a wire argument, so an alias of the SDK's context
//! is the context and a user's own type named `Context` is an argument. The interface's
//! parameter list is computed the same way, in a constant (`export::is_wire`).

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
    /// Takes `&mut self`: dispatched through `call_mut`, with the module held exclusively.
    is_mut: bool,
    /// Every parameter after the receiver, the context (if any) included.
    params: Vec<Param>,
    output: ReturnType,
    span: Span,
    /// Marked `#[read_only]`.
    read_only: bool,
}

struct Param {
    name: String,
    ty: Type,
}

/// The `#[init]` constructor.
struct Init {
    ident: syn::Ident,
    /// The type of its one parameter, if any (which must be `&Context`).
    arg: Option<Type>,
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
        let read_only = take_read_only_attr(&mut f.attrs);
        let attrs = match take_logos_attrs(&mut f.attrs) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(init_attr_span) = is_init {
            if let Some(span) = read_only {
                errors.push(syn::Error::new(
                    span,
                    "#[read_only] marks exported methods, not the #[init] constructor",
                ));
            }
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
            if let Some(span) = read_only {
                errors.push(syn::Error::new(
                    span,
                    "#[read_only] only applies to `pub fn` methods taking `&self` or `&mut self`; only those are exported",
                ));
            }
            if let Some(span) = attrs.span {
                errors.push(syn::Error::new(
                    span,
                    "#[logos(...)] only applies to `pub fn` methods taking `&self` or `&mut self`; only those are exported",
                ));
            }
            continue;
        }
        match read_method(f, &attrs) {
            Ok(mut m) => {
                m.read_only = read_only.is_some();
                methods.push(m);
            }
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
    let params_consts = methods.iter().enumerate().map(|(i, m)| params_const(i, m));
    let method_infos = methods
        .iter()
        .enumerate()
        .map(|(i, m)| method_info(i, m, self_ty));
    let has_mut = methods.iter().any(|m| m.is_mut);
    let shared_arms = methods.iter().enumerate().map(|(i, m)| shared_arm(i, m));
    let init_body = init_body(init.as_ref(), self_ty);
    // Synchronous `&self` methods are also served without a future (`Module::call_sync`).
    let sync: Vec<_> = methods
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.is_async && !m.is_mut)
        .collect();
    let sync_items = if sync.is_empty() {
        quote!()
    } else {
        let sync_wires = sync.iter().map(|(_, m)| &m.wire);
        let sync_arms = sync.iter().map(|(i, m)| sync_arm(*i, m));
        quote! {
            fn sync_method(__logos_method: &str) -> bool {
                ::core::matches!(__logos_method, #(#sync_wires)|*)
            }

            fn call_sync(
                &self,
                __logos_ctx: &::logos_sdk::Context,
                __logos_method: &str,
                __logos_args: ::logos_sdk::export::Vec<::logos_sdk::Value>,
            ) -> ::core::result::Result<::logos_sdk::Value, ::logos_sdk::Fault> {
                match __logos_method {
                    #(#sync_arms)*
                    __logos_other => ::core::result::Result::Err(
                        ::logos_sdk::export::unknown_method(
                            <Self as ::logos_sdk::Module>::NAME,
                            __logos_other,
                        ),
                    ),
                }
            }
        }
    };
    let mut_items = if has_mut {
        let mut_wires = methods.iter().filter(|m| m.is_mut).map(|m| &m.wire);
        let mut_arms = methods
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_mut)
            .map(|(i, m)| dispatch_arm(i, m));
        quote! {
            const HAS_MUT_METHODS: bool = true;

            fn takes_mut(__logos_method: &str) -> bool {
                ::core::matches!(__logos_method, #(#mut_wires)|*)
            }

            fn call_mut<'__logos>(
                &'__logos mut self,
                __logos_ctx: &'__logos ::logos_sdk::Context,
                __logos_method: &'__logos str,
                __logos_args: ::logos_sdk::export::Vec<::logos_sdk::Value>,
            ) -> ::logos_sdk::export::BoxFuture<
                '__logos,
                ::core::result::Result<::logos_sdk::Value, ::logos_sdk::Fault>,
            > {
                match __logos_method {
                    #(#mut_arms)*
                    _ => <Self as ::logos_sdk::Module>::call(
                        self,
                        __logos_ctx,
                        __logos_method,
                        __logos_args,
                    ),
                }
            }
        }
    } else {
        quote!()
    };

    Ok(quote! {
        #block

        #[doc(hidden)]
        impl #self_ty {
            #(#params_consts)*
        }

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
                &'__logos self,
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
                    #(#shared_arms)*
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

            #mut_items

            #sync_items
        }
    })
}

/// Removes `#[read_only]` and returns its span if present.
fn take_read_only_attr(attrs: &mut Vec<Attribute>) -> Option<Span> {
    let pos = attrs.iter().position(|a| a.path().is_ident("read_only"))?;
    let attr = attrs.remove(pos);
    Some(attr.span())
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
    let is_mut = match inputs.next() {
        Some(FnArg::Receiver(r)) => {
            if r.reference.is_none() {
                return Err(syn::Error::new(
                    r.span(),
                    format!(
                        "module method `{}` takes `self` by value; module methods take `&self` (shared by concurrent calls) or `&mut self` (one call at a time)",
                        sig.ident
                    ),
                ));
            }
            if r.colon_token.is_some() {
                return Err(syn::Error::new(
                    r.span(),
                    format!(
                        "module method `{}` must take plain `&self` or `&mut self`",
                        sig.ident
                    ),
                ));
            }
            r.mutability.is_some()
        }
        _ => {
            return Err(syn::Error::new(
                sig.span(),
                "module methods take `&self` or `&mut self` first",
            ));
        }
    };

    let mut params = Vec::new();
    for arg in inputs {
        let FnArg::Typed(pt) = arg else { continue };
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
        is_mut,
        params,
        output: sig.output.clone(),
        span: sig.ident.span(),
        read_only: false,
    })
}

fn check_param_type(ty: &Type, method: &syn::Ident) -> syn::Result<()> {
    match ty {
        Type::Reference(r) if r.mutability.is_some() => Err(syn::Error::new(
            ty.span(),
            format!(
                "parameters of module method `{method}` cannot be `&mut`: they are decoded from the call; take `&str`, `&[u8]` or an owned value"
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
    // Whether the one parameter is really `&logos_sdk::Context` is checked by type
    // (`export::InitArg`), not by how it is spelled.
    let arg = match sig.inputs.len() {
        0 => None,
        1 => match sig.inputs.first() {
            Some(FnArg::Typed(pt)) => Some((*pt.ty).clone()),
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
        arg,
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
    let call = match &init.arg {
        Some(ty) => {
            let arg = quote_spanned! {ty.span()=>
                ::logos_sdk::export::init_arg::<#ty>(__logos_ctx)
            };
            quote!(<#self_ty>::#ident(#arg))
        }
        None => quote!({ let _ = __logos_ctx; <#self_ty>::#ident() }),
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

/// The name of the constant holding method `index`'s wire parameters.
fn params_const_name(index: usize) -> syn::Ident {
    syn::Ident::new(&format!("__LOGOS_PARAMS_{index}"), Span::call_site())
}

/// `const __LOGOS_PARAMS_<i>: &[ParamInfo]`: the method's wire parameters, i.e. all of them
/// but a first one that is the context, decided by type. A context anywhere else is refused
/// when the constant is evaluated, pointing at the parameter.
fn params_const(index: usize, m: &Method) -> TokenStream {
    let ident = params_const_name(index);
    let infos = m.params.iter().map(|p| {
        let name = &p.name;
        let ty = type_name(&p.ty);
        quote!(::logos_sdk::ParamInfo { name: #name, ty: #ty })
    });
    let checks = m.params.iter().skip(1).map(|p| {
        let ty = &p.ty;
        quote_spanned! {ty.span()=>
            ::core::assert!(
                ::logos_sdk::export::is_wire::<#ty>(),
                "`&Context` must be the first parameter after `&self`",
            );
        }
    });
    let value = match m.params.first() {
        Some(first) => {
            let ty = &first.ty;
            quote! {
                if ::logos_sdk::export::is_wire::<#ty>() { __logos_all } else { __logos_all.split_at(1).1 }
            }
        }
        None => quote!(__logos_all),
    };
    quote! {
        #[doc(hidden)]
        const #ident: &'static [::logos_sdk::ParamInfo] = {
            let __logos_all: &'static [::logos_sdk::ParamInfo] = &[#(#infos),*];
            #(#checks)*
            #value
        };
    }
}

fn method_info(index: usize, m: &Method, self_ty: &Type) -> TokenStream {
    let wire = &m.wire;
    let returns = return_type_name(&m.output);
    let params = params_const_name(index);
    let read_only = m.read_only;
    quote! {
        ::logos_sdk::MethodInfo {
            name: #wire,
            params: <#self_ty>::#params,
            returns: #returns,
            read_only: #read_only,
        }
    }
}

/// The arm of `call` (the shared entry) for method `m`: its dispatch, or for a `&mut self`
/// method the fault saying it needs `call_mut`.
fn shared_arm(index: usize, m: &Method) -> TokenStream {
    if !m.is_mut {
        return dispatch_arm(index, m);
    }
    let wire = &m.wire;
    quote! {
        #wire => ::logos_sdk::export::Box::pin(::logos_sdk::export::ready(
            ::core::result::Result::Err(::logos_sdk::export::needs_exclusive(
                <Self as ::logos_sdk::Module>::NAME,
                #wire,
            )),
        )),
    }
}

/// The body that decodes the arguments of method `m` from `__logos_args`, calls it and
/// encodes its answer: a `Result<Value, Fault>` expression (early errors `return`).
fn method_body(index: usize, m: &Method) -> TokenStream {
    let wire = &m.wire;
    let ident = &m.ident;
    let params = params_const_name(index);
    let bindings: Vec<syn::Ident> = (0..m.params.len())
        .map(|i| syn::Ident::new(&format!("__logos_arg{i}"), Span::call_site()))
        .collect();
    let decodes = m.params.iter().zip(&bindings).map(|(p, b)| {
        let ty = &p.ty;
        quote_spanned! {ty.span()=>
            #[allow(clippy::question_mark)]
            let #b: #ty = match <#ty as ::logos_sdk::export::Param<'_>>::take(
                &mut __logos_reader,
                __logos_ctx,
            ) {
                ::core::result::Result::Ok(v) => v,
                ::core::result::Result::Err(f) => return ::core::result::Result::Err(f),
            };
        }
    });
    let await_ = if m.is_async { quote!(.await) } else { quote!() };
    let invoke = quote_spanned! {m.span=>
        <Self>::#ident(self, #(#bindings),*) #await_
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
    // The arguments live in the method's own future (or closure), so borrowed parameters
    // (`&str`) borrow from them for the whole call.
    let body = quote! {
        let mut __logos_args = __logos_args;
        #[allow(unused_mut, clippy::question_mark)]
        let mut __logos_reader = match ::logos_sdk::export::ArgReader::new(
            <Self as ::logos_sdk::Module>::NAME,
            #wire,
            <Self>::#params,
            &mut __logos_args,
        ) {
            ::core::result::Result::Ok(r) => r,
            ::core::result::Result::Err(f) => return ::core::result::Result::Err(f),
        };
        #(#decodes)*
        #reply
    };
    body
}

fn dispatch_arm(index: usize, m: &Method) -> TokenStream {
    let wire = &m.wire;
    let body = method_body(index, m);
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

/// The arm of `call_sync` for a synchronous `&self` method: its body, run at once.
fn sync_arm(index: usize, m: &Method) -> TokenStream {
    let wire = &m.wire;
    let body = method_body(index, m);
    quote! {
        #wire => { #body }
    }
}
