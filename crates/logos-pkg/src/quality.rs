//! The quality report of `logoscore check`: one verdict per item (metadata lint,
//! permissions, ABI, start time, idle RSS, latency, crash-freedom, limits), the overall
//! verdict, and how to render it.
//!
//! Owns the report's shape (it is embedded in the signed manifest at publish, and shown by
//! the registry and at install). Never runs a check: the CLI does, with a real core.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Verdict of one item, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Within the thresholds.
    Pass,
    /// Over the warning threshold, or a lint worth a look.
    Warn,
    /// Over the failure threshold, or broken.
    Fail,
}

impl Status {
    /// `pass`, `warn`, `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One checked item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Stable id: `metadata`, `permissions`, `abi`, `start_time`, `idle_rss`,
    /// `latency:<method>`, `crash_free`, `limits`.
    pub id: String,
    /// The verdict.
    pub status: Status,
    /// The measured value for people (`412ms`, `6.1 MiB`), or empty.
    #[serde(default)]
    pub value: String,
    /// Why this verdict, with the threshold.
    #[serde(default)]
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Module name.
    pub module: String,
    /// Module version.
    pub version: String,
    /// Triple the check ran on.
    pub target: String,
    /// `logoscore <version>` that ran it.
    pub checker: String,
    /// Worst item status.
    pub status: Status,
    /// The items, in check order.
    pub items: Vec<Item>,
}

impl Report {
    /// A report over `items`; its status is the worst item's.
    pub fn new(
        module: &str,
        version: &str,
        target: &str,
        checker: &str,
        items: Vec<Item>,
    ) -> Report {
        let status = items.iter().map(|i| i.status).max().unwrap_or(Status::Pass);
        Report {
            module: module.to_owned(),
            version: version.to_owned(),
            target: target.to_owned(),
            checker: checker.to_owned(),
            status,
            items,
        }
    }

    /// `pass 7, warn 1, fail 0`.
    pub fn summary(&self) -> String {
        let n = |s| self.items.iter().filter(|i| i.status == s).count();
        format!(
            "{} (pass {}, warn {}, fail {})",
            self.status,
            n(Status::Pass),
            n(Status::Warn),
            n(Status::Fail)
        )
    }

    /// The report as lines for a terminal.
    pub fn render(&self) -> String {
        let width = self.items.iter().map(|i| i.id.len()).max().unwrap_or(0);
        let mut s = format!(
            "quality of {} {} on {}: {}\n",
            self.module,
            self.version,
            self.target,
            self.summary()
        );
        for i in &self.items {
            s.push_str(&format!(
                "  {:<4}  {:<width$}  {}{}\n",
                i.status.as_str(),
                i.id,
                i.value,
                if i.detail.is_empty() {
                    String::new()
                } else if i.value.is_empty() {
                    i.detail.clone()
                } else {
                    format!("  ({})", i.detail)
                }
            ));
        }
        s
    }
}
