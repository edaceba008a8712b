//! `#[pgscope::test]`: `#[sqlx::test]` for tests written against `pgscope::Pool`.
//!
//! Use it through the `pgscope` crate (feature `macros`, on by default with `pool`).

use proc_macro::TokenStream;
use quote::quote;
use syn::{FnArg, ItemFn, parse_macro_input};

/// `#[sqlx::test]` (same arguments: `migrations = …`, `fixtures(…)`, …) for a test that takes a
/// `pgscope::Pool`: the test database, migrations and fixtures are sqlx's; the body runs in a
/// pgscope scope named after the test, so `pgscope::current_report()` and the N+1 rules apply.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let input = parse_macro_input!(item as ItemFn);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = input;
    if sig.asyncness.is_none() {
        return syn::Error::new_spanned(sig.fn_token, "#[pgscope::test] takes an `async fn`")
            .to_compile_error()
            .into();
    }
    let mut inputs = sig.inputs.iter();
    let (Some(FnArg::Typed(pool)), None) = (inputs.next(), inputs.next()) else {
        return syn::Error::new_spanned(
            &sig.inputs,
            "#[pgscope::test] takes one argument: the `pgscope::Pool`",
        )
        .to_compile_error()
        .into();
    };
    let pat = &pool.pat;
    let ty = &pool.ty;
    let name = &sig.ident;
    let output = &sig.output;
    quote! {
        #[::sqlx::test(#args)]
        #(#attrs)*
        #vis async fn #name(__pgscope_sqlx_pool: ::sqlx::PgPool) #output {
            let #pat: #ty = ::core::convert::From::from(__pgscope_sqlx_pool);
            let (__pgscope_output, _) = ::pgscope::capture_named(
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)),
                async move #block,
            )
            .await;
            __pgscope_output
        }
    }
    .into()
}
