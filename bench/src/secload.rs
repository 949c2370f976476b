//! `openset-bench secload`: concurrent inserters and queriers against one
//! server for `--seconds`, first over plain HTTP without auth, then over
//! HTTPS (a self-signed certificate made here) with bearer-token auth; prints
//! throughput, p50/p99 latency and errors per phase, and the secure/plain
//! ratios. Loopback only; each phase is bounded by `--seconds`.

use super::{customer_order_bodies, generate, Args, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCRIPT: &str = "each_row where event.is(== \"purchase\")\n  << product_name\nend";
/// Events per insert request during the load.
const BATCH: usize = 200;

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    errors: usize,
    events: usize,
    first_error: Option<String>,
}

struct Phase {
    name: &'static str,
    seconds: f64,
    inserts: Tally,
    queries: Tally,
}

struct Client {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
}

impl Client {
    fn post(&self, path: &str, body: &[u8]) -> Result<(), String> {
        let mut req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("content-type", "application/json");
        if let Some(a) = &self.auth {
            req = req.set("authorization", a);
        }
        match req.send_bytes(body) {
            Ok(r) => {
                // Read the whole answer so the connection is reused.
                let _ = r.into_string();
                Ok(())
            }
            Err(ureq::Error::Status(code, r)) => {
                Err(format!("{code} {}", r.into_string().unwrap_or_default()))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

fn self_signed(dir: &std::path::Path) -> (String, String, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    std::fs::create_dir_all(dir).expect("cert dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    (
        cert.display().to_string(),
        key.display().to_string(),
        Arc::new(client),
    )
}

fn phase(a: &Args, secure: bool) -> Phase {
    let cert_dir = std::env::temp_dir().join(format!("openset-secload-{}", std::process::id()));
    let mut extra: Vec<String> = Vec::new();
    let mut builder = ureq::AgentBuilder::new().timeout(Duration::from_secs(120));
    if secure {
        let (cert, key, client) = self_signed(&cert_dir);
        extra.extend([
            "--auth".into(),
            "--tls-cert".into(),
            cert,
            "--tls-key".into(),
            key,
        ]);
        builder = builder.tls_config(client);
    }
    let server = Server::start_with(a.partitions, &extra);
    let base = if secure {
        server.base.replace("http://", "https://")
    } else {
        server.base.clone()
    };
    let agent = builder.build();
    let mut admin = Client {
        agent: agent.clone(),
        base: base.clone(),
        auth: None,
    };
    if secure {
        admin
            .post(
                "/v1/auth/user/register",
                br#"{"username":"bench","password":"bench-password"}"#,
            )
            .expect("register");
        let basic = format!("Basic {}", base64_encode(b"bench:bench-password"));
        let text = agent
            .get(&format!("{base}/v1/auth/token/user"))
            .set("authorization", &basic)
            .call()
            .expect("token")
            .into_string()
            .expect("token body");
        let tok: serde_json::Value = serde_json::from_str(&text).expect("token json");
        admin.auth = Some(format!("Bearer {}", tok["token"].as_str().expect("token")));
    }
    admin
        .post(
            "/v1/table/bench",
            generate::table_definition().to_string().as_bytes(),
        )
        .expect("create table");
    for body in customer_order_bodies(a.events, a.batch, a.seed) {
        admin.post("/v1/insert/bench", &body).expect("preload");
    }
    let inserters = (a.clients / 2).max(1);
    let queriers = a.clients.saturating_sub(inserters).max(1);
    let stop = AtomicBool::new(false);
    let inserts = Mutex::new(Tally::default());
    let queries = Mutex::new(Tally::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..inserters {
            let (admin, stop, inserts) = (&admin, &stop, &inserts);
            s.spawn(move || {
                let mut g = generate::Generator::new(a.seed + 1000 + w as u64);
                let mut id = 1_000_000_000 * (w as i64 + 1);
                let mut mine = Tally::default();
                let mut pending = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    while pending.len() < BATCH {
                        g.customer(id, &mut pending);
                        id += 1;
                    }
                    let body = serde_json::to_vec(&pending[..BATCH]).expect("encode");
                    pending.drain(..BATCH);
                    let t = Instant::now();
                    match admin.post("/v1/insert/bench", &body) {
                        Ok(()) => {
                            mine.latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                            mine.events += BATCH;
                        }
                        Err(e) => {
                            mine.errors += 1;
                            mine.first_error.get_or_insert(e);
                        }
                    }
                }
                merge(inserts, mine);
            });
        }
        for _ in 0..queriers {
            let (admin, stop, queries) = (&admin, &stop, &queries);
            s.spawn(move || {
                let mut mine = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match admin.post("/v1/query/bench/event", SCRIPT.as_bytes()) {
                        Ok(()) => mine.latencies.push(t.elapsed().as_secs_f64() * 1000.0),
                        Err(e) => {
                            mine.errors += 1;
                            mine.first_error.get_or_insert(e);
                        }
                    }
                }
                merge(queries, mine);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(a.seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let seconds = started.elapsed().as_secs_f64();
    drop(server);
    let _ = std::fs::remove_dir_all(&cert_dir);
    Phase {
        name: if secure {
            "https + bearer auth"
        } else {
            "http, no auth"
        },
        seconds,
        inserts: inserts.into_inner().unwrap_or_default(),
        queries: queries.into_inner().unwrap_or_default(),
    }
}

fn merge(into: &Mutex<Tally>, mine: Tally) {
    if let Ok(mut t) = into.lock() {
        t.latencies.extend(mine.latencies);
        t.errors += mine.errors;
        t.events += mine.events;
        if t.first_error.is_none() {
            t.first_error = mine.first_error;
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn base64_encode(raw: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in raw.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs both phases and prints the report.
pub fn run(a: &Args) {
    let phases = [phase(a, false), phase(a, true)];
    println!("| phase | kind | requests | req/s | events/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    for p in &phases {
        for (kind, t) in [("insert", &p.inserts), ("query", &p.queries)] {
            let mut l = t.latencies.clone();
            l.sort_by(f64::total_cmp);
            let rps = l.len() as f64 / p.seconds;
            println!(
                "| {} | {kind} | {} | {rps:.1} | {} | {:.2} | {:.2} | {} |",
                p.name,
                l.len(),
                if kind == "insert" {
                    format!("{:.0}", t.events as f64 / p.seconds)
                } else {
                    "-".into()
                },
                pct(&l, 0.5),
                pct(&l, 0.99),
                t.errors
            );
            if let Some(e) = &t.first_error {
                println!("|   first {kind} error: {e} |");
            }
            rates.push((rps, pct(&l, 0.5), pct(&l, 0.99)));
        }
    }
    let ratio = |i: usize, j: usize| {
        (
            rates[j].0 / rates[i].0,
            rates[j].1 / rates[i].1,
            rates[j].2 / rates[i].2,
        )
    };
    let (ir, ip50, ip99) = ratio(0, 2);
    let (qr, qp50, qp99) = ratio(1, 3);
    println!("\nsecure / plain: inserts req/s {ir:.2}x, p50 {ip50:.2}x, p99 {ip99:.2}x; queries req/s {qr:.2}x, p50 {qp50:.2}x, p99 {qp99:.2}x");
    println!(
        "settings: {} s per phase, {} inserter(s) x {BATCH} events, {} querier(s), {} preloaded events, {} partitions",
        a.seconds,
        (a.clients / 2).max(1),
        a.clients.saturating_sub((a.clients / 2).max(1)).max(1),
        a.events,
        a.partitions
    );
}
