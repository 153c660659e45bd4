//! Compile-fail case: two methods with one wire name are refused.

#[derive(Default)]
struct Calc;

#[logos_sdk::module(name = "calc")]
impl Calc {
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[logos(name = "add")]
    pub fn plus(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

fn main() {}
