//! `logos-core`: the runtime.
