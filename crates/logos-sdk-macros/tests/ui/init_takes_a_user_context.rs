//! Compile-fail case: `#[init]` takes nothing or the SDK's `&Context`; a user's own type named
//! `Context` is not it, whatever its name.

mod app {
    pub struct Context;
}

#[derive(Default)]
struct Chat;

#[logos_sdk::module(name = "chat")]
impl Chat {
    #[init]
    fn new(ctx: &app::Context) -> Self {
        let _ = ctx;
        Chat
    }
}

fn main() {}
