//! Compile-fail case: unknown #[module] arguments are refused.

#[derive(Default)]
struct Calc;

#[logos_sdk::module(name = "calc", flavour = "vanilla")]
impl Calc {}

fn main() {}
