//! [`AuditRecord`]: one decision or outcome in a context's audit log.
//!
//! Every submission leaves at least one record in its target context (accepted or refused,
//! and why), every denied host call one more, and every finished evaluation one with its
//! result; owner changes (scripts, policy) leave one each. Records name the policy version
//! that decided, so a decision can be replayed against the policy that made it. The log is
//! kept by the context's state database (`state.rs`), bounded, oldest first out.

use logos_wire::Value;
use std::collections::BTreeMap;

/// One entry of a context's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the log (assigned when written; increasing).
    pub seq: u64,
    /// When, in ms since the Unix epoch.
    pub time_ms: u64,
    /// Who asked (peer id), when known.
    pub caller: Option<String>,
    /// `submit`, `read`, `write`, …, `outcome`, `install-script`, `set-policy`.
    pub action: String,
    /// The context, key, module method or event concerned.
    pub resource: String,
    /// Whether it was allowed (for `outcome`: whether the evaluation succeeded).
    pub allowed: bool,
    /// `ok`, or the error code ([`crate::Error::code`]).
    pub code: String,
    /// Why: the deciding policies, or the error.
    pub reason: String,
    /// The policy version in force for the decision.
    pub policy_version: u64,
    /// The envelope's hash (hex), for submissions.
    pub envelope: Option<String>,
}

impl AuditRecord {
    /// The record as a logos value (a map with camelCase keys).
    pub fn to_value(&self) -> Value {
        let mut m = BTreeMap::new();
        m.insert("seq".to_owned(), Value::UInt(self.seq));
        m.insert("timeMs".to_owned(), Value::UInt(self.time_ms));
        m.insert(
            "caller".to_owned(),
            self.caller.clone().map_or(Value::Null, Value::Text),
        );
        m.insert("action".to_owned(), Value::Text(self.action.clone()));
        m.insert("resource".to_owned(), Value::Text(self.resource.clone()));
        m.insert("allowed".to_owned(), Value::Bool(self.allowed));
        m.insert("code".to_owned(), Value::Text(self.code.clone()));
        m.insert("reason".to_owned(), Value::Text(self.reason.clone()));
        m.insert("policyVersion".to_owned(), Value::UInt(self.policy_version));
        m.insert(
            "envelope".to_owned(),
            self.envelope.clone().map_or(Value::Null, Value::Text),
        );
        Value::Map(m)
    }
}
