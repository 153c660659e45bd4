//! `--compare FILE.json`: each row's change against an earlier `--json` run, so a regression
//! shows in review as a number beside the figure it moved.
//!
//! Owns reading the earlier report (tolerantly: a row's id, its figure and its ratio are all
//! it needs, so reports of older versions still compare) and the verdict on each change.
//! Never measures, and never fails a run because a figure moved: changes are reported.

use crate::report::{Report, Unit, format_value, markdown_table};
use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use std::path::Path;

/// Changes smaller than this (in either direction) are noise on a shared machine.
const SAME_PCT: f64 = 5.0;

/// An earlier run, read before this one starts (so a wrong path fails at once).
#[derive(Debug)]
pub struct Earlier {
    path: String,
    profile: Option<String>,
    rows: Vec<EarlierRow>,
}

#[derive(Debug)]
struct EarlierRow {
    id: String,
    value: Option<f64>,
    unit: Option<Unit>,
    ratio: Option<f64>,
}

/// What the earlier run says of one row, against this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Moved the good way by more than the noise threshold.
    Better,
    /// Moved the bad way by more than the noise threshold.
    Worse,
    /// Within the noise threshold.
    Same,
    /// Only in this run.
    New,
    /// Only in the earlier run.
    Gone,
    /// One of the two runs has no figure for it (skipped or failed).
    Unmeasured,
}

/// One row's change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The row's stable id.
    pub id: String,
    /// The earlier figure.
    pub before: Option<f64>,
    /// This run's figure.
    pub now: Option<f64>,
    /// What both count.
    pub unit: Option<Unit>,
    /// `(now / before − 1) × 100`.
    pub change_pct: Option<f64>,
    /// The earlier ratio against its baseline.
    pub ratio_before: Option<f64>,
    /// This run's ratio against its baseline.
    pub ratio_now: Option<f64>,
    /// Better, worse, the same, or why there is no comparison.
    pub verdict: Verdict,
}

/// Every row's change against one earlier run.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The file compared against.
    pub against: String,
    /// How the earlier binary was built, when it says.
    pub earlier_profile: Option<String>,
    /// One change per row of either run, this run's order first.
    pub rows: Vec<Change>,
}

impl Earlier {
    /// Reads a report written by `logos-bench --json`.
    ///
    /// # Errors
    /// When the file cannot be read or is not such a report; the message names the file and
    /// what is wrong.
    pub fn load(path: &Path) -> Result<Earlier> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--compare: reading {}", path.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "--compare: {} is not JSON (write it with logos-bench --json > FILE)",
                path.display()
            )
        })?;
        let Some(rows) = doc["rows"].as_array() else {
            bail!(
                "--compare: {} has no \"rows\" list; is it a logos-bench --json report?",
                path.display()
            );
        };
        let mut out = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let Some(id) = row["id"].as_str() else {
                bail!(
                    "--compare: {}: rows[{i}] has no text \"id\"",
                    path.display()
                );
            };
            out.push(EarlierRow {
                id: id.to_owned(),
                value: row["ours"]["value"].as_f64(),
                unit: serde_json::from_value(row["ours"]["unit"].clone()).ok(),
                ratio: row["ratio"].as_f64(),
            });
        }
        Ok(Earlier {
            path: path.display().to_string(),
            profile: doc["machine"]["profile"].as_str().map(str::to_owned),
            rows: out,
        })
    }

    /// This run's rows against the earlier ones.
    pub fn against(&self, now: &Report) -> Comparison {
        let mut rows: Vec<Change> = now
            .rows
            .iter()
            .map(|r| {
                let ours = r.ours;
                match self.rows.iter().find(|e| e.id == r.id) {
                    None => Change {
                        id: r.id.clone(),
                        before: None,
                        now: ours.map(|f| f.value),
                        unit: ours.map(|f| f.unit),
                        change_pct: None,
                        ratio_before: None,
                        ratio_now: r.ratio,
                        verdict: Verdict::New,
                    },
                    Some(e) => change(&r.id, e, ours.map(|f| (f.value, f.unit)), r.ratio),
                }
            })
            .collect();
        for e in &self.rows {
            if !now.rows.iter().any(|r| r.id == e.id) {
                rows.push(Change {
                    id: e.id.clone(),
                    before: e.value,
                    now: None,
                    unit: e.unit,
                    change_pct: None,
                    ratio_before: e.ratio,
                    ratio_now: None,
                    verdict: Verdict::Gone,
                });
            }
        }
        Comparison {
            against: self.path.clone(),
            earlier_profile: self.profile.clone(),
            rows,
        }
    }
}

/// The change of one row present in both runs.
fn change(id: &str, e: &EarlierRow, now: Option<(f64, Unit)>, ratio_now: Option<f64>) -> Change {
    let comparable = match (e.value, e.unit, now) {
        (Some(before), Some(u), Some((value, unit))) if u == unit && before > 0.0 => {
            Some((before, value, unit))
        }
        _ => None,
    };
    let Some((before, value, unit)) = comparable else {
        return Change {
            id: id.to_owned(),
            before: e.value,
            now: now.map(|n| n.0),
            unit: now.map(|n| n.1).or(e.unit),
            change_pct: None,
            ratio_before: e.ratio,
            ratio_now,
            verdict: Verdict::Unmeasured,
        };
    };
    let pct = (value / before - 1.0) * 100.0;
    // Times and memory are better lower; rates are better higher.
    let lower_is_better = matches!(unit, Unit::Nanos | Unit::Bytes);
    let verdict = if pct.abs() < SAME_PCT {
        Verdict::Same
    } else if (pct < 0.0) == lower_is_better {
        Verdict::Better
    } else {
        Verdict::Worse
    };
    Change {
        id: id.to_owned(),
        before: Some(before),
        now: Some(value),
        unit: Some(unit),
        change_pct: Some(pct),
        ratio_before: e.ratio,
        ratio_now,
        verdict,
    }
}

impl Comparison {
    /// The comparison as a Markdown table under a heading naming the earlier file.
    pub fn table(&self) -> String {
        let figure = |v: Option<f64>, u: Option<Unit>| match (v, u) {
            (Some(v), Some(u)) => format_value(v, u),
            _ => "—".to_owned(),
        };
        let ratio = |r: Option<f64>| r.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
        let lines: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    figure(c.before, c.unit),
                    figure(c.now, c.unit),
                    c.change_pct
                        .map_or_else(|| "—".to_owned(), |p| format!("{p:+.1} %")),
                    format!("{} → {}", ratio(c.ratio_before), ratio(c.ratio_now)),
                    format!("{:?}", c.verdict).to_lowercase(),
                ]
            })
            .collect();
        let mut out = format!(
            "Against {}{} (changes under {SAME_PCT} % are \"same\"):\n\n",
            self.against,
            self.earlier_profile
                .as_deref()
                .map(|p| format!(", a {p} build"))
                .unwrap_or_default()
        );
        out.push_str(&markdown_table(
            &["row", "before", "now", "change", "ratio", "verdict"],
            &lines,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Figure, Machine, Row};

    fn report(rows: Vec<Row>) -> Report {
        Report {
            machine: Machine::detect(),
            quick: true,
            elapsed_s: 1.0,
            rows,
            compare: None,
        }
    }

    fn row(id: &str, value: f64, unit: Unit, ratio: f64) -> Row {
        let mut r = Row::new(id, id);
        r.ours = Some(Figure::of(value, unit));
        r.ratio = Some(ratio);
        r
    }

    #[test]
    fn changes_are_judged_by_the_direction_that_is_good_for_each_unit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("before.json");
        let before = report(vec![
            row("rtt", 10_000.0, Unit::Nanos, 1.2),
            row("stream", 1000.0, Unit::BytesPerSec, 0.5),
            row("rss", 4.0e6, Unit::Bytes, 1.0),
            row("old", 1.0, Unit::Nanos, 1.0),
            Row::skipped("qt", "Qt", "no Qt"),
        ]);
        std::fs::write(&path, before.json().expect("json")).expect("write");
        let earlier = Earlier::load(&path).expect("an earlier report");
        let now = report(vec![
            row("rtt", 12_000.0, Unit::Nanos, 1.4),
            row("stream", 1500.0, Unit::BytesPerSec, 0.7),
            row("rss", 4.1e6, Unit::Bytes, 1.0),
            row("qt", 5.0, Unit::Nanos, 1.0),
            row("fresh", 1.0, Unit::Nanos, 1.0),
        ]);
        let c = earlier.against(&now);
        let verdict = |id: &str| c.rows.iter().find(|r| r.id == id).map(|r| r.verdict);
        assert_eq!(verdict("rtt"), Some(Verdict::Worse));
        assert_eq!(verdict("stream"), Some(Verdict::Better));
        assert_eq!(verdict("rss"), Some(Verdict::Same));
        assert_eq!(verdict("qt"), Some(Verdict::Unmeasured));
        assert_eq!(verdict("fresh"), Some(Verdict::New));
        assert_eq!(verdict("old"), Some(Verdict::Gone));
        let rtt = c.rows.iter().find(|r| r.id == "rtt").expect("rtt");
        assert!((rtt.change_pct.unwrap_or_default() - 20.0).abs() < 1e-9);
        let table = c.table();
        assert!(table.contains("| rtt "), "{table}");
        assert!(table.contains("+20.0 %"), "{table}");
        assert!(table.contains("1.20× → 1.40×"), "{table}");
    }

    #[test]
    fn a_file_that_is_not_a_report_is_refused_with_its_name_and_the_fault() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{\"rows\": [{\"ours\": 1}]}").expect("write");
        let e = format!("{:#}", Earlier::load(&path).expect_err("no id"));
        assert!(e.contains("x.json") && e.contains("rows[0]"), "{e}");
        std::fs::write(&path, "not json").expect("write");
        let e = format!("{:#}", Earlier::load(&path).expect_err("not json"));
        assert!(e.contains("is not JSON"), "{e}");
        let e = format!(
            "{:#}",
            Earlier::load(&dir.path().join("nope.json")).expect_err("missing")
        );
        assert!(e.contains("nope.json"), "{e}");
    }
}
