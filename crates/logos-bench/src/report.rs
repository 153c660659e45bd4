//! The report: one [`Row`] per measurement, the machine it ran on, and the two ways out, a
//! table for people and `--json` for machines.
//!
//! Owns units, formatting and the met/missed verdicts' spelling. Never measures anything:
//! rows arrive filled in.

use serde::Serialize;
use std::fmt::Write as _;

/// What a figure counts, which decides how it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Nanoseconds (printed as µs or ms).
    Nanos,
    /// Calls, messages or events per second.
    PerSec,
    /// Bytes per second.
    BytesPerSec,
    /// Bytes (memory).
    Bytes,
}

/// One measured figure: a median (or the median of rounds, for rates) and maybe a p99.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figure {
    /// The median.
    pub value: f64,
    /// The 99th percentile, when the samples give one.
    pub p99: Option<f64>,
    /// What the numbers count.
    pub unit: Unit,
}

impl Figure {
    /// A figure without a p99.
    pub fn of(value: f64, unit: Unit) -> Figure {
        Figure {
            value,
            p99: None,
            unit,
        }
    }

    /// A latency figure from a summary of nanosecond samples.
    pub fn latency(s: &crate::stats::Summary) -> Figure {
        Figure {
            value: s.median,
            p99: Some(s.p99),
            unit: Unit::Nanos,
        }
    }

    fn text(&self) -> String {
        let main = format_value(self.value, self.unit);
        match self.p99 {
            Some(p) => format!("{main} (p99 {})", format_value(p, self.unit)),
            None => main,
        }
    }
}

/// `value` in `unit`, for people.
pub fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Nanos if value >= 1e6 => format!("{:.2} ms", value / 1e6),
        Unit::Nanos => format!("{:.1} µs", value / 1e3),
        Unit::PerSec if value >= 1e6 => format!("{:.2} M/s", value / 1e6),
        Unit::PerSec => format!("{:.0} k/s", value / 1e3),
        Unit::BytesPerSec => format!("{:.0} MiB/s", value / (1024.0 * 1024.0)),
        Unit::Bytes => format!("{:.1} MiB", value / (1024.0 * 1024.0)),
    }
}

/// The verdict of one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The target was met.
    Met,
    /// The target was missed (the note says by how much, and why where known).
    Missed,
    /// Reported without a target.
    Info,
    /// Not measured here (the note says why, e.g. Qt is not installed).
    Skipped,
    /// The measurement failed (the note has the error).
    Error,
}

impl Status {
    /// `Met` when `ok`, else `Missed`.
    pub fn check(ok: bool) -> Status {
        if ok { Status::Met } else { Status::Missed }
    }

    fn text(&self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "MISSED",
            Status::Info => "info",
            Status::Skipped => "skipped",
            Status::Error => "ERROR",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Stable id for machines (`rtt`, `fanout_8`, …).
    pub id: String,
    /// What was measured, for people.
    pub name: String,
    /// The runtime's figure.
    pub ours: Option<Figure>,
    /// The baseline's figure, measured in the same run.
    pub baseline: Option<Figure>,
    /// What the baseline is.
    pub baseline_name: Option<String>,
    /// ours / baseline (or the ratio the target is stated in).
    pub ratio: Option<f64>,
    /// The target, for people.
    pub target: Option<String>,
    /// The verdict.
    pub status: Status,
    /// Why, how, or what else was seen.
    pub note: Option<String>,
    /// More figures, by name (per-module costs, growth, PSS, …).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Row {
    /// A row with only its id and name; the rest is filled in by the caller.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Row {
        Row {
            id: id.into(),
            name: name.into(),
            ours: None,
            baseline: None,
            baseline_name: None,
            ratio: None,
            target: None,
            status: Status::Info,
            note: None,
            extra: serde_json::Map::new(),
        }
    }

    /// A row that could not be measured.
    pub fn skipped(id: &str, name: &str, why: impl Into<String>) -> Row {
        let mut row = Row::new(id, name);
        row.status = Status::Skipped;
        row.note = Some(why.into());
        row
    }

    /// A row whose measurement failed.
    pub fn failed(id: &str, name: &str, error: &anyhow::Error) -> Row {
        let mut row = Row::new(id, name);
        row.status = Status::Error;
        row.note = Some(format!("{error:#}"));
        row
    }

    /// Records an extra figure.
    pub fn extra(&mut self, key: &str, value: impl Into<serde_json::Value>) -> &mut Row {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// Where the report was taken.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Total memory.
    pub memory_mib: u64,
    /// `release` or `debug`: how this binary was built.
    pub profile: &'static str,
}

impl Machine {
    /// Reads the machine's description from /proc.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            cpu_model,
            kernel,
            memory_mib,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// `--quick`: smoke-test sizes, figures not meaningful.
    pub quick: bool,
    /// Wall time of the whole run.
    pub elapsed_s: f64,
    /// The rows, in table order.
    pub rows: Vec<Row>,
    /// The change against an earlier run (`--compare FILE.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<crate::compare::Comparison>,
}

impl Report {
    /// The report as one JSON document.
    ///
    /// # Errors
    /// Never in practice (every field serialises); kept for the binary's error path.
    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// The report as a Markdown table with a header line naming the machine.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "logos-bench ({} build{}): {} CPUs, {}, {} MiB, Linux {}; {:.1} s\n\n",
            m.profile,
            if self.quick {
                ", --quick: figures not meaningful"
            } else {
                ""
            },
            m.cpus,
            m.cpu_model,
            m.memory_mib,
            m.kernel,
            self.elapsed_s
        );
        let header = [
            "measurement",
            "logos",
            "baseline",
            "ratio",
            "target",
            "result",
        ];
        let lines: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let baseline = match (&r.baseline, &r.baseline_name) {
                    (Some(f), Some(n)) => format!("{} {n}", f.text()),
                    (Some(f), None) => f.text(),
                    (None, Some(n)) => n.clone(),
                    (None, None) => "—".to_owned(),
                };
                vec![
                    r.name.clone(),
                    r.ours.map_or_else(|| "—".to_owned(), |f| f.text()),
                    baseline,
                    r.ratio
                        .map_or_else(|| "—".to_owned(), |x| format!("{x:.2}×")),
                    r.target.clone().unwrap_or_else(|| "—".to_owned()),
                    r.status.text().to_owned(),
                ]
            })
            .collect();
        out.push_str(&markdown_table(&header, &lines));
        let notes: Vec<&Row> = self.rows.iter().filter(|r| r.note.is_some()).collect();
        if !notes.is_empty() {
            out.push('\n');
            for r in notes {
                let _ = writeln!(out, "- {}: {}", r.id, r.note.as_deref().unwrap_or_default());
            }
        }
        if let Some(c) = &self.compare {
            out.push('\n');
            out.push_str(&c.table());
        }
        out
    }
}

/// A Markdown table with columns padded to their widest cell.
pub fn markdown_table(header: &[&str], lines: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for line in lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let row = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        out.push('|');
        for (cell, w) in cells.zip(&widths) {
            let pad = w.saturating_sub(cell.chars().count());
            let _ = write!(out, " {cell}{} |", " ".repeat(pad));
        }
        out.push('\n');
    };
    row(&mut out, &mut header.iter().copied());
    out.push('|');
    for w in &widths {
        let _ = write!(out, "{}|", "-".repeat(w + 2));
    }
    out.push('\n');
    for line in lines {
        row(&mut out, &mut line.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_in_readable_units() {
        assert_eq!(format_value(41_234.0, Unit::Nanos), "41.2 µs");
        assert_eq!(format_value(12_345_678.0, Unit::Nanos), "12.35 ms");
        assert_eq!(format_value(412_000.0, Unit::PerSec), "412 k/s");
        assert_eq!(format_value(2.5e6, Unit::PerSec), "2.50 M/s");
        assert_eq!(format_value(3.0 * 1024.0 * 1024.0, Unit::Bytes), "3.0 MiB");
    }

    #[test]
    fn the_table_has_one_line_per_row_and_notes_below() {
        let mut row = Row::new("rtt", "round trip");
        row.ours = Some(Figure::of(50_000.0, Unit::Nanos));
        row.status = Status::Met;
        let report = Report {
            machine: Machine::detect(),
            quick: true,
            elapsed_s: 1.0,
            rows: vec![row, Row::skipped("qt", "Qt", "Qt is not installed")],
            compare: None,
        };
        let table = report.table();
        assert!(table.contains("| round trip "), "{table}");
        assert!(table.contains("- qt: Qt is not installed"), "{table}");
        let json: serde_json::Value =
            serde_json::from_str(&report.json().unwrap_or_default()).unwrap_or_default();
        assert_eq!(json["rows"][1]["status"], "skipped");
    }
}
