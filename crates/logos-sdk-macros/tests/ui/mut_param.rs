//! Compile-fail case: parameters are decoded from the call, so they cannot be `&mut`.

#[derive(Default)]
struct Echo;

#[logos_sdk::module(name = "echo")]
impl Echo {
    pub fn echo(&self, text: &mut String) -> String {
        text.clone()
    }
}

fn main() {}
