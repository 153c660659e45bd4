//! Compile-fail case: borrowed parameters are refused: arguments are decoded into owned values.

#[derive(Default)]
struct Greeter;

#[logos_sdk::module(name = "greeter")]
impl Greeter {
    pub fn greet(&self, name: &str) -> String {
        format!("Hello, {name}!")
    }
}

fn main() {}
