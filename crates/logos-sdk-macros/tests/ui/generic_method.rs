//! Compile-fail case: generic methods are refused: argument types must be concrete.

#[derive(Default)]
struct Echo;

#[logos_sdk::module(name = "echo")]
impl Echo {
    pub fn echo<T: serde::Serialize>(&self, v: T) -> T {
        v
    }
}

fn main() {}
