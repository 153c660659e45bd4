//! Fuzz target `manifest`: arbitrary text as a module's `metadata.json`, through
//! `Manifest::from_json`, the parser discovery uses for every module directory.
//!
//! Owns only the harness. Properties: nothing panics; a refusal names at least one fault, each
//! located in the metadata file; an accepted manifest has a valid name (the directory's) and
//! a `main` that exists. The module directory is a fixed one made once per process
//! (`<tmp>/logos-fuzz-manifest-<pid>/calc`, holding `libcalc.so` and `run.sh`), so documents
//! that name them are accepted and the checks after parsing run too. Reads nothing else.

#![no_main]

use libfuzzer_sys::fuzz_target;
use logos_core::{Manifest, ModuleName};
use std::path::PathBuf;
use std::sync::OnceLock;

fn module_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir()
            .join(format!("logos-fuzz-manifest-{}", std::process::id()))
            .join("calc");
        std::fs::create_dir_all(&dir).expect("fuzz module dir");
        for file in ["libcalc.so", "run.sh"] {
            std::fs::write(dir.join(file), b"").expect("fuzz module file");
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    // `Manifest::load` refuses non-UTF-8 files before parsing, so the parser only sees text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = module_dir();
    match Manifest::from_json(dir, text) {
        Ok(m) => {
            assert!(ModuleName::new(m.name.as_str()).is_ok(), "{:?}", m.name);
            assert!(m.main.starts_with(&m.dir), "{} outside {}", m.main.display(), m.dir.display());
            assert!(m.raw.is_object());
        }
        Err(e) => {
            assert!(!e.faults().is_empty(), "a refusal without a fault");
            for fault in e.faults() {
                assert!(fault.path().ends_with("metadata.json"), "{fault:?}");
                assert!(!fault.message().is_empty(), "{fault:?}");
            }
            let _ = e.to_string();
        }
    }
});
