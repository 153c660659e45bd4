//! `#[module]` and `#[derive(Events)]` at compile time: misuse fails with a message that says
//! what to do, pointing at the offending code (`ui/*.rs`, expected messages in `ui/*.stderr`;
//! regenerate with `TRYBUILD=overwrite` after a deliberate wording change), and the accepted
//! forms that once were refused compile (`ui/pass/*.rs`).

#[test]
fn misuse_fails_and_accepted_forms_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
