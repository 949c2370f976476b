//! A small metrics registry: labelled counters and histograms, rendered in
//! the Prometheus text format (`/metrics`) and as JSON (`/metrics.json`).
//! Hand-rolled on purpose (ADR 0003): a few dozen series, two renderings
//! from one source, no global recorder.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Names, kinds and help of every metric the server reports.
const HELP: &[(&str, &str, &str)] = &[
    (
        "openset_http_requests_total",
        "counter",
        "HTTP requests by route, method and status.",
    ),
    (
        "openset_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by route.",
    ),
    (
        "openset_auth_failures_total",
        "counter",
        "Requests refused with 401 or 403, by status.",
    ),
    (
        "openset_insert_requests_total",
        "counter",
        "Insert requests answered 200.",
    ),
    (
        "openset_inserted_events_total",
        "counter",
        "Events accepted by inserts.",
    ),
    (
        "openset_rejected_events_total",
        "counter",
        "Records rejected by inserts.",
    ),
    (
        "openset_queries_total",
        "counter",
        "Scripted and index queries by kind and outcome.",
    ),
    (
        "openset_query_duration_seconds",
        "histogram",
        "Query run time by kind.",
    ),
    (
        "openset_segments_refreshed_total",
        "counter",
        "Segment evaluations stored (on request, refresh, start-up).",
    ),
    (
        "openset_webhook_deliveries_total",
        "counter",
        "Webhook delivery calls answered 2xx (test calls excluded).",
    ),
    (
        "openset_webhook_failures_total",
        "counter",
        "Webhook delivery calls that failed: other answers and transport errors.",
    ),
    ("openset_active_queries", "gauge", "Queries running now."),
    ("openset_partitions", "gauge", "Partitions of this node."),
    ("openset_tables", "gauge", "Tables in the catalog."),
    (
        "openset_resident_memory_bytes",
        "gauge",
        "Resident memory of the process.",
    ),
    (
        "openset_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    ),
];

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Default)]
struct Hist {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    hists: Mutex<BTreeMap<(&'static str, Labels), Hist>>,
}

impl Metrics {
    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: f64) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name, own(labels))).or_default() += by;
        }
    }

    /// Sets a counter kept elsewhere (a running total read at render time).
    pub fn set_total(&self, name: &'static str, value: f64) {
        if let Ok(mut c) = self.counters.lock() {
            c.insert((name, Vec::new()), value);
        }
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1.0);
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], secs: f64) {
        if let Ok(mut h) = self.hists.lock() {
            let h = h.entry((name, own(labels))).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// The Prometheus text exposition, with `gauges` appended.
    pub fn prometheus(&self, gauges: &[(&'static str, f64)]) -> String {
        let counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let hists = self.hists.lock().map(|h| h.clone()).unwrap_or_default();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            match *kind {
                "counter" => {
                    let mut any = false;
                    for ((n, l), v) in counters.iter().filter(|((n, _), _)| n == name) {
                        any = true;
                        let _ = writeln!(out, "{n}{} {}", render_labels(l, None), num(*v));
                    }
                    if !any {
                        let _ = writeln!(out, "{name} 0");
                    }
                }
                "histogram" => {
                    for ((n, l), h) in hists.iter().filter(|((n, _), _)| n == name) {
                        for (i, b) in BUCKETS.iter().enumerate() {
                            let le = b.to_string();
                            let _ = writeln!(
                                out,
                                "{n}_bucket{} {}",
                                render_labels(l, Some(&le)),
                                h.counts[i]
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{n}_bucket{} {}",
                            render_labels(l, Some("+Inf")),
                            h.count
                        );
                        let _ = writeln!(out, "{n}_sum{} {}", render_labels(l, None), h.sum);
                        let _ = writeln!(out, "{n}_count{} {}", render_labels(l, None), h.count);
                    }
                }
                _ => {
                    if let Some((_, v)) = gauges.iter().find(|(g, _)| g == name) {
                        let _ = writeln!(out, "{name} {}", num(*v));
                    }
                }
            }
        }
        out
    }

    /// The same figures as JSON: `{"counters": {name: [{labels, value}]},
    /// "histograms": {name: [{labels, count, sum, buckets}]}, "gauges": {name: value}}`.
    pub fn json(&self, gauges: &[(&'static str, f64)]) -> Value {
        let counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let hists = self.hists.lock().map(|h| h.clone()).unwrap_or_default();
        let labels = |l: &Labels| {
            Value::Object(
                l.iter()
                    .map(|(k, v)| (k.to_string(), Value::from(v.clone())))
                    .collect(),
            )
        };
        let mut c = Map::new();
        for ((n, l), v) in &counters {
            push(&mut c, n, json!({ "labels": labels(l), "value": v }));
        }
        let mut h = Map::new();
        for ((n, l), x) in &hists {
            let buckets: Map<String, Value> = BUCKETS
                .iter()
                .zip(x.counts)
                .map(|(b, n)| (b.to_string(), Value::from(n)))
                .collect();
            push(
                &mut h,
                n,
                json!({ "labels": labels(l), "count": x.count, "sum": x.sum, "buckets": buckets }),
            );
        }
        let g: Map<String, Value> = gauges
            .iter()
            .map(|(n, v)| (n.to_string(), json!(v)))
            .collect();
        json!({ "counters": c, "histograms": h, "gauges": g })
    }
}

fn push(m: &mut Map<String, Value>, name: &str, v: Value) {
    if let Value::Array(a) = m
        .entry(name.to_string())
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        a.push(v);
    }
}

fn own(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

fn render_labels(l: &Labels, le: Option<&str>) -> String {
    if l.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

/// Resident memory of this process (Linux `/proc/self/statm`), 0 elsewhere.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.inc(
            "openset_queries_total",
            &[("kind", "event"), ("outcome", "ok")],
        );
        m.observe(
            "openset_query_duration_seconds",
            &[("kind", "event")],
            0.003,
        );
        let text = m.prometheus(&[("openset_partitions", 4.0)]);
        assert!(text.contains("openset_queries_total{kind=\"event\",outcome=\"ok\"} 1\n"));
        assert!(text
            .contains("openset_query_duration_seconds_bucket{kind=\"event\",le=\"0.0025\"} 0\n"));
        assert!(
            text.contains("openset_query_duration_seconds_bucket{kind=\"event\",le=\"0.005\"} 1\n")
        );
        assert!(text.contains("openset_partitions 4\n"));
        assert!(text.contains("openset_webhook_failures_total 0\n"));
        let j = m.json(&[]);
        assert_eq!(j["counters"]["openset_queries_total"][0]["value"], 1.0);
    }
}
