//! Compile-fail case: an async #[init] is refused: construction is synchronous.

struct Slow;

#[logos_sdk::module(name = "slow")]
impl Slow {
    #[init]
    async fn new() -> Self {
        Slow
    }
}

fn main() {}
