//! Accepted: `&mut self` methods, sync and async; the module is then held in a lock and such a
//! call has it alone (see `logos_sdk::Instance`).

use logos_sdk::Context;

#[derive(Default)]
struct Counter {
    n: u64,
}

#[logos_sdk::module(name = "counter")]
impl Counter {
    pub fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    pub async fn bump_later(&mut self, ctx: &Context) -> Result<u64, String> {
        let _ = ctx.name();
        self.n += 1;
        Ok(self.n)
    }

    pub fn get(&self) -> u64 {
        self.n
    }
}

fn main() {
    const { assert!(<Counter as logos_sdk::Module>::HAS_MUT_METHODS) };
}
