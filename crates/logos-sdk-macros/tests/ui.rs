//! Misuse of `#[module]` and `#[derive(Events)]` fails to compile with a message that says
//! what to do, pointing at the offending code. The expected messages are in `ui/*.stderr`
//! (regenerate with `TRYBUILD=overwrite` after a deliberate wording change).

#[test]
fn misuse_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
