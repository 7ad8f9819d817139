//! Counters shared by producers and consumers, and the final report.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub consumed: AtomicU64,
}

#[derive(Clone, Copy)]
pub struct Snapshot {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub consumed: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            published: self.published.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
        }
    }
}

enum Value {
    Rate(f64),
    Count(u64),
    Bytes(u64),
    Micros(u64),
}

/// Named figures, printed as a table or one JSON line.
pub struct Report {
    scenario: String,
    rows: Vec<(&'static str, Value)>,
}

impl Report {
    pub fn new(scenario: String) -> Self {
        Report {
            scenario,
            rows: Vec::new(),
        }
    }

    pub fn rate(&mut self, name: &'static str, v: f64) {
        self.rows.push((name, Value::Rate(v)));
    }

    pub fn count(&mut self, name: &'static str, v: u64) {
        self.rows.push((name, Value::Count(v)));
    }

    pub fn bytes(&mut self, name: &'static str, v: u64) {
        self.rows.push((name, Value::Bytes(v)));
    }

    pub fn micros(&mut self, name: &'static str, v: u64) {
        self.rows.push((name, Value::Micros(v)));
    }

    pub fn table(&self) -> String {
        let mut out = format!("scenario                {}\n", self.scenario);
        for (name, v) in &self.rows {
            let shown = match v {
                Value::Rate(r) => format!("{r:.0} msg/s"),
                Value::Count(c) => c.to_string(),
                Value::Bytes(b) => format!("{:.1} MB", *b as f64 / 1e6),
                Value::Micros(u) => format!("{u} µs"),
            };
            out.push_str(&format!("{name:<24}{shown}\n"));
        }
        out
    }

    pub fn json(&self) -> String {
        let mut out = format!("{{\"scenario\":\"{}\"", self.scenario);
        for (name, v) in &self.rows {
            let shown = match v {
                Value::Rate(r) => format!("{r:.0}"),
                Value::Count(c) | Value::Bytes(c) | Value::Micros(c) => c.to_string(),
            };
            out.push_str(&format!(",\"{name}\":{shown}"));
        }
        out.push('}');
        out
    }
}
