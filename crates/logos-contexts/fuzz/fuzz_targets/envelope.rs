//! Envelope decoding: any bytes must decode to an error or to an envelope that re-encodes to
//! exactly the same bytes (canonical form), never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logos_contexts::SignedEnvelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = SignedEnvelope::decode(data) {
        assert_eq!(env.to_bytes(), data, "a decoded envelope must be canonical");
        let _ = env.chain();
    }
    let _ = logos_contexts::envelope::peek_target(data);
});
