//! `openset-bench`: load drivers that start a real release `openset` server
//! and measure it over HTTP on loopback.
//!
//! `openset-bench insert|insert-subs|query [--events N] [--batch N] [--clients N] [--partitions N] [--passes N] [--seed N]`
//! `openset-bench gen --out FILE.ndjson.gz [--events N] [--seed N]`
//! `openset-bench secload [--seconds N] [--clients N] [--events N]`: auth+TLS vs plain under load

mod generate;
mod secload;
mod subs;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Args {
    events: usize,
    batch: usize,
    clients: usize,
    partitions: u32,
    passes: usize,
    seed: u64,
    seconds: f64,
}

fn parse_args() -> Result<(String, Args), String> {
    parse_args_from(std::env::args().skip(1))
}

fn parse_args_from(mut it: impl Iterator<Item = String>) -> Result<(String, Args), String> {
    let cmd = it.next().ok_or("usage: openset-bench insert [--events N] [--batch N] [--clients N] [--partitions N] [--passes N] [--seed N]")?;
    let mut a = Args {
        events: 1_000_000,
        batch: 10_000,
        clients: 2,
        partitions: 4,
        passes: 3,
        seed: 42,
        seconds: 60.0,
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let n: u64 = v
            .parse()
            .map_err(|_| format!("{flag}: '{v}' is not a number"))?;
        match flag.as_str() {
            "--events" => a.events = n as usize,
            "--batch" => a.batch = n as usize,
            "--clients" => a.clients = n as usize,
            "--partitions" => a.partitions = n as u32,
            "--passes" => a.passes = n as usize,
            "--seed" => a.seed = n,
            "--seconds" => a.seconds = n as f64,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok((cmd, a))
}

/// A release `openset` started next to this binary, on a fresh data directory.
struct Server {
    child: Child,
    base: String,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(partitions: u32) -> Server {
        Server::start_with(partitions, &[])
    }

    /// Starts with extra `serve` flags.
    fn start_with(partitions: u32, extra: &[String]) -> Server {
        let exe = std::env::current_exe()
            .expect("current exe")
            .with_file_name("openset");
        let dir = std::env::temp_dir().join(format!("openset-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = Command::new(&exe)
            .args([
                "serve",
                "--port",
                "0",
                "--log-level",
                "warn",
                "--partitions",
                &partitions.to_string(),
                "--data-dir",
            ])
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {}: {e} (build it: cargo build --release -p openset)",
                    exe.display()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("server address")
            .to_string();
        Server {
            child,
            base: format!("http://{addr}"),
            dir,
        }
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build()
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8]) {
    match agent
        .post(url)
        .set("content-type", "application/json")
        .send_bytes(body)
    {
        Ok(_) => {}
        Err(ureq::Error::Status(code, r)) => {
            panic!("POST {url}: {code} {}", r.into_string().unwrap_or_default())
        }
        Err(e) => panic!("POST {url}: {e}"),
    }
}

/// Posts every body to `url` from `clients` concurrent HTTP clients, each
/// taking the next unsent body; returns the elapsed seconds.
fn post_all(bodies: &[Vec<u8>], url: &str, clients: usize) -> f64 {
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients.max(1) {
            s.spawn(|| {
                let client = agent();
                while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                    post(&client, url, body);
                }
            });
        }
    });
    t.elapsed().as_secs_f64()
}

/// Generates `n` events in stamp order (the order a live stream delivers them).
fn generate_events(n: usize, seed: u64) -> Vec<Value> {
    let mut g = generate::Generator::new(seed);
    let mut events = Vec::with_capacity(n + 5000);
    let mut id = 1i64;
    while events.len() < n {
        g.customer(id, &mut events);
        id += 1;
    }
    events.truncate(n);
    events.sort_by_key(|e| e["stamp"].as_i64().unwrap_or(0));
    events
}

fn insert_bench(a: &Args) {
    let t = Instant::now();
    let events = generate_events(a.events, a.seed);
    let bodies: Vec<Vec<u8>> = events
        .chunks(a.batch)
        .map(|c| serde_json::to_vec(c).expect("encode"))
        .collect();
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();
    drop(events);
    eprintln!(
        "generated {} events ({} MiB of JSON) in {:.1}s",
        a.events,
        body_bytes >> 20,
        t.elapsed().as_secs_f64()
    );

    // Baseline measured in the same run: parsing the same bodies on one core.
    let t = Instant::now();
    let mut parsed = 0usize;
    for b in &bodies {
        parsed += serde_json::from_slice::<Vec<Value>>(b)
            .expect("parse")
            .len();
    }
    let parse_rate = parsed as f64 / t.elapsed().as_secs_f64();

    let server = Server::start(a.partitions);
    let agent = agent();
    println!("| pass | events | seconds | events/s | vs parse-only baseline | RSS after (MiB) | RSS bytes/event |");
    println!("|---|---|---|---|---|---|---|");
    for pass in 0..a.passes {
        let table = format!("bench{pass}");
        post(
            &agent,
            &format!("{}/v1/table/{table}", server.base),
            generate::table_definition().to_string().as_bytes(),
        );
        let url = format!("{}/v1/insert/{table}", server.base);
        let secs = post_all(&bodies, &url, a.clients);
        let rate = a.events as f64 / secs;
        let rss = server.rss_bytes();
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2}x | {} | {:.0} |",
            pass + 1,
            a.events,
            secs,
            rate,
            rate / parse_rate,
            rss >> 20,
            rss as f64 / (a.events * (pass + 1)) as f64
        );
    }
    println!(
        "\nbaseline: serde_json parse of the same bodies on one core: {parse_rate:.0} events/s"
    );
    println!("settings: batch {} events, {} client threads, {} partitions, durability on (fsync per group commit)", a.batch, a.clients, a.partitions);
}

/// Bodies of `n` generated events, customer by customer, `batch` events each.
fn customer_order_bodies(n: usize, batch: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut g = generate::Generator::new(seed);
    let mut bodies = Vec::new();
    let mut pending: Vec<Value> = Vec::with_capacity(batch + 5000);
    let mut id = 1i64;
    let mut total = 0usize;
    while total < n {
        g.customer(id, &mut pending);
        id += 1;
        if pending.len() >= batch || total + pending.len() >= n {
            pending.truncate(n - total);
            total += pending.len();
            bodies.push(serde_json::to_vec(&pending).expect("encode"));
            pending.clear();
        }
    }
    bodies
}

fn query_ms(agent: &ureq::Agent, url: &str, script: &str) -> (f64, String) {
    let t = Instant::now();
    let body = match agent.post(url).send_string(script) {
        Ok(r) => r.into_string().unwrap_or_default(),
        Err(ureq::Error::Status(code, r)) => panic!(
            "query failed: {code} {}",
            r.into_string().unwrap_or_default()
        ),
        Err(e) => panic!("query failed: {e}"),
    };
    (t.elapsed().as_secs_f64() * 1000.0, body)
}

/// Event queries over `--events` generated events: median of `--passes` warm runs.
fn query_bench(a: &Args) {
    let t = Instant::now();
    let bodies = customer_order_bodies(a.events, a.batch, a.seed);
    eprintln!(
        "generated {} events in {:.1}s",
        a.events,
        t.elapsed().as_secs_f64()
    );
    let server = Server::start(a.partitions);
    let agent = agent();
    post(
        &agent,
        &format!("{}/v1/table/bench", server.base),
        generate::table_definition().to_string().as_bytes(),
    );
    let url = format!("{}/v1/insert/bench", server.base);
    let load = post_all(&bodies, &url, a.clients);
    drop(bodies);
    eprintln!(
        "loaded in {load:.1}s ({:.0} events/s); RSS {} MiB",
        a.events as f64 / load,
        server.rss_bytes() >> 20
    );
    let queries = [
        ("baseline: visit every row, no push", "each_row where true\nend"),
        ("one condition, << one property", "each_row where event.is(== \"purchase\")\n  << product_name\nend"),
        (
            "sequence: view, then the next add_to_cart of it",
            "each_row where event.is(== \"view_product\")\n  p = product_name\n  each_row.continue().next().limit(1) where event.is(== \"add_to_cart\") && product_name == p\n    << p\n  end\nend",
        ),
        ("sessions histogram", "<< session_count"),
    ];
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let url = format!("{}/v1/query/bench/event", server.base);
    println!("| query | median ms | rows/s/core | vs baseline |");
    println!("|---|---|---|---|");
    let mut baseline = 0.0;
    for (name, script) in queries {
        query_ms(&agent, &url, script); // warm
        let mut times: Vec<f64> = (0..a.passes.max(1))
            .map(|_| query_ms(&agent, &url, script).0)
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if baseline == 0.0 {
            baseline = median;
        }
        let rate = a.events as f64 / (median / 1000.0) / cores;
        println!(
            "| {name} | {median:.1} | {rate:.0} | {:.2}x |",
            median / baseline
        );
    }
    println!(
        "\n{} events, {} partitions, {cores} cores, median of {} warm runs",
        a.events,
        a.partitions,
        a.passes.max(1)
    );
}

/// Writes `--events` generated events, customer by customer, as gzip NDJSON
/// to the path after `--out` (the input of the peer comparison).
fn gen(a: &Args, out: &str) {
    use std::io::Write;
    let file = std::fs::File::create(out).unwrap_or_else(|e| panic!("create {out}: {e}"));
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut g = generate::Generator::new(a.seed);
    let mut events = Vec::new();
    let mut written = 0usize;
    let mut id = 1i64;
    while written < a.events {
        events.clear();
        g.customer(id, &mut events);
        id += 1;
        for e in events.iter().take(a.events - written) {
            serde_json::to_writer(&mut gz, e).expect("write");
            gz.write_all(b"\n").expect("write");
            written += 1;
        }
    }
    gz.finish().expect("finish").flush().expect("flush");
    eprintln!("wrote {written} events of {} customers to {out}", id - 1);
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("gen") {
        let mut args: Vec<String> = std::env::args().collect();
        let at = args.iter().position(|a| a == "--out");
        let out = at
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| "events.ndjson.gz".into());
        if let Some(i) = at {
            args.drain(i..(i + 2).min(args.len()));
        }
        match parse_args_from(args.into_iter().skip(1)) {
            Ok((_, a)) => gen(&a, &out),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
        return;
    }
    match parse_args() {
        Ok((cmd, a)) if cmd == "insert" => insert_bench(&a),
        Ok((cmd, a)) if cmd == "query" => query_bench(&a),
        Ok((cmd, a)) if cmd == "secload" => secload::run(&a),
        Ok((cmd, a)) if cmd == "insert-subs" => subs::insert_subs_bench(&a),
        Ok((cmd, _)) => {
            eprintln!("unknown benchmark '{cmd}'; try: insert, insert-subs, query, secload");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
