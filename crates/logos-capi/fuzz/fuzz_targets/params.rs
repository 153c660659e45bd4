//! Fuzz target `params`: arbitrary text as the `params_json` of
//! `logos_core_call_plugin_method_async`, through the C API's own parser (`src/params.rs`,
//! compiled into this target; see Cargo.toml for why), then back out as the JSON a callback
//! receives.
//!
//! Owns only the harness. Properties: nothing panics; a refusal is an `invalid params_json`
//! error; whatever is accepted converts back to JSON, as a result and as event data. Reads
//! and writes nothing.

#![no_main]
#![allow(dead_code)]

#[path = "../../src/error.rs"]
mod error;
#[path = "../../src/params.rs"]
mod params;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The C API checks UTF-8 before parsing (`strings.rs`), so the parser only sees text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match params::parse(text) {
        Ok(args) => {
            for arg in &args {
                let json = params::result_json(arg);
                assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{json}");
            }
            let event = params::event_json("fuzzed", &args);
            assert!(serde_json::from_str::<serde_json::Value>(&event).is_ok(), "{event}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("invalid params_json: "), "{message}");
        }
    }
});
