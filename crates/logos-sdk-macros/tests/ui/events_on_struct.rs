//! Compile-fail case: #[derive(Events)] on a struct is refused.

#[derive(logos_sdk::Events)]
struct NotAnEnum {
    x: i64,
}

fn main() {}
