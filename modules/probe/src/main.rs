//! `probe` as an executable module: the same module as `libprobe.so`, served by its own
//! program instead of through `logos_host`, under the name the core gives it
//! (`LOGOS_MODULE`). The core's tests and the benchmark's `start` row use it as the
//! executable module an author builds: a small program with the SDK, nothing else.

fn main() {
    let name = std::env::var("LOGOS_MODULE").unwrap_or_else(|_| "probe".to_owned());
    std::process::exit(logos_sdk::run_named::<probe::Probe>(&name))
}
