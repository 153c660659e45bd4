//! Compile-fail case: `&mut self` methods are refused: calls run concurrently.

#[derive(Default)]
struct Counter;

#[logos_sdk::module(name = "counter")]
impl Counter {
    pub fn bump(&mut self) {}
}

fn main() {}
