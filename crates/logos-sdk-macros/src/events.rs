//! Expansion of `#[derive(Events)]`: an enum becomes a `logos_sdk::Events` implementation.
//!
//! Owns the mapping of variants to events: each variant is one event named lowerCamelCase of
//! the variant (or `#[logos(name = "...")]`), whose data is the variant's fields in order.
//! Never decides who receives an event: that is the SDK's routing at `Context::emit`.

use crate::names::{param_name, type_name, wire_name};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use std::collections::BTreeMap;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr};

pub fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(Events)] goes on an enum whose variants are the module's events",
        ));
    };
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "an events enum cannot be generic",
        ));
    }
    let ident = &input.ident;
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    let mut name_arms = Vec::new();
    let mut data_arms = Vec::new();
    let mut infos = Vec::new();

    for v in &data.variants {
        let wire = match variant_name(&v.attrs)? {
            Some(lit) => lit.value(),
            None => wire_name(&v.ident.to_string()),
        };
        if seen.insert(wire.clone(), ()).is_some() {
            return Err(syn::Error::new(
                v.ident.span(),
                format!(
                    "two variants have the event name `{wire}`; rename one with #[logos(name = \"...\")]"
                ),
            ));
        }
        let vident = &v.ident;
        let (pattern, bindings, params): (TokenStream, Vec<syn::Ident>, Vec<(String, String)>) =
            match &v.fields {
                Fields::Named(named) => {
                    let idents: Vec<syn::Ident> =
                        named.named.iter().filter_map(|f| f.ident.clone()).collect();
                    let params = named
                        .named
                        .iter()
                        .filter_map(|f| {
                            f.ident
                                .as_ref()
                                .map(|i| (param_name(&i.to_string()), type_name(&f.ty)))
                        })
                        .collect();
                    (quote!({ #(#idents),* }), idents, params)
                }
                Fields::Unnamed(unnamed) => {
                    let idents: Vec<syn::Ident> = (0..unnamed.unnamed.len())
                        .map(|i| format_ident!("__logos_f{i}"))
                        .collect();
                    let params = unnamed
                        .unnamed
                        .iter()
                        .enumerate()
                        .map(|(i, f)| (i.to_string(), type_name(&f.ty)))
                        .collect();
                    (quote!(( #(#idents),* )), idents, params)
                }
                Fields::Unit => (quote!(), Vec::new(), Vec::new()),
            };
        let wildcard = match &v.fields {
            Fields::Named(_) => quote!({ .. }),
            Fields::Unnamed(_) => quote!((..)),
            Fields::Unit => quote!(),
        };
        name_arms.push(quote!(Self::#vident #wildcard => #wire,));
        data_arms.push(quote! {
            Self::#vident #pattern => ::core::result::Result::Ok(::logos_sdk::export::vec![
                #(::logos_sdk::export::to_value(&#bindings)?),*
            ]),
        });
        let param_infos = params
            .iter()
            .map(|(n, t)| quote!(::logos_sdk::ParamInfo { name: #n, ty: #t }));
        infos.push(quote! {
            ::logos_sdk::EventInfo { name: #wire, params: &[#(#param_infos),*] }
        });
    }

    // An empty enum has no values: every match is exhaustive with no arms.
    let (name_body, data_body) = if data.variants.is_empty() {
        (quote!(match *self {}), quote!(match self {}))
    } else {
        (
            quote!(match self { #(#name_arms)* }),
            quote!(match self { #(#data_arms)* }),
        )
    };

    Ok(quote! {
        impl ::logos_sdk::Events for #ident {
            fn name(&self) -> &'static str {
                #name_body
            }

            fn into_data(
                self,
            ) -> ::core::result::Result<
                ::logos_sdk::export::Vec<::logos_sdk::Value>,
                ::logos_sdk::export::WireError,
            > {
                #data_body
            }

            fn describe() -> &'static [::logos_sdk::EventInfo] {
                const EVENTS: &[::logos_sdk::EventInfo] = &[#(#infos),*];
                EVENTS
            }
        }
    })
}

fn variant_name(attrs: &[syn::Attribute]) -> syn::Result<Option<LitStr>> {
    let mut name = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("logos")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(lit.span(), "an event name cannot be empty"));
                }
                name = Some(lit);
                Ok(())
            } else {
                Err(meta.error("unknown #[logos] argument on a variant; expected `name = \"...\"`"))
            }
        })?;
    }
    Ok(name)
}
