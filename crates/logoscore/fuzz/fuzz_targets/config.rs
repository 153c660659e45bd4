//! Fuzz target `config`: arbitrary text as `logoscore.toml`, through `Config::parse`, the
//! parser `logoscore run -c` uses (`src/config.rs`, compiled into this target; see
//! Cargo.toml for why).
//!
//! Owns only the harness. Properties: nothing panics; a refusal is an `Invalid` error located
//! in the config file (its message starts with the file's path, and a line given is within
//! the text); an accepted config has every path absolute (relative ones joined to the
//! config's directory), module names that are valid module names, and restart timing the
//! core accepts. Reads and writes nothing.

#![no_main]
#![allow(dead_code)]

#[path = "../../src/config.rs"]
mod config;

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The file is read as UTF-8 (`read_to_string`), so the parser only sees text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/logos/logoscore.toml");
    match config::Config::parse(text, path, Path::new("/etc/logos")) {
        Ok(c) => {
            let paths = c
                .modules_dirs
                .iter()
                .chain(&c.runtime_dir)
                .chain(&c.data_dir)
                .chain(&c.host)
                .chain(c.modules.values().flat_map(|m| {
                    m.filesystem.read.iter().chain(&m.filesystem.write)
                }));
            for p in paths {
                assert!(p.is_absolute(), "{}", p.display());
            }
            for name in c.load.iter().chain(c.modules.keys()) {
                assert!(logos_core::ModuleName::new(name.as_str()).is_ok(), "{name}");
            }
            if let Some(r) = &c.restart {
                assert!(r.settings().check().is_ok());
            }
        }
        Err(config::ConfigError::Invalid { line, message, .. }) => {
            assert!(!message.is_empty());
            if let Some(line) = line {
                assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "{line}");
            }
            let shown = config::ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column: None,
                key: None,
                message,
            }
            .to_string();
            assert!(shown.starts_with("/etc/logos/logoscore.toml"), "{shown}");
        }
        Err(e @ config::ConfigError::Read { .. }) => panic!("parse never reads: {e}"),
    }
});
