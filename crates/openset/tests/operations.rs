//! Operations over HTTP: metrics after known traffic, info and version,
//! active queries and their cancellation, query history, query timeouts,
//! and every request limit (script, result, body, URL, headers, slow clients).

mod common;
#[path = "common/hook.rs"]
mod hook;
use common::{highstreet_events, highstreet_server, Answer, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn event(s: &Server, params: &str, script: &str) -> Answer {
    s.request(
        "POST",
        &format!("/v1/query/highstreet/event{params}"),
        Some(script.as_bytes()),
        &[],
    )
}

const BY_SHIPPER: &str = "each_row where event.is(== \"purchase\")\n  << shipper\nend";

/// A script that takes a long time on every customer.
/// (Hundreds of millions of steps in all: minutes even for a fast
/// interpreter, while a stop takes effect within one customer.)
const SLOW: &str = "x = 0\nfor i in range(300000)\n  x = x + i\nend\n<< \"all\"";

/// `n` customers with one event each in table `slow`.
fn slow_table(s: &Server, n: usize) {
    s.create_table(
        "slow",
        &json!({"id_type": "textual", "properties": [{"name": "v", "type": "int"}]}),
    );
    let rows: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("c{i}"), "stamp": 1_000 + i, "event": "e", "v": i}))
        .collect();
    s.insert_ok("slow", &Value::Array(rows));
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[test]
fn metrics_info_version_and_history_after_known_traffic() {
    let s = highstreet_server("4");
    let events = highstreet_events().as_array().unwrap().len() as f64;
    for _ in 0..3 {
        assert_eq!(event(&s, "", BY_SHIPPER).status, 200);
    }
    assert_eq!(s.get("/v1/query/highstreet/property/shipper").status, 200);
    assert_eq!(s.get("/no/such/route").status, 404);
    let seg = s.request(
        "POST",
        "/v1/query/highstreet/segment",
        Some(b"@segment buyers\nreturn(event.ever(== \"purchase\"))\n@segment big\nreturn(total.ever(> 500))"),
        &[],
    );
    assert_eq!(seg.status, 200, "{}", seg.text);
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let t = &m.text;
    assert_eq!(
        metric(t, "openset_inserted_events_total "),
        Some(events),
        "{t}"
    );
    assert_eq!(metric(t, "openset_insert_requests_total "), Some(1.0));
    assert_eq!(
        metric(
            t,
            "openset_http_requests_total{route=\"/v1/insert/{table}\",method=\"POST\",status=\"200\"} "
        ),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        metric(
            t,
            "openset_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} "
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(t, "openset_queries_total{kind=\"event\",outcome=\"ok\"} "),
        Some(3.0)
    );
    assert_eq!(
        metric(t, "openset_query_duration_seconds_count{kind=\"event\"} "),
        Some(3.0)
    );
    assert_eq!(
        metric(
            t,
            "openset_query_duration_seconds_bucket{kind=\"property\",le=\"+Inf\"} "
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(t, "openset_queries_total{kind=\"segment\",outcome=\"ok\"} "),
        Some(1.0)
    );
    assert_eq!(metric(t, "openset_segments_refreshed_total "), Some(2.0));
    assert_eq!(metric(t, "openset_partitions "), Some(4.0));
    assert_eq!(metric(t, "openset_tables "), Some(1.0));
    assert!(metric(t, "openset_resident_memory_bytes ").unwrap() > 0.0);
    assert!(t.contains("# TYPE openset_http_request_duration_seconds histogram"));
    assert_eq!(metric(t, "openset_webhook_failures_total "), Some(0.0));
    // The JSON rendering has the same figures.
    let j = s.get("/metrics.json").json;
    assert_eq!(
        j["counters"]["openset_inserted_events_total"][0]["value"],
        events
    );
    assert_eq!(j["gauges"]["openset_partitions"], 4.0);

    let info = s.get("/info").json;
    assert!(info["cores"].as_u64().unwrap() >= 1);
    assert!(info["data_dir_bytes"].as_u64().unwrap() > 0, "{info}");
    assert!(info["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(info["version"], s.get("/version").json["version"]);

    let h = s.get("/query-history").json;
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 5, "{h:?}");
    assert_eq!(h[0]["kind"], "segment", "newest first");
    assert_eq!(h[1]["kind"], "property");
    assert_eq!(h[2]["digest"], h[3]["digest"], "same script, same digest");
    assert!(h[2]["result_nodes"].as_u64().unwrap() > 0);
    assert!(h[2]["duration_ms"].as_f64().is_some());
    assert_eq!(s.get("/queries").json, json!([]));

    // Webhook delivery calls: one answered 2xx, then failures.
    s.create_table(
        "hooked",
        &json!({"id_type": "textual", "properties": [{"name": "v", "type": "int"}]}),
    );
    let seg = s.request(
        "POST",
        "/v1/query/hooked/segment",
        Some(b"@segment seen on_insert\nreturn(row_count >= 1)"),
        &[],
    );
    assert_eq!(seg.status, 200, "{}", seg.text);
    let hook = hook::Hook::start();
    let sub = s.request(
        "PUT",
        "/v1/subscription/hooked/seen/ops",
        Some(
            json!({"host": "127.0.0.1", "port": hook.port})
                .to_string()
                .as_bytes(),
        ),
        &[],
    );
    assert_eq!(sub.status, 200, "{}", sub.text);
    let webhooks = || {
        let t = s.get("/metrics").text;
        (
            metric(&t, "openset_webhook_deliveries_total ").unwrap(),
            metric(&t, "openset_webhook_failures_total ").unwrap(),
        )
    };
    assert_eq!(webhooks(), (0.0, 0.0), "the test call is not a delivery");
    let until = |want: &dyn Fn((f64, f64)) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !want(webhooks()) {
            assert!(Instant::now() < deadline, "{:?}", webhooks());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    s.insert_ok(
        "hooked",
        &json!([{"id": "a", "stamp": 1_000, "event": "e"}]),
    );
    hook.wait_for(1);
    until(&|(ok, _)| ok == 1.0);
    hook.answer(500);
    s.insert_ok(
        "hooked",
        &json!([{"id": "b", "stamp": 1_000, "event": "e"}]),
    );
    until(&|(_, failed)| failed >= 1.0);
    assert_eq!(webhooks().0, 1.0);
    let j = s.get("/metrics.json").json;
    assert_eq!(
        j["counters"]["openset_webhook_deliveries_total"][0]["value"],
        1.0
    );
}

#[test]
fn history_keeps_the_configured_length() {
    let s = Server::start(&["--partitions", "2", "--query-history-length", "2"]);
    s.create_table("highstreet", &common::highstreet_table());
    s.insert_ok("highstreet", &highstreet_events());
    for _ in 0..4 {
        assert_eq!(event(&s, "", BY_SHIPPER).status, 200);
    }
    assert_eq!(s.get("/query-history").json.as_array().unwrap().len(), 2);
}

#[test]
fn a_slow_query_is_listed_and_cancelled_without_blocking_inserts() {
    let s = Server::start(&["--partitions", "2"]);
    slow_table(&s, 3000);
    let base = s.base.clone();
    let runner = std::thread::spawn(move || {
        ureq::post(&format!("{base}/v1/query/slow/event"))
            .send_string(SLOW)
            .map_err(|e| match e {
                ureq::Error::Status(code, r) => (code, r.into_string().unwrap_or_default()),
                other => (0, other.to_string()),
            })
            .map(|r| r.status())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let q = s.get("/queries").json;
        if let Some(first) = q.as_array().and_then(|a| a.first()).cloned() {
            break first;
        }
        assert!(Instant::now() < deadline, "the query never showed up");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(listed["kind"], "event");
    assert_eq!(listed["table"], "slow");
    assert_eq!(listed["digest"].as_str().unwrap().len(), 16);
    assert!(listed["age_ms"].as_u64().is_some());
    let id = listed["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/queries/{id}")).status, 200);
    let outcome = runner.join().unwrap();
    let (code, body) = outcome.expect_err("cancelled");
    assert_eq!(code, 409, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["message"], "query cancelled");
    assert_eq!(s.get("/queries").json, json!([]));
    assert_eq!(s.delete(&format!("/queries/{id}")).status, 404);
    s.insert_ok("slow", &json!([{"id": "late", "stamp": 5, "event": "e"}]));
    let h = s.get("/query-history").json;
    assert_eq!(h[0]["outcome"], "cancelled");
}

#[test]
fn queries_stop_at_their_deadline() {
    let s = Server::start(&["--partitions", "2", "--query-timeout-ms", "1000"]);
    slow_table(&s, 3000);
    let run = |params: &str| {
        s.request(
            "POST",
            &format!("/v1/query/slow/event{params}"),
            Some(SLOW.as_bytes()),
            &[],
        )
    };
    let a = run("?timeout=200");
    assert_eq!(a.status, 504, "{}", a.text);
    assert_eq!(a.json["error"]["message"], "query timed out");
    // The server-wide default applies without timeout=, and timeout= cannot raise it.
    assert_eq!(run("").status, 504);
    assert_eq!(run("?timeout=100000000").status, 504);
    assert_eq!(run("?timeout=0").status, 400);
    assert_eq!(run("?timeout=soon").status, 400);
    // Histograms stop too.
    let h = s.request(
        "POST",
        "/v1/query/slow/histogram/h?timeout=200",
        Some(b"x = 0\nfor i in range(100000)\n  x = x + i\nend\nreturn(1)"),
        &[],
    );
    assert_eq!(h.status, 504, "{}", h.text);
    let m = s.get("/metrics").text;
    assert!(
        metric(
            &m,
            "openset_queries_total{kind=\"event\",outcome=\"timed_out\"} "
        )
        .unwrap()
            >= 3.0
    );
    // The node still works.
    s.insert_ok("slow", &json!([{"id": "late", "stamp": 5, "event": "e"}]));
}

#[test]
fn script_result_body_and_url_limits() {
    let s = Server::start(&[
        "--partitions",
        "2",
        "--max-script-bytes",
        "200",
        "--max-result-nodes",
        "3",
        "--max-body-bytes",
        "4000",
        "--max-url-bytes",
        "300",
    ]);
    s.create_table("highstreet", &common::highstreet_table());
    s.insert_ok(
        "highstreet",
        &json!([
            {"id": "a", "stamp": 1, "event": "purchase", "shipper": "x"},
            {"id": "b", "stamp": 1, "event": "purchase", "shipper": "y"},
            {"id": "c", "stamp": 1, "event": "purchase", "shipper": "z"},
            {"id": "d", "stamp": 1, "event": "purchase", "shipper": "w"}
        ]),
    );
    let long_script = format!("{}\n{BY_SHIPPER}", "# padding\n".repeat(30));
    let a = event(&s, "", &long_script);
    assert_eq!(a.status, 413, "{}", a.text);
    assert!(a.detail().contains("200"), "{}", a.text);
    let a = event(&s, "", BY_SHIPPER);
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.detail().contains("limit of 3"), "{}", a.text);
    assert_eq!(event(&s, "?trim=2", BY_SHIPPER).status, 200);
    let big: Vec<Value> = (0..200)
        .map(|i| json!({"id": format!("c{i}"), "stamp": 1, "event": "purchase"}))
        .collect();
    let a = s.post_json("/v1/insert/highstreet", &Value::Array(big));
    assert_eq!(a.status, 413, "{}", a.text);
    let a = s.get(&format!("/v1/tables?x={}", "y".repeat(400)));
    assert_eq!(a.status, 400);
    assert!(a.detail().contains("300"));
}

/// Sends raw bytes and reads until the server answers or closes.
fn raw_exchange(s: &Server, bytes: &[u8], then_wait: bool) -> String {
    let addr = s.base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(bytes).unwrap();
    if !then_wait {
        c.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn header_limits_and_slow_clients() {
    let s = Server::start(&[
        "--partitions",
        "1",
        "--max-header-bytes",
        "10000",
        "--max-headers",
        "20",
        "--header-timeout-ms",
        "300",
        "--body-timeout-ms",
        "300",
    ]);
    let many: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = raw_exchange(
        &s,
        format!("GET /ping HTTP/1.1\r\nhost: a\r\n{many}\r\n").as_bytes(),
        true,
    );
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let huge = "v".repeat(20_000);
    let r = raw_exchange(
        &s,
        format!("GET /ping HTTP/1.1\r\nhost: a\r\nx-big: {huge}\r\n\r\n").as_bytes(),
        true,
    );
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    // A client that stops mid-headers is dropped (read_to_end returns).
    let started = Instant::now();
    let r = raw_exchange(&s, b"GET /ping HTTP/1.1\r\nhost: a\r\n", true);
    assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // A client that stops mid-body gets a 408.
    s.create_table(
        "t",
        &json!({"id_type": "textual", "properties": [{"name": "v", "type": "int"}]}),
    );
    let insert = raw_exchange(
        &s,
        b"POST /v1/insert/t HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n[{\"id\":",
        true,
    );
    assert!(insert.starts_with("HTTP/1.1 408"), "{insert}");
    // And the server still answers.
    assert_eq!(s.get("/ping").status, 200);
}

#[test]
fn idle_connections_cannot_hold_every_slot() {
    let s = Server::start(&[
        "--partitions",
        "1",
        "--max-connections",
        "2",
        "--header-timeout-ms",
        "300",
    ]);
    let addr = s.base.trim_start_matches("http://").to_string();
    // Two clients connect and send nothing: both slots taken.
    let idle: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // A real request is served once the header timeout frees a slot.
    assert_eq!(s.get("/ping").status, 200);
    drop(idle);
}

/// Regression: with the defaults, a keep-alive connection left idle for
/// longer than the old 10 s header timeout still serves its next request
/// (HTTP clients reuse pooled connections after a pause; the benchmark
/// runner's first query after a long load failed with "connection closed").
#[test]
fn idle_keep_alive_connections_survive_a_pause() {
    let s = Server::start(&["--partitions", "2"]);
    let addr = s.base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let ask = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 4096];
    c.write_all(ask).unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_secs(12));
    c.write_all(ask).unwrap();
    let n = c.read(&mut buf).unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "idle connection was closed: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}
