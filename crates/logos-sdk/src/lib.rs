//! `logos-sdk`.
