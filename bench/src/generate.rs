//! A deterministic generator of customer events (same seed, same data).
//!
//! Customers have a long-tailed number of events (about 10% with one event,
//! mean near 50), stamps across one year grouped into sessions, and a
//! funnel-like chain of event names with product and purchase properties.

use serde_json::{json, Value};

/// xorshift64*: tiny, fast and deterministic; quality is ample for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is mapped to 1).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Product groups; each product belongs to 1 to 3 of them.
pub const GROUPS: [&str; 30] = [
    "outdoor", "garage", "kitchen", "bedroom", "bathroom", "garden", "office", "toys", "sports",
    "books", "music", "tools", "lighting", "pets", "baby", "beauty", "health", "auto", "crafts",
    "party", "travel", "storage", "laundry", "dining", "camping", "fitness", "gaming", "phone",
    "audio", "decor",
];
/// Shipping companies.
pub const SHIPPERS: [&str; 4] = ["fedex", "ups", "dhl", "ground"];
/// Number of distinct products.
pub const PRODUCTS: usize = 500;
/// Start of the generated year (2024-01-01T00:00:00Z).
pub const YEAR_START_MS: i64 = 1_704_067_200_000;
const YEAR_MS: i64 = 365 * 86_400_000;

/// The table definition the generated events fit.
pub fn table_definition() -> Value {
    json!({
        "id_type": "numeric",
        "properties": [
            {"name": "product_name", "type": "text"},
            {"name": "product_price", "type": "double"},
            {"name": "product_group", "type": "text", "is_set": true},
            {"name": "shipper", "type": "text"},
            {"name": "total", "type": "double"},
            {"name": "cart_size", "type": "int"},
            {"name": "age", "type": "int", "is_customer": true}
        ],
        "event_order": ["page_view", "search", "view_product", "add_to_cart", "begin_checkout", "purchase", "return", "signup"]
    })
}

struct Product {
    name: String,
    price: f64,
    groups: Vec<&'static str>,
}

/// Produces events customer by customer.
pub struct Generator {
    rng: Rng,
    products: Vec<Product>,
    /// Cumulative Zipf weights over products.
    zipf: Vec<f64>,
}

impl Generator {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Generator {
        let mut rng = Rng::new(seed);
        let products = (0..PRODUCTS)
            .map(|i| {
                let n = 1 + rng.below(3) as usize;
                let mut groups = Vec::new();
                while groups.len() < n {
                    let g = GROUPS[rng.below(GROUPS.len() as u64) as usize];
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
                Product {
                    name: format!("product_{i:03}"),
                    price: (100 + rng.below(50_000)) as f64 / 100.0,
                    groups,
                }
            })
            .collect();
        let mut zipf = Vec::with_capacity(PRODUCTS);
        let mut acc = 0.0;
        for i in 0..PRODUCTS {
            acc += 1.0 / (i + 1) as f64;
            zipf.push(acc);
        }
        Generator {
            rng,
            products,
            zipf,
        }
    }

    fn product(&mut self) -> usize {
        let total = self.zipf[PRODUCTS - 1];
        let x = self.rng.unit() * total;
        self.zipf.partition_point(|&w| w < x).min(PRODUCTS - 1)
    }

    /// Number of events of the next customer: 10% have one, the rest a
    /// heavy-tailed (Pareto) count with a mean near 50, capped at 5,000.
    pub fn event_count(&mut self) -> usize {
        if self.rng.below(10) == 0 {
            return 1;
        }
        let u = self.rng.unit().max(1e-9);
        ((20.0 / u.powf(1.0 / 1.7)) as usize).clamp(2, 5000)
    }

    /// Appends the events of customer `id` to `out`.
    pub fn customer(&mut self, id: i64, out: &mut Vec<Value>) {
        let n = self.event_count();
        let age = 18 + self.rng.below(60) as i64;
        let mut stamp = YEAR_START_MS + self.rng.below((YEAR_MS * 9 / 10) as u64) as i64;
        let mut state = "page_view";
        let mut product = self.product();
        for i in 0..n {
            // Inside a session gaps are under 25 minutes; between sessions over 30.
            stamp += if self.rng.below(8) == 0 {
                1_800_001 + self.rng.below(5 * 86_400_000) as i64
            } else {
                1_000 + self.rng.below(1_499_000) as i64
            };
            state = match (state, self.rng.below(10)) {
                (_, 0) => "search",
                ("page_view" | "search", _) => "view_product",
                ("view_product", x) if x < 4 => "add_to_cart",
                ("add_to_cart", x) if x < 6 => "begin_checkout",
                ("begin_checkout", x) if x < 8 => "purchase",
                ("purchase", 1) => "return",
                _ => "page_view",
            };
            let event = if i == 0 && self.rng.below(3) == 0 {
                "signup"
            } else {
                state
            };
            if event == "view_product" || event == "search" {
                product = self.product();
            }
            let mut e = json!({"id": id, "stamp": stamp, "event": event});
            let m = e.as_object_mut().expect("object");
            if i == 0 {
                m.insert("age".into(), json!(age));
            }
            match event {
                "view_product" | "add_to_cart" | "begin_checkout" | "return" => {
                    let p = &self.products[product];
                    m.insert("product_name".into(), json!(p.name));
                    m.insert("product_price".into(), json!(p.price));
                    m.insert("product_group".into(), json!(p.groups));
                }
                "purchase" => {
                    let p = &self.products[product];
                    let cart = 1 + self.rng.below(4) as i64;
                    m.insert("product_name".into(), json!(p.name));
                    m.insert("product_price".into(), json!(p.price));
                    m.insert("product_group".into(), json!(p.groups));
                    m.insert(
                        "shipper".into(),
                        json!(SHIPPERS[self.rng.below(4) as usize]),
                    );
                    m.insert("cart_size".into(), json!(cart));
                    m.insert(
                        "total".into(),
                        json!((p.price * cart as f64 * 100.0).round() / 100.0),
                    );
                }
                _ => {}
            }
            out.push(e);
        }
    }
}
