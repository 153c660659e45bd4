//! greeter
