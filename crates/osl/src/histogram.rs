//! Histogram results (§12.1): sample conversion, per-customer counting,
//! an order-independent merge, and rendering with bucketing, fill,
//! key sorting and trim.

use crate::result_tree::GroupKey;
use crate::value::{numeric_text, Value};
use rustc_hash::FxHashMap as HashMap;
use serde_json::{Map, Number, Value as J};

/// One histogram sample: the value quantised to 4 decimals (×10,000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Value × 10,000.
    pub scaled: i64,
    /// The script returned an int or bool.
    pub integral: bool,
}

/// Converts a run's return value to a sample (§12.1): nil → none,
/// bool → 0/1, numbers, numeric text; anything else is an error
/// ("histogram value must be numeric").
pub fn histogram_sample(v: &Value) -> Result<Option<Sample>, String> {
    // Integers whose scaled value a double holds exactly (|i| < 2^53/10^4)
    // scale in integer arithmetic: the same result without a libm round.
    const EXACT: i64 = (1 << 53) / 10_000;
    if let Value::Int(i) = v {
        if (-EXACT..=EXACT).contains(i) {
            return Ok(Some(Sample {
                scaled: i * 10_000,
                integral: true,
            }));
        }
    }
    let (f, integral) = match v {
        Value::Nil => return Ok(None),
        Value::Bool(b) => (f64::from(u8::from(*b)), true),
        Value::Int(i) => (*i as f64, true),
        Value::Float(f) => (*f, false),
        Value::Text(t) => match numeric_text(t) {
            Some(f) => (f, false),
            None => return Err("histogram value must be numeric".into()),
        },
        _ => return Err("histogram value must be numeric".into()),
    };
    if !f.is_finite() {
        return Err("histogram value must be numeric".into());
    }
    Ok(Some(Sample {
        scaled: (f * 10_000.0).round() as i64,
        integral,
    }))
}

/// Histogram request parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramOptions {
    /// Root node name (`{name}` of the URL).
    pub name: String,
    /// `bucket=b` (> 0).
    pub bucket: Option<f64>,
    /// `min=`
    pub min: Option<f64>,
    /// `max=`
    pub max: Option<f64>,
    /// `order=desc` (default) or asc.
    pub descending: bool,
    /// `trim=N`
    pub trim: Option<usize>,
}

impl Default for HistogramOptions {
    fn default() -> Self {
        HistogramOptions {
            name: String::new(),
            bucket: None,
            min: None,
            max: None,
            descending: true,
            trim: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Level {
    counts: Vec<i64>,
    samples: HashMap<i64, Vec<i64>>,
}

/// Counts of customers per sample value (per `foreach` value), per segment.
#[derive(Clone, Debug)]
pub struct Histogram {
    opts: HistogramOptions,
    segments: usize,
    root: Vec<i64>,
    /// Without `foreach`: one level under key `None`.
    levels: HashMap<Option<GroupKey>, Level>,
    all_int: bool,
}

fn scaled(f: f64) -> i64 {
    (f * 10_000.0).round() as i64
}

impl Histogram {
    /// An empty histogram with `segments` (≥ 1) count columns.
    pub fn new(opts: HistogramOptions, segments: usize) -> Histogram {
        Histogram {
            opts,
            segments: segments.max(1),
            root: vec![0; segments.max(1)],
            levels: HashMap::default(),
            all_int: true,
        }
    }

    fn bucketed(&self, s: i64) -> i64 {
        match self.opts.bucket {
            Some(b) if b > 0.0 => {
                let v = s as f64 / 10_000.0;
                scaled((v / b + 1e-9).floor() * b)
            }
            _ => s,
        }
    }

    /// Records one customer's samples for segment `segment`: one entry per
    /// `foreach` value (key `None` without `foreach`). The customer counts
    /// once at the root when it produced any sample.
    pub fn add_customer(&mut self, segment: usize, samples: &[(Option<GroupKey>, Sample)]) {
        if samples.is_empty() {
            return;
        }
        let seg = segment.min(self.segments - 1);
        if let Some(r) = self.root.get_mut(seg) {
            *r += 1;
        }
        for (key, s) in samples {
            self.add_sample(seg, key, s);
        }
    }

    /// [`Histogram::add_customer`] for a customer with exactly one sample
    /// (one run, no `foreach` list): no slice to build.
    pub fn add_one(&mut self, segment: usize, key: &Option<GroupKey>, s: Sample) {
        let seg = segment.min(self.segments - 1);
        if let Some(r) = self.root.get_mut(seg) {
            *r += 1;
        }
        self.add_sample(seg, key, &s);
    }

    /// Counts one sample of a customer under `key` (the root is the caller's).
    fn add_sample(&mut self, seg: usize, key: &Option<GroupKey>, s: &Sample) {
        self.all_int &= s.integral;
        let b = self.bucketed(s.scaled);
        let width = self.segments;
        let level = self.levels.entry(key.clone()).or_insert_with(|| Level {
            counts: vec![0; width],
            samples: HashMap::default(),
        });
        if let Some(c) = level.counts.get_mut(seg) {
            *c += 1;
        }
        let counts = level.samples.entry(b).or_insert_with(|| vec![0; width]);
        if let Some(c) = counts.get_mut(seg) {
            *c += 1;
        }
    }

    /// Merges another partition's histogram (same options and segments).
    pub fn merge(&mut self, other: Histogram) {
        for (a, b) in self.root.iter_mut().zip(other.root.iter()) {
            *a += b;
        }
        self.all_int &= other.all_int;
        let width = self.segments;
        for (k, lv) in other.levels {
            let mine = self.levels.entry(k).or_insert_with(|| Level {
                counts: vec![0; width],
                samples: HashMap::default(),
            });
            for (a, b) in mine.counts.iter_mut().zip(lv.counts.iter()) {
                *a += b;
            }
            for (s, c) in lv.samples {
                let t = mine.samples.entry(s).or_insert_with(|| vec![0; width]);
                for (a, b) in t.iter_mut().zip(c.iter()) {
                    *a += b;
                }
            }
        }
    }

    fn counts_json(&self, m: &mut Map<String, J>, counts: &[i64]) {
        for s in 0..self.segments {
            let name = if s == 0 {
                "c".to_string()
            } else {
                format!("c{}", s + 1)
            };
            m.insert(
                name,
                J::Array(vec![J::from(counts.get(s).copied().unwrap_or(0))]),
            );
        }
    }

    fn int_keys(&self) -> bool {
        let integral = |o: Option<f64>| o.is_none_or(|v| v.fract() == 0.0);
        self.all_int
            && integral(self.opts.bucket)
            && integral(self.opts.min)
            && integral(self.opts.max)
    }

    fn sample_nodes(&self, level: &Level) -> Vec<J> {
        let mut entries: Vec<(i64, Vec<i64>)> =
            level.samples.iter().map(|(k, v)| (*k, v.clone())).collect();
        if let Some(b) = self.opts.bucket.filter(|b| *b > 0.0) {
            entries = fill(entries, b, self.opts.min, self.opts.max, self.segments);
        }
        entries.sort_by_key(|(k, _)| *k);
        if self.opts.descending {
            entries.reverse();
        }
        if let Some(n) = self.opts.trim {
            entries.truncate(n);
        }
        let ints = self.int_keys();
        entries
            .into_iter()
            .map(|(k, counts)| {
                let mut m = Map::new();
                let g = if ints {
                    J::from(k / 10_000)
                } else {
                    Number::from_f64(k as f64 / 10_000.0).map_or(J::Null, J::Number)
                };
                m.insert("g".into(), g);
                self.counts_json(&mut m, &counts);
                J::Object(m)
            })
            .collect()
    }

    /// The root node `{"g": name, "c": [...], "_": [...]}` (as in a batch response).
    pub fn root_node(&self) -> J {
        let mut root = Map::new();
        root.insert("g".into(), J::from(self.opts.name.as_str()));
        self.counts_json(&mut root, &self.root);
        let children: Vec<J> = if let Some(level) = self.levels.get(&None) {
            self.sample_nodes(level)
        } else {
            let mut keys: Vec<&GroupKey> = self.levels.keys().flatten().collect();
            keys.sort_by(|a, b| a.order(b));
            if self.opts.descending {
                keys.reverse();
            }
            if let Some(n) = self.opts.trim {
                keys.truncate(n);
            }
            keys.into_iter()
                .filter_map(|k| {
                    let level = self.levels.get(&Some(k.clone()))?;
                    let mut m = Map::new();
                    m.insert("g".into(), k.to_json());
                    self.counts_json(&mut m, &level.counts);
                    m.insert("_".into(), J::Array(self.sample_nodes(level)));
                    Some(J::Object(m))
                })
                .collect()
        };
        if !children.is_empty() {
            root.insert("_".into(), J::Array(children));
        }
        J::Object(root)
    }

    /// The full response `{"_": [root]}`.
    pub fn render(&self) -> J {
        let mut top = Map::new();
        top.insert("_".into(), J::Array(vec![self.root_node()]));
        J::Object(top)
    }
}

/// The fill step of §12.1 over (scaled key, counts) entries.
fn fill(
    entries: Vec<(i64, Vec<i64>)>,
    b: f64,
    min: Option<f64>,
    max: Option<f64>,
    width: usize,
) -> Vec<(i64, Vec<i64>)> {
    if entries.is_empty() && (min.is_none() || max.is_none()) {
        return entries;
    }
    let smallest = entries.iter().map(|e| e.0).min().unwrap_or(0);
    let largest = entries.iter().map(|e| e.0).max().unwrap_or(0);
    let lo_f = min.unwrap_or(smallest as f64 / 10_000.0);
    let hi = max.map_or(largest, scaled);
    let lo = scaled((lo_f / b + 1e-9).floor() * b);
    let step = scaled(b).max(1);
    let mut out: HashMap<i64, Vec<i64>> = HashMap::default();
    let mut top = vec![0i64; width];
    for (k, c) in entries {
        if k >= hi {
            for (a, x) in top.iter_mut().zip(c.iter()) {
                *a += x;
            }
        } else {
            out.insert(k, c);
        }
    }
    // Bounded: a fill of more than a million buckets is not a histogram.
    let mut k = lo;
    let mut n = 0;
    while k < hi && n < 1_000_000 {
        out.entry(k).or_insert_with(|| vec![0; width]);
        k = k.saturating_add(step);
        n += 1;
    }
    out.insert(hi, top);
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn s(v: Value) -> Sample {
        histogram_sample(&v).ok().flatten().unwrap_or(Sample {
            scaled: -1,
            integral: false,
        })
    }

    #[test]
    fn sample_conversion() {
        assert_eq!(histogram_sample(&Value::Nil), Ok(None));
        assert_eq!(
            s(Value::Bool(true)),
            Sample {
                scaled: 10_000,
                integral: true
            }
        );
        assert_eq!(
            s(Value::Float(1.23456)),
            Sample {
                scaled: 12_346,
                integral: false
            }
        );
        assert_eq!(s(Value::text("2.5")).scaled, 25_000);
        assert!(histogram_sample(&Value::text("x")).is_err());
        assert!(histogram_sample(&Value::list(vec![])).is_err());
    }

    #[test]
    fn spec_foreach_example() {
        let opts = HistogramOptions {
            name: "spend_by_genre".into(),
            bucket: Some(10.0),
            ..HistogramOptions::default()
        };
        let key = |t: &str| Some(GroupKey::Text(Arc::from(t)));
        let mut part1 = Histogram::new(opts.clone(), 1);
        // ana: scifi 12.5, classic 20.5, romance 8.0
        part1.add_customer(
            0,
            &[
                (key("scifi"), s(Value::Float(12.5))),
                (key("classic"), s(Value::Float(20.5))),
                (key("romance"), s(Value::Float(8.0))),
            ],
        );
        let mut part2 = Histogram::new(opts, 1);
        // ben: scifi 32.5, classic 12.5
        part2.add_customer(
            0,
            &[
                (key("scifi"), s(Value::Float(32.5))),
                (key("classic"), s(Value::Float(12.5))),
            ],
        );
        part1.merge(part2);
        assert_eq!(
            part1.render(),
            json!({"_": [{"g": "spend_by_genre", "c": [2], "_": [
                {"g": "scifi",   "c": [2], "_": [{"g": 30.0, "c": [1]}, {"g": 20.0, "c": [0]}, {"g": 10.0, "c": [1]}]},
                {"g": "romance", "c": [1], "_": [{"g": 0.0,  "c": [1]}]},
                {"g": "classic", "c": [2], "_": [{"g": 20.0, "c": [1]}, {"g": 10.0, "c": [1]}]}
            ]}]})
        );
    }

    #[test]
    fn integer_samples_scale_as_the_double_path_does() {
        let via_double = |i: i64| ((i as f64) * 10_000.0).round() as i64;
        let edge = (1i64 << 53) / 10_000;
        for i in [
            0,
            1,
            -1,
            7,
            -229,
            52,
            edge,
            -edge,
            edge + 1,
            i64::MAX,
            i64::MIN,
        ] {
            let got = histogram_sample(&Value::Int(i))
                .ok()
                .flatten()
                .map(|x| x.scaled);
            assert_eq!(got, Some(via_double(i)), "{i}");
        }
    }

    #[test]
    fn add_one_equals_a_one_sample_add_customer() {
        let mut a = Histogram::new(HistogramOptions::default(), 2);
        let mut b = Histogram::new(HistogramOptions::default(), 2);
        let key = Some(GroupKey::Text("k".into()));
        for (i, v) in [
            Value::Int(3),
            Value::Float(2.5),
            Value::Int(3),
            Value::Int(-1),
        ]
        .into_iter()
        .enumerate()
        {
            let seg = i % 2;
            for k in [None, key.clone()] {
                a.add_one(seg, &k, s(v.clone()));
                b.add_customer(seg, &[(k, s(v.clone()))]);
            }
        }
        assert_eq!(a.render(), b.render());
    }

    #[test]
    fn int_keys_fill_max_and_order() {
        let opts = HistogramOptions {
            name: "h".into(),
            bucket: Some(5.0),
            max: Some(15.0),
            descending: false,
            ..HistogramOptions::default()
        };
        let mut h = Histogram::new(opts, 2);
        for (seg, v) in [(0, 1), (0, 7), (1, 7), (0, 40), (0, -3)] {
            h.add_customer(seg, &[(None, s(Value::Int(v)))]);
        }
        assert_eq!(
            h.render(),
            json!({"_": [{"g": "h", "c": [4], "c2": [1], "_": [
                {"g": -5, "c": [1], "c2": [0]},
                {"g": 0, "c": [1], "c2": [0]},
                {"g": 5, "c": [1], "c2": [1]},
                {"g": 10, "c": [0], "c2": [0]},
                {"g": 15, "c": [1], "c2": [0]}
            ]}]})
        );
    }
}
