//! `calc`: the smallest useful logos module — checked 64-bit integer arithmetic.
//!
//! Shows a stateless module: a `Default` struct, synchronous methods, and errors returned as
//! `Result<_, String>` (each becomes `method_failed` with the message). Never wraps around on
//! overflow and never panics on input: every operation is checked.

use logos_sdk::module;

/// The calc module: no state.
#[derive(Debug, Default)]
pub struct Calc;

fn overflow(op: &str, a: i64, b: i64) -> String {
    format!("overflow: {a} {op} {b} does not fit in a 64-bit signed integer")
}

#[module]
impl Calc {
    /// `a + b`.
    pub fn add(&self, a: i64, b: i64) -> Result<i64, String> {
        a.checked_add(b).ok_or_else(|| overflow("+", a, b))
    }

    /// `a - b`.
    pub fn sub(&self, a: i64, b: i64) -> Result<i64, String> {
        a.checked_sub(b).ok_or_else(|| overflow("-", a, b))
    }

    /// `a * b`.
    pub fn mul(&self, a: i64, b: i64) -> Result<i64, String> {
        a.checked_mul(b).ok_or_else(|| overflow("*", a, b))
    }

    /// `a / b`, rounded toward zero.
    pub fn div(&self, a: i64, b: i64) -> Result<i64, String> {
        if b == 0 {
            return Err("division by zero".to_owned());
        }
        a.checked_div(b).ok_or_else(|| overflow("/", a, b))
    }
}

logos_sdk::export_module!(Calc);

#[cfg(test)]
mod tests {
    use super::*;
    use logos_sdk::{Context, ErrorCode, Fault, Module, Value};
    use std::sync::Arc;

    async fn call(method: &str, a: i64, b: i64) -> Result<Value, Fault> {
        let ctx = Context::standalone("calc", std::env::temp_dir());
        Arc::new(Calc)
            .call(&ctx, method, vec![a.into(), b.into()])
            .await
    }

    #[tokio::test]
    async fn arithmetic() {
        assert_eq!(call("add", 2, 3).await, Ok(Value::Int(5)));
        assert_eq!(call("sub", 2, 3).await, Ok(Value::Int(-1)));
        assert_eq!(call("mul", -4, 3).await, Ok(Value::Int(-12)));
        assert_eq!(call("div", 7, 2).await, Ok(Value::Int(3)));
    }

    #[tokio::test]
    async fn failures_are_method_failed() {
        assert_eq!(
            call("div", 1, 0).await,
            Err(Fault::new(ErrorCode::MethodFailed, "division by zero"))
        );
        for (m, a, b) in [
            ("add", i64::MAX, 1),
            ("sub", i64::MIN, 1),
            ("mul", i64::MAX, 2),
            ("div", i64::MIN, -1),
        ] {
            let f = call(m, a, b).await.err();
            assert_eq!(f.map(|f| f.code), Some(ErrorCode::MethodFailed), "{m}");
        }
    }

    #[test]
    fn identity() {
        assert_eq!(Calc::NAME, "calc");
        assert_eq!(Calc::VERSION, "1.0.0");
    }
}
