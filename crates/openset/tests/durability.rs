//! Durability: restart recovery (with and without snapshots), SIGKILL at
//! random moments during inserts, and a full disk.

mod common;
use common::{Rng, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn table_def() -> Value {
    json!({"id_type": "numeric", "properties": [
        {"name": "seq", "type": "int"},
        {"name": "tag", "type": "text", "is_set": true},
        {"name": "tier", "type": "text", "is_customer": true}
    ], "event_order": ["b", "a"]})
}

fn snapshot_of_everything(s: &Server, ids: impl Iterator<Item = i64>) -> Vec<Value> {
    ids.map(|i| s.get(&format!("/v1/query/t/customer?id={i}")).json)
        .collect()
}

#[test]
fn restart_recovers_tables_and_events_in_order() {
    for snapshot_bytes in ["268435456", "1"] {
        let mut s = Server::start(&["--partitions", "5", "--snapshot-bytes", snapshot_bytes]);
        s.create_table("t", &table_def());
        s.create_table("other", &json!({"id_type": "textual", "properties": []}));
        for round in 0..5i64 {
            let batch: Vec<Value> = (0..40i64)
                .map(|i| json!({"id": i % 13, "stamp": 1_000_000 + (i * 7 + round * 3) % 50, "event": if i % 2 == 0 { "a" } else { "b" }, "seq": round * 100 + i, "tag": [format!("t{}", i % 3)], "tier": format!("r{round}")}))
                .collect();
            s.insert_ok("t", &json!(batch));
        }
        s.insert_ok("other", &json!([{"id": "Z", "event": "e", "stamp": 1}]));
        let before = snapshot_of_everything(&s, 0..13);
        let status_before = s.get("/v1/status").json["counts"].clone();
        s.kill();
        let s2 = Server::start_in(&s.dir, &[]).unwrap();
        assert_eq!(s2.get("/v1/tables").json, json!(["other", "t"]));
        assert_eq!(
            s2.get("/v1/table/t").json["properties"],
            s.get_cached_props()
        );
        assert_eq!(
            snapshot_of_everything(&s2, 0..13),
            before,
            "snapshot_bytes={snapshot_bytes}"
        );
        assert_eq!(s2.get("/v1/status").json["counts"], status_before);
        if snapshot_bytes == "1" {
            let snaps = std::fs::read_dir(s.dir.join("snapshots")).unwrap().count();
            assert_eq!(snaps, 5, "every partition was snapshotted");
        }
        // The node keeps its identity and takes new writes after recovery.
        s2.insert_ok("t", &json!([{"id": 1, "stamp": 1, "event": "a"}]));
        assert_eq!(
            s2.get("/v1/query/t/customer?id=1").json["events"][0]["stamp"],
            1000
        );
    }
}

trait CachedProps {
    fn get_cached_props(&self) -> Value;
}
impl CachedProps for Server {
    fn get_cached_props(&self) -> Value {
        json!([
            {"name": "seq", "type": "int"},
            {"name": "tag", "type": "text", "is_set": true},
            {"name": "tier", "type": "text", "is_customer": true}
        ])
    }
}

#[derive(Default)]
struct Ledger {
    /// Acknowledged events: customer -> stamps.
    acked: BTreeMap<i64, BTreeSet<i64>>,
    /// The batch in flight when the server died (maybe stored, maybe not).
    in_flight: Vec<(i64, i64)>,
}

fn post(base: &str, body: &Value) -> Result<u16, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    match agent
        .post(&format!("{base}/v1/insert/t"))
        .send_string(&body.to_string())
    {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(c, _)) => Ok(c),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn sigkill_during_inserts_loses_no_acknowledged_event() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let mut s = Server::start(&["--partitions", "4", "--snapshot-bytes", "30000"]);
    s.create_table("t", &table_def());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut next_stamp = 1_700_000_000_000i64;
    for round in 0..6 {
        let stop = Arc::new(AtomicBool::new(false));
        let base = s.base.clone();
        let (l, st) = (ledger.clone(), stop.clone());
        let mut local_rng = Rng(rng.next() | 1);
        let start_stamp = next_stamp;
        let client = std::thread::spawn(move || {
            let mut stamp = start_stamp;
            while !st.load(Ordering::Relaxed) {
                let events: Vec<(i64, i64)> = (0..60)
                    .map(|_| {
                        stamp += 1;
                        (local_rng.below(25) as i64, stamp)
                    })
                    .collect();
                let body: Vec<Value> = events
                    .iter()
                    .map(|(id, st)| json!({"id": id, "stamp": st, "event": "a", "seq": st, "tag": ["x", "y"]}))
                    .collect();
                l.lock().unwrap().in_flight = events.clone();
                match post(&base, &json!(body)) {
                    Ok(200) => {
                        let mut g = l.lock().unwrap();
                        for (id, st) in events {
                            g.acked.entry(id).or_default().insert(st);
                        }
                        g.in_flight.clear();
                    }
                    Ok(code) => panic!("unexpected status {code}"),
                    Err(_) => break,
                }
            }
            stamp
        });
        std::thread::sleep(Duration::from_millis(30 + rng.below(250)));
        s.kill();
        stop.store(true, Ordering::Relaxed);
        next_stamp = client.join().unwrap() + 1;
        s.restart(&[])
            .unwrap_or_else(|e| panic!("restart {round}: {e}"));
        let mut g = ledger.lock().unwrap();
        let maybe: BTreeMap<i64, BTreeSet<i64>> =
            g.in_flight.iter().fold(BTreeMap::new(), |mut m, (id, st)| {
                m.entry(*id).or_insert_with(BTreeSet::new).insert(*st);
                m
            });
        let mut total = 0;
        for id in 0..25i64 {
            let a = s.get(&format!("/v1/query/t/customer?id={id}"));
            let stored: Vec<i64> = if a.status == 404 {
                Vec::new()
            } else {
                a.json["events"]
                    .as_array()
                    .unwrap_or_else(|| panic!("customer {id}: {} (seed {seed})", a.text))
                    .iter()
                    .map(|e| e["stamp"].as_i64().unwrap())
                    .collect()
            };
            let acked = g.acked.get(&id).cloned().unwrap_or_default();
            let unique: BTreeSet<i64> = stored.iter().copied().collect();
            assert_eq!(
                unique.len(),
                stored.len(),
                "customer {id}: an event is stored twice (seed {seed})"
            );
            assert!(
                stored.windows(2).all(|w| w[0] < w[1]),
                "customer {id}: out of order (seed {seed})"
            );
            for st in &acked {
                assert!(
                    unique.contains(st),
                    "customer {id}: acknowledged event {st} lost in round {round} (seed {seed})"
                );
            }
            let empty = BTreeSet::new();
            let in_flight = maybe.get(&id).unwrap_or(&empty);
            for st in &unique {
                assert!(
                    acked.contains(st) || in_flight.contains(st),
                    "customer {id}: event {st} never sent (seed {seed})"
                );
            }
            // In-flight events that were stored are durable now and must stay.
            let entry = g.acked.entry(id).or_default();
            entry.extend(unique.iter().filter(|st| in_flight.contains(st)));
            total += entry.len();
        }
        g.in_flight.clear();
        eprintln!("round {round}: {total} acknowledged events verified");
    }
    assert!(
        ledger
            .lock()
            .unwrap()
            .acked
            .values()
            .map(BTreeSet::len)
            .sum::<usize>()
            > 0,
        "the client got some inserts acknowledged"
    );
}

#[test]
fn a_full_disk_fails_the_insert_and_keeps_the_store_whole() {
    let mut s = Server::start(&["--partitions", "3", "--fault-log-full-after-bytes", "6000"]);
    s.create_table("t", &table_def());
    let mut acked = 0;
    let mut failed = None;
    for b in 0..100i64 {
        let batch: Vec<Value> = (0..10i64)
            .map(|i| json!({"id": i, "stamp": 1_000_000 + b * 10 + i, "event": "a", "seq": b}))
            .collect();
        let a = s.post_json("/v1/insert/t", &json!(batch));
        if a.status == 200 {
            acked += 1;
        } else {
            failed = Some((b, a));
            break;
        }
    }
    let (b, a) = failed.expect("the injected full disk must be hit");
    assert!(acked > 0);
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.json["error"]["class"], "insert");
    assert!(a.detail().contains("nothing was written"), "{}", a.text);
    assert!(a.detail().contains("No space left on device"), "{}", a.text);
    let count = |s: &Server| {
        s.get("/v1/status").json["counts"]["events"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count(&s), acked * 10);
    // The failed batch left nothing behind, in memory or on disk.
    let c = s.get("/v1/query/t/customer?id=0").json;
    assert!(c["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["_"]["seq"].as_i64() != Some(b)));
    s.kill();
    let s2 = Server::start_in(&s.dir, &[]).unwrap();
    assert_eq!(count(&s2), acked * 10);
    s2.insert_ok("t", &json!([{"id": 0, "stamp": 5, "event": "a"}]));
    assert_eq!(count(&s2), acked * 10 + 1);
}

#[test]
fn retention_trims_old_and_excess_events_through_the_log() {
    let mut s = Server::start(&["--partitions", "3", "--maint-interval-ms", "100"]);
    s.create_table(
        "t",
        &json!({"id_type": "numeric", "properties": [{"name": "v", "type": "int"}], "settings": {"event_ttl": 86_400_000}}),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000i64;
    s.insert_ok(
        "t",
        &json!([
            {"id": 1, "stamp": now - 10 * day, "event": "e", "v": 1},
            {"id": 1, "stamp": now - 5 * day, "event": "e", "v": 2},
            {"id": 1, "stamp": now - 3_600_000, "event": "e", "v": 3},
            {"id": 1, "stamp": now - 60_000, "event": "e", "v": 4},
            {"id": 2, "stamp": now - 3 * day, "event": "e", "v": 5}
        ]),
    );
    let events = |s: &Server| {
        s.get("/v1/status").json["counts"]["events"]
            .as_u64()
            .unwrap()
    };
    let wait_for = |s: &Server, n: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while events(s) != n {
            assert!(
                std::time::Instant::now() < deadline,
                "retention did not reach {n} events: {}",
                events(s)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&s, 2);
    let values = |s: &Server| {
        let p = s.get("/v1/query/t/property/v").json;
        let mut v: Vec<i64> = p["_"][0]["_"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["g"].as_i64().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(values(&s), [3, 4], "the index forgets trimmed values");
    assert_eq!(s.get("/v1/query/t/customer?id=2").json["events"], json!([]));
    let a = s.request(
        "PUT",
        "/v1/table/t/settings",
        Some(br#"{"event_max": 1}"#),
        &[],
    );
    assert_eq!(a.status, 200);
    wait_for(&s, 1);
    assert_eq!(values(&s), [4]);
    s.restart(&[]).unwrap();
    assert_eq!(events(&s), 1, "replay trims the same events");
    assert_eq!(values(&s), [4]);
}
