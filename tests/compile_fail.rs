//! Misuse that the types rule out (the soundness issue's holes 1, 2 and 2b, and the borrows that
//! keep views honest): each file under `tests/compile-fail/` must fail to compile, with the error
//! checked in beside it. `TRYBUILD=overwrite cargo test --test compile_fail` rewrites the
//! expected errors after a deliberate change.

#[test]
fn misuse_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile-fail/*.rs");
}
