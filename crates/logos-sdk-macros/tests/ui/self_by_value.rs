//! Compile-fail case: `self` by value is refused: the module is shared.

#[derive(Default)]
struct Counter;

#[logos_sdk::module(name = "counter")]
impl Counter {
    pub fn consume(self) {}
}

fn main() {}
