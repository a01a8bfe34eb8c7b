//! What every case produces: rows of samples for Berth and for its reference side by side,
//! the CPU-seconds and peak RSS of every process involved, printed as a markdown table and
//! written as `<out>/<case>.md` and `<out>/<case>.json`.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;

/// Measurements of one path (milliseconds, or a rate per second).
#[derive(Default, Clone, Debug)]
pub(crate) struct Samples(pub(crate) Vec<f64>);

impl Samples {
    /// The `p`th percentile (nearest rank); NaN when empty.
    pub(crate) fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    }
    pub(crate) fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }
    pub(crate) fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::min)
    }
    pub(crate) fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    pub(crate) fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Which side of the comparison a row or a process is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Berth,
    Reference,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Berth => "berth",
            Side::Reference => "reference",
        }
    }
}

/// One measured path.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) side: Side,
    pub(crate) path: String,
    /// `ms`, `/s`, `count`, ...
    pub(crate) unit: &'static str,
    pub(crate) samples: Samples,
    /// Operations per second over the whole measured time of this path, when meaningful.
    pub(crate) throughput: Option<f64>,
    /// Rows are compared with the first reference row of the same unit and group.
    pub(crate) group: &'static str,
}

/// CPU and memory of one process (or group of processes) over the measured phases of a side.
#[derive(Clone, Debug)]
pub(crate) struct Usage {
    pub(crate) side: Side,
    pub(crate) process: String,
    pub(crate) cpu_s: f64,
    /// Peak resident set (VmHWM or ru_maxrss), MiB; `None` when it cannot be known.
    pub(crate) peak_rss_mib: Option<f64>,
}

/// The result of one case.
pub(crate) struct Report {
    pub(crate) case: &'static str,
    pub(crate) title: String,
    pub(crate) target: &'static str,
    pub(crate) rows: Vec<Row>,
    pub(crate) usage: Vec<Usage>,
    pub(crate) notes: Vec<String>,
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn num(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

impl Report {
    pub(crate) fn new(case: &'static str, title: String, target: &'static str) -> Report {
        Report {
            case,
            title,
            target,
            rows: Vec::new(),
            usage: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn row(
        &mut self,
        side: Side,
        path: &str,
        unit: &'static str,
        samples: Samples,
        throughput: Option<f64>,
    ) {
        self.row_in("", side, path, unit, samples, throughput);
    }

    /// A row compared only with the reference rows of `group`.
    pub(crate) fn row_in(
        &mut self,
        group: &'static str,
        side: Side,
        path: &str,
        unit: &'static str,
        samples: Samples,
        throughput: Option<f64>,
    ) {
        self.rows.push(Row {
            side,
            path: path.to_string(),
            unit,
            samples,
            throughput,
            group,
        });
    }

    /// The first reference row with the same unit, which ratios are taken against.
    fn reference_for(&self, r: &Row) -> Option<&Row> {
        self.rows
            .iter()
            .find(|x| x.side == Side::Reference && x.unit == r.unit && x.group == r.group)
    }

    pub(crate) fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### {}\n", self.title);
        let _ = writeln!(
            s,
            "| side | path | unit | n | p50 | p99 | max | throughput /s | p50 vs reference |"
        );
        let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for r in &self.rows {
            let ratio = self
                .reference_for(r)
                .map(|x| r.samples.pct(50.0) / x.samples.pct(50.0))
                .filter(|v| v.is_finite())
                .map_or("-".to_string(), |v| format!("{v:.2}x"));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.side.name(),
                r.path,
                r.unit,
                r.samples.len(),
                fmt(r.samples.pct(50.0)),
                fmt(r.samples.pct(99.0)),
                fmt(r.samples.max()),
                r.throughput.map_or("-".to_string(), fmt),
                ratio
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "| side | process | CPU s | peak RSS MiB |");
        let _ = writeln!(s, "| --- | --- | --- | --- |");
        for u in &self.usage {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                u.side.name(),
                u.process,
                if u.cpu_s.is_nan() {
                    "-".to_string()
                } else {
                    format!("{:.2}", u.cpu_s)
                },
                u.peak_rss_mib
                    .map_or("-".to_string(), |m| format!("{m:.1}"))
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Target: {}", self.target);
        for n in &self.notes {
            let _ = writeln!(s, "\n{n}");
        }
        s
    }

    pub(crate) fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let reference = self.reference_for(r);
                json!({
                    "side": r.side.name(),
                    "path": r.path,
                    "unit": r.unit,
                    "n": r.samples.len(),
                    "p50": num(r.samples.pct(50.0)),
                    "p99": num(r.samples.pct(99.0)),
                    "min": num(r.samples.min()),
                    "max": num(r.samples.max()),
                    "throughput_per_s": r.throughput.map_or(Value::Null, num),
                    "p50_vs_reference": reference
                        .map_or(Value::Null, |x| num(r.samples.pct(50.0) / x.samples.pct(50.0))),
                    "samples": r.samples.0,
                })
            })
            .collect();
        let usage: Vec<Value> = self
            .usage
            .iter()
            .map(|u| {
                json!({
                    "side": u.side.name(),
                    "process": u.process,
                    "cpu_seconds": num(u.cpu_s),
                    "peak_rss_mib": u.peak_rss_mib.map_or(Value::Null, num),
                })
            })
            .collect();
        json!({
            "case": self.case,
            "title": self.title,
            "target": self.target,
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "rows": rows,
            "processes": usage,
            "notes": self.notes,
        })
    }

    /// Print the table and write `<out>/<case>.md` and `<out>/<case>.json`.
    pub(crate) fn emit(&self, out: &Path) -> Result<String> {
        let md = self.markdown();
        println!("{md}");
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join(format!("{}.md", self.case)), &md)?;
        std::fs::write(
            out.join(format!("{}.json", self.case)),
            serde_json::to_string_pretty(&self.json())?,
        )?;
        Ok(md)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Samples((1..=100).map(f64::from).collect());
        assert!((s.pct(50.0) - 51.0).abs() < 1e-9 || (s.pct(50.0) - 50.0).abs() < 1e-9);
        assert!((s.pct(99.0) - 99.0).abs() < 1.01);
        assert!((s.max() - 100.0).abs() < 1e-9);
        assert!(Samples::default().pct(50.0).is_nan());
    }

    #[test]
    fn ratio_is_taken_against_the_reference_of_the_same_unit() {
        let mut r = Report::new("t", "T".into(), "none");
        r.row(Side::Berth, "b", "ms", Samples(vec![4.0]), None);
        r.row(Side::Reference, "r", "ms", Samples(vec![2.0]), Some(10.0));
        let j = r.json();
        assert_eq!(j["rows"][0]["p50_vs_reference"], json!(2.0));
        assert_eq!(j["rows"][1]["throughput_per_s"], json!(10.0));
        assert!(
            r.markdown()
                .contains("| berth | b | ms | 1 | 4.00 | 4.00 | 4.00 | - | 2.00x |")
        );
    }
}
