//! Compile-fail case: a module without #[init] must implement Default.

struct NeedsInit {
    _x: i64,
}

#[logos_sdk::module(name = "needs-init")]
impl NeedsInit {
    pub fn get(&self) -> i64 {
        1
    }
}

fn main() {}
