//! Accepted: borrowed parameters (`&str`, `&[u8]`, borrowing types), decoded from the call's
//! arguments without a copy and valid for the call.

use std::borrow::Cow;

#[derive(Default)]
struct Greeter;

#[logos_sdk::module(name = "greeter")]
impl Greeter {
    pub fn greet(&self, name: &str) -> String {
        format!("Hello, {name}!")
    }

    pub async fn count(&self, data: &[u8], label: Option<&str>, note: Cow<'_, str>) -> String {
        format!("{}: {} ({note})", label.unwrap_or("data"), data.len())
    }
}

fn main() {}
