//! The `contexts` executable: serves the contexts module under the name the core gives it
//! (`LOGOS_MODULE`), so one binary backs the shared `contexts` module and every isolated
//! per-context worker (`contexts-alice`, …), each its own module directory.

fn main() {
    let name = std::env::var("LOGOS_MODULE").unwrap_or_else(|_| "contexts".to_owned());
    std::process::exit(logos_sdk::run_named::<contexts::Contexts>(&name))
}
