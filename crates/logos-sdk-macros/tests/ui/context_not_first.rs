//! Compile-fail case: the module's `&Context` may only be the first parameter after `&self`
//! (recognised by its type, here under an alias).

use logos_sdk::Context as Ctx;

#[derive(Default)]
struct Calc;

#[logos_sdk::module(name = "calc")]
impl Calc {
    pub fn add(&self, a: i64, ctx: &Ctx) -> i64 {
        let _ = ctx;
        a
    }
}

fn main() {}
