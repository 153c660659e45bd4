//! Compile-fail case: the built-in names `core` and `capability_module` are refused.

#[derive(Default)]
struct Fake;

#[logos_sdk::module(name = "core")]
impl Fake {}

fn main() {}
