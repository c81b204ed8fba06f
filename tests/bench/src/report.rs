//! The readable table printed on stdout.

use crate::run::{ratio, AbRate};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    /// A: bare Envoy (or native, for the tokenizer).
    pub a: f64,
    /// B: with the aigw filters (or inside Wasm).
    pub b: f64,
    pub unit: String,
    pub ratio: f64,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn row(&mut self, scenario: &str, metric: &str, a: f64, b: f64, unit: &str, ratio_override: Option<f64>) {
        self.rows.push(Row {
            scenario: scenario.to_string(),
            metric: metric.to_string(),
            a,
            b,
            unit: unit.to_string(),
            ratio: ratio_override.unwrap_or_else(|| ratio(b, a)),
            note: None,
        });
    }

    /// p50 and p99 rows of an A/B comparison; "added" is the median of per-round differences.
    pub fn ab_latency(&mut self, scenario: &str, label: &str, ab: &AbRate) {
        for (p, a, b, added) in
            [("p50", ab.a_p50_us, ab.b_p50_us, ab.added_p50_us), ("p99", ab.a_p99_us, ab.b_p99_us, ab.added_p99_us)]
        {
            self.row(scenario, &format!("{label} {p} @ {:.0} rps", ab.rate_rps), a, b, "µs", None);
            if let Some(row) = self.rows.last_mut() {
                row.note = Some(format!("added {added:+.1} µs (median of rounds){}", errors_note(ab.errors)));
            }
        }
    }

    /// A note under the last row of a scenario.
    pub fn note(&mut self, scenario: &str, note: &str) {
        if let Some(row) = self.rows.iter_mut().rev().find(|r| r.scenario == scenario) {
            let joined = match row.note.take() {
                Some(old) => format!("{old}; {note}"),
                None => note.to_string(),
            };
            row.note = Some(joined);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<36} {:<38} {:>13} {:>13} {:>7}  note",
            "scenario", "metric", "A bare/native", "B aigw/Wasm", "B/A"
        );
        let _ = writeln!(out, "{}", "-".repeat(130));
        for row in &self.rows {
            let _ = writeln!(
                out,
                "{:<36} {:<38} {:>13} {:>13} {:>7}  {}",
                row.scenario,
                row.metric,
                format_value(row.a, &row.unit),
                format_value(row.b, &row.unit),
                if row.ratio.is_finite() { format!("{:.2}×", row.ratio) } else { "-".to_string() },
                row.note.as_deref().unwrap_or("")
            );
        }
        out
    }
}

fn errors_note(errors: u64) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!("; {errors} ERRORS")
    }
}

fn format_value(value: f64, unit: &str) -> String {
    if !value.is_finite() {
        return "-".to_string();
    }
    if value.abs() >= 100_000.0 {
        format!("{:.3e} {unit}", value)
    } else if value.abs() >= 100.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rows_with_ratio() {
        let mut table = Table::default();
        table.row("1 full chain", "max rps", 1000.0, 800.0, "rps", None);
        table.note("1 full chain", "hello");
        let text = table.render();
        assert!(text.contains("0.80×"), "{text}");
        assert!(text.contains("1000 rps"), "{text}");
        assert!(text.contains("hello"), "{text}");
    }
}
