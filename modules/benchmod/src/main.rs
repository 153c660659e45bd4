//! The `benchmod` program: serves [`benchmod::Bench`] per the module process contract. The
//! core starts it through the module dirs `logos-bench` generates; run by hand it fails the
//! way every module does without the core's descriptors.

fn main() {
    std::process::exit(benchmod::serve());
}
