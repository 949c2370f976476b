//! `insert-subs`: insert throughput with 0, 1 and 10 subscribed `on_insert`
//! segments, each with a webhook receiver in this process, as ratios to no
//! segments (issue 6: 10 subscribed segments should cost under 30%).

use crate::{agent, generate_events, post, post_all, Args, Server};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The segment scripts: half by row count (customers enter, and the
/// bounded ones leave again), half by product group (customers enter).
fn scripts(k: usize) -> String {
    (0..k)
        .map(|i| {
            let body = if i % 2 == 0 {
                format!(
                    "return(row_count >= {} && row_count < {})",
                    2 + i * 3,
                    20 + i * 10
                )
            } else {
                format!(
                    "return(product_group.ever(== \"{}\"))",
                    crate::generate::GROUPS[i]
                )
            };
            format!("@segment s{i} on_insert\n{body}\n\n")
        })
        .collect()
}

/// A webhook receiver answering 200 to everything; counts messages.
fn receiver(messages: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let messages = messages.clone();
            std::thread::spawn(move || {
                let _ = answer(conn, &messages);
            });
        }
    });
    port
}

fn answer(conn: TcpStream, messages: &AtomicU64) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut len = 0usize;
    let mut count = 0u64;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if let Some(q) = line
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.split_once('?'))
    {
        count =
            q.1.split('&')
                .find_map(|kv| kv.strip_prefix("count="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
    }
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    messages.fetch_add(count, Ordering::Relaxed);
    let mut w = conn;
    w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
}

/// Runs the benchmark and prints a table.
pub fn insert_subs_bench(a: &Args) {
    let events = generate_events(a.events, a.seed);
    let bodies: Vec<Vec<u8>> = events
        .chunks(a.batch)
        .map(|c| serde_json::to_vec(c).expect("encode"))
        .collect();
    drop(events);
    let server = Server::start(a.partitions);
    let agent = agent();
    let messages = Arc::new(AtomicU64::new(0));
    let port = receiver(messages.clone());
    // (segments, subscribed): the unsubscribed row separates the cost of
    // evaluating on_insert segments from the cost of their subscriptions.
    let configs = [(0usize, false), (1, true), (10, false), (10, true)];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut generated = vec![0u64; configs.len()];
    let mut left = vec![0u64; configs.len()];
    // Configurations interleaved per pass, so drift hits them alike.
    for pass in 0..a.passes.max(1) {
        for (c, &(k, subscribed)) in configs.iter().enumerate() {
            let table = format!("subs{c}_{pass}");
            let base = &server.base;
            post(
                &agent,
                &format!("{base}/v1/table/{table}"),
                crate::generate::table_definition().to_string().as_bytes(),
            );
            if k > 0 {
                post(
                    &agent,
                    &format!("{base}/v1/query/{table}/segment"),
                    scripts(k).as_bytes(),
                );
                for i in (0..k).filter(|_| subscribed) {
                    let hook = format!(r#"{{"host": "127.0.0.1", "port": {port}}}"#);
                    match agent
                        .put(&format!("{base}/v1/subscription/{table}/s{i}/bench"))
                        .send_string(&hook)
                    {
                        Ok(_) => {}
                        Err(e) => panic!("subscribe: {e}"),
                    }
                }
            }
            let secs = post_all(&bodies, &format!("{base}/v1/insert/{table}"), a.clients);
            rates[c].push(a.events as f64 / secs);
            if subscribed {
                // Waiting when the last insert was answered (delivered after the timed part).
                let status: serde_json::Value = agent
                    .get(&format!("{base}/v1/status"))
                    .call()
                    .ok()
                    .and_then(|r| r.into_string().ok())
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                left[c] += status["subscriptions"]["backlog"].as_u64().unwrap_or(0);
                let list: serde_json::Value = agent
                    .get(&format!("{base}/v1/subscription/{table}"))
                    .call()
                    .ok()
                    .and_then(|r| r.into_string().ok())
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                generated[c] += list["subscriptions"]
                    .as_array()
                    .map_or(0, |l| l.iter().filter_map(|s| s["last_seq"].as_u64()).sum());
                // Drain deliveries before the next configuration runs.
                let t = Instant::now();
                while t.elapsed().as_secs() < 120 {
                    let status: serde_json::Value = agent
                        .get(&format!("{base}/v1/status"))
                        .call()
                        .ok()
                        .and_then(|r| r.into_string().ok())
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default();
                    if status["subscriptions"]["backlog"] == 0 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base_rate = median(&mut rates[0].clone());
    println!("| on_insert segments | subscribed | median events/s | vs none | messages per pass | waiting at the end |");
    println!("|---|---|---|---|---|---|");
    for (c, &(k, subscribed)) in configs.iter().enumerate() {
        let r = median(&mut rates[c]);
        println!(
            "| {k} | {} | {r:.0} | {:.2}x | {} | {} |",
            if subscribed { "yes" } else { "no" },
            r / base_rate,
            generated[c] / a.passes.max(1) as u64,
            left[c] / a.passes.max(1) as u64
        );
    }
    println!(
        "\n{} events per pass, batch {}, {} clients, {} partitions, median of {} passes; {} messages delivered in all",
        a.events,
        a.batch,
        a.clients,
        a.partitions,
        a.passes.max(1),
        messages.load(Ordering::Relaxed)
    );
}
