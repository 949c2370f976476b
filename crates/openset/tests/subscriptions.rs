//! Subscriptions over HTTP against a real webhook receiver on loopback:
//! the test call, entered/exited messages, batches and their URL parameters,
//! order, retries after 500s and after the receiver was down, retention,
//! pending messages across a server restart, https hooks (trusted through
//! `--webhook-ca-file` or refused), and re-event triggers.

mod common;
#[path = "common/hook.rs"]
mod hook;
use common::{Answer, Server};
use hook::Hook;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A member has 2 or 3 events: customers enter on their 2nd event and
/// leave on their 4th.
const SEGMENT: &str = "@segment pair on_insert\nreturn(row_count >= 2 && row_count < 4)";

fn server(id_type: &str) -> Server {
    server_with(id_type, &[])
}

/// `server` with extra serve flags.
fn server_with(id_type: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--partitions", "4"];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    s.create_table(
        "shop",
        &json!({"id_type": id_type, "properties": [{"name": "price", "type": "int"}]}),
    );
    let a = s.request(
        "POST",
        "/v1/query/shop/segment",
        Some(SEGMENT.as_bytes()),
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.text);
    s
}

fn subscribe(s: &Server, segment: &str, sub: &str, body: &Value) -> Answer {
    s.request(
        "PUT",
        &format!("/v1/subscription/shop/{segment}/{sub}"),
        Some(body.to_string().as_bytes()),
        &[("content-type", "application/json")],
    )
}

fn hook_body(h: &Hook) -> Value {
    json!({"host": "127.0.0.1", "port": h.port, "path": "/hooks/shop?token=abc"})
}

/// `n` events for each id, at distinct stamps from `t0`.
fn events(ids: &[&str], n: usize, t0: i64) -> Value {
    let mut out = Vec::new();
    for i in 0..n {
        for id in ids {
            out.push(json!({"id": id, "stamp": t0 + i as i64, "event": "visit"}));
        }
    }
    Value::Array(out)
}

fn states(msgs: &[Value]) -> Vec<(String, String)> {
    msgs.iter()
        .map(|m| {
            (
                m["uid"].as_str().unwrap_or("").to_string(),
                m["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

/// Polls until the first subscription's `key` equals `want`.
fn wait_listing(s: &Server, key: &str, want: &Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while listing(s)[0][key] != *want {
        assert!(Instant::now() < deadline, "{key}: {:?}", listing(s));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls until the server recorded a failed delivery attempt.
fn wait_refused(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while listing(s)[0]["last_error"].is_null() {
        assert!(Instant::now() < deadline, "{:?}", listing(s));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listing(s: &Server) -> Vec<Value> {
    let a = s.get("/v1/subscription/shop");
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["subscriptions"].as_array().unwrap().clone()
}

#[test]
fn subscribe_checks_the_segment_and_the_hook() {
    let s = server("textual");
    let h = Hook::start();
    let a = s.request(
        "POST",
        "/v1/query/shop/segment",
        Some(b"@segment still\nreturn(true)"),
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.text);

    let a = subscribe(&s, "nope", "crm", &hook_body(&h));
    assert_eq!((a.status, a.detail()), (404, "segment: 'nope' not found."));
    let a = subscribe(&s, "still", "crm", &hook_body(&h));
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.detail().contains("not maintained"), "{}", a.text);
    let a = subscribe(&s, "pair", "crm", &json!({"port": h.port}));
    assert_eq!(a.status, 400);
    assert!(a.detail().starts_with("host is required"), "{}", a.text);
    let a = subscribe(&s, "pair", "crm", &json!({"host": "127.0.0.1", "port": 0}));
    assert_eq!(a.status, 400, "{}", a.text);
    let a = subscribe(
        &s,
        "pair",
        "crm",
        &json!({"host": "127.0.0.1", "retention": 5}),
    );
    assert_eq!(a.status, 400, "{}", a.text);
    let a = subscribe(&s, "pair", "Bad Name", &hook_body(&h));
    assert_eq!(a.status, 400, "{}", a.text);
    let a = s.request(
        "PUT",
        "/v1/subscription/shop/pair/crm",
        Some(b"{not json"),
        &[],
    );
    assert_eq!(a.status, 400, "{}", a.text);
    // A hook that is down refuses the subscription.
    let mut down = Hook::start();
    down.stop();
    let a = subscribe(&s, "pair", "crm", &hook_body(&down));
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a
        .detail()
        .starts_with("Expecting 2xx response from http://127.0.0.1:"));
    let missing = s.request(
        "PUT",
        "/v1/subscription/nosuch/pair/crm",
        Some(hook_body(&h).to_string().as_bytes()),
        &[],
    );
    assert_eq!(missing.status, 404);

    // A hook that answers 500 refuses the subscription, with the reason.
    h.answer(500);
    let a = subscribe(&s, "pair", "crm", &hook_body(&h));
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(
        a.detail(),
        format!(
            "Expecting 2xx response from http://127.0.0.1:{}/hooks/shop?token=abc.",
            h.port
        )
    );
    assert!(listing(&s).is_empty());

    // A hook that answers 2xx gets the empty test payload.
    h.answer(200);
    let a = subscribe(&s, "pair", "crm", &hook_body(&h));
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"message": "created", "table": "shop", "segment": "pair", "subname": "crm"})
    );
    let ping = h.calls().last().cloned().unwrap();
    assert_eq!(
        (ping.method.as_str(), ping.path.as_str()),
        ("POST", "/hooks/shop")
    );
    assert_eq!(ping.body, json!({"messages": []}));
    for (k, v) in [
        ("token", "abc"),
        ("segment", "pair"),
        ("subscriber", "crm"),
        ("count", "0"),
        ("remaining", "0"),
    ] {
        assert_eq!(ping.param(k), v, "{ping:?}");
    }
    // The older path form, a list, and deletes in every form.
    let a = s.request(
        "PUT",
        "/v1/trigger/shop/pair/billing",
        Some(hook_body(&h).to_string().as_bytes()),
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.text);
    let subs = listing(&s);
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["subscriber"], "billing");
    assert_eq!(subs[1]["subscriber"], "crm");
    assert_eq!(subs[1]["retention"], 10_800_000);
    assert_eq!(subs[1]["path"], "/hooks/shop?token=abc");
    assert_eq!(subs[1]["backlog"], 0);
    assert_eq!(subs[1]["last_seq"], 0);
    assert_eq!(
        s.get("/v1/trigger/shop").json,
        s.get("/v1/subscription/shop").json
    );
    assert_eq!(s.get("/v1/status").json["subscriptions"]["total"], 2);
    let a = s.delete("/v1/subscription/shop/pair/crm");
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["message"], "removed");
    let a = s.delete("/v1/subscription/shop/pair/crm");
    assert_eq!(
        (a.status, a.detail()),
        (404, "subscriber name not found: 'crm'")
    );
    let a = s.delete("/v1/trigger/shop/billing");
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["segments"], json!(["pair"]));
    assert!(listing(&s).is_empty());
    let a = s.delete("/v1/trigger/shop/billing");
    assert_eq!(a.status, 404);
}

#[test]
fn entered_and_exited_in_order_for_each_subscriber() {
    let s = server("textual");
    let h = Hook::start();
    let h2 = Hook::start();
    assert_eq!(subscribe(&s, "pair", "crm", &hook_body(&h)).status, 200);
    assert_eq!(subscribe(&s, "pair", "other", &hook_body(&h2)).status, 200);
    let t0 = 1_700_000_000_000;
    // One event: nobody enters.
    s.insert_ok("shop", &events(&["ana", "bo"], 1, t0));
    // Second event: both enter; a fourth for ana: she exits.
    s.insert_ok("shop", &events(&["ana", "bo"], 1, t0 + 10));
    s.insert_ok("shop", &events(&["ana"], 2, t0 + 20));
    // A third event for bo keeps him in: no message.
    s.insert_ok("shop", &events(&["bo"], 1, t0 + 40));
    let msgs = h.wait_for(3);
    let mut first_two = states(&msgs[..2]);
    first_two.sort();
    assert_eq!(
        first_two,
        [
            ("ana".into(), "entered".into()),
            ("bo".into(), "entered".into())
        ]
    );
    assert_eq!(states(&msgs[2..]), [("ana".into(), "exited".into())]);
    assert_eq!(seqs(&msgs), [1, 2, 3]);
    for m in &msgs {
        assert_eq!(m["id"], m["uid"]);
        let stamp = m["stamp"].as_i64().unwrap();
        assert!(stamp > t0, "the detection time, not the event's: {m}");
        let iso = m["stamp_iso"].as_str().unwrap();
        assert!(iso.starts_with("20") && iso.ends_with('Z'), "{m}");
    }
    // The other subscriber has a feed of its own with the same changes.
    let other = h2.wait_for(3);
    assert_eq!(seqs(&other), [1, 2, 3]);
    assert_eq!(states(&other[2..]), states(&msgs[2..]));
    // Nothing else arrives, and every call carried its URL parameters.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.delivered().len(), 3);
    for c in h.calls().iter().skip(1) {
        assert_eq!(c.param("count"), c.messages().len().to_string());
        assert_eq!((c.param("segment"), c.param("subscriber")), ("pair", "crm"));
        assert!(c.params.contains_key("remaining"));
    }
    wait_listing(&s, "delivered", &json!(3));
    let subs = listing(&s);
    assert_eq!(subs[0]["last_seq"], 3);
    assert_eq!(subs[0]["backlog"], 0);
    assert!(subs[0]["last_success"].as_i64().is_some());

    // A re-posted segment that changes membership announces the flips too.
    let a = s.request(
        "POST",
        "/v1/query/shop/segment",
        Some(b"@segment pair on_insert\nreturn(row_count >= 1)"),
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.text);
    let msgs = h.wait_for(4);
    assert_eq!(states(&msgs[3..]), [("ana".into(), "entered".into())]);
    assert_eq!(msgs[3]["seq"], 4);
}

#[test]
fn batches_of_500_with_retries_after_500s() {
    let s = server("textual");
    let h = Hook::start();
    assert_eq!(subscribe(&s, "pair", "crm", &hook_body(&h)).status, 200);
    h.answer(500);
    let ids: Vec<String> = (0..1200).map(|i| format!("c{i:04}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    s.insert_ok("shop", &events(&refs, 2, 1_700_000_000_000));
    h.wait_until("a refused delivery", |c| c.iter().any(|c| c.status == 500));
    let a = s.get("/v1/status");
    assert_eq!(a.json["subscriptions"]["backlog"], 1200, "{}", a.text);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listing(&s)[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("500"))
    {
        assert!(Instant::now() < deadline, "{:?}", listing(&s));
        std::thread::sleep(Duration::from_millis(20));
    }
    h.answer(200);
    let msgs = h.wait_for(1200);
    assert_eq!(msgs.len(), 1200);
    assert_eq!(seqs(&msgs), (1..=1200).collect::<Vec<u64>>());
    let ok: Vec<(String, String)> = h
        .calls()
        .iter()
        .filter(|c| c.status == 200 && c.param("count") != "0")
        .map(|c| {
            (
                c.param("count").to_string(),
                c.param("remaining").to_string(),
            )
        })
        .collect();
    assert_eq!(
        ok,
        [
            ("500".into(), "700".into()),
            ("500".into(), "200".into()),
            ("200".into(), "0".into())
        ]
    );
    // A refused batch is sent again from the front of the stream.
    for c in h.calls().iter().filter(|c| c.status == 500) {
        let got = seqs(&c.messages());
        assert_eq!(got, (1..=got.len() as u64).collect::<Vec<u64>>());
    }
    let mut uids: Vec<String> = states(&msgs).into_iter().map(|(u, _)| u).collect();
    uids.sort();
    assert_eq!(uids, ids);
    wait_listing(&s, "delivered", &json!(1200));
    assert_eq!(listing(&s)[0]["last_error"], Value::Null);
}

#[test]
fn a_stopped_hook_gets_its_messages_when_back_and_retention_drops_old_ones() {
    let s = server("textual");
    let mut h = Hook::start();
    let body = json!({"host": "127.0.0.1", "port": h.port, "retention": 60_000});
    assert_eq!(subscribe(&s, "pair", "crm", &body).status, 200);
    h.stop();
    s.insert_ok("shop", &events(&["ana"], 2, 1_700_000_000_000));
    // Down for less than the retention: delivered once back, after retries.
    wait_refused(&s);
    h.restart();
    let msgs = h.wait_for(1);
    assert_eq!(states(&msgs), [("ana".into(), "entered".into())]);
    assert_eq!(listing(&s)[0]["dropped"], 0);

    // Updating the subscription keeps its stream; now a retention of 1 s.
    let body = json!({"host": "127.0.0.1", "port": h.port, "retention": 1000});
    assert_eq!(subscribe(&s, "pair", "crm", &body).status, 200);
    assert_eq!(listing(&s)[0]["retention"], 1000);
    // Down for longer than the retention: the message is dropped and counted.
    h.stop();
    s.insert_ok("shop", &events(&["ana"], 2, 1_700_000_000_100));
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get("/v1/status").json["subscriptions"]["dropped"] != 1 {
        assert!(Instant::now() < deadline, "{}", s.get("/v1/status").text);
        std::thread::sleep(Duration::from_millis(50));
    }
    let sub = &listing(&s)[0];
    assert_eq!(
        (sub["dropped"].clone(), sub["backlog"].clone()),
        (json!(1), json!(0))
    );
    h.restart();
    s.insert_ok("shop", &events(&["bo"], 2, 1_700_000_000_200));
    let msgs = h.wait_for(2);
    assert_eq!(states(&msgs[1..]), [("bo".into(), "entered".into())]);
    assert_eq!(msgs[1]["seq"], 3, "seq 2 was dropped");
    let last = h.calls().into_iter().rfind(|c| c.status == 200).unwrap();
    assert_eq!(last.param("dropped"), "1");
}

#[test]
fn pending_messages_survive_a_restart_without_spurious_ones() {
    let mut s = server("numeric");
    let mut h = Hook::start();
    let body = hook_body(&h);
    assert_eq!(subscribe(&s, "pair", "crm", &body).status, 200);
    // Delivered before the restart.
    s.insert_ok(
        "shop",
        &json!([{"id": 7, "stamp": 1, "event": "a"}, {"id": 7, "stamp": 2, "event": "a"}]),
    );
    assert_eq!(h.wait_for(1)[0]["id"], 7);
    // Acknowledged (else it would rightly be sent again after the crash).
    wait_listing(&s, "delivered", &json!(1));
    h.stop();
    // Pending at the crash.
    s.insert_ok(
        "shop",
        &json!([{"id": 8, "stamp": 1, "event": "a"}, {"id": 8, "stamp": 2, "event": "a"}]),
    );
    s.insert_ok(
        "shop",
        &json!([{"id": 7, "stamp": 3, "event": "a"}, {"id": 7, "stamp": 4, "event": "a"}]),
    );
    s.restart(&[]).expect("restart");
    assert_eq!(listing(&s)[0]["backlog"], 2);
    h.restart();
    let msgs = h.wait_for(3);
    let got: Vec<(Value, Value, Value)> = msgs
        .iter()
        .map(|m| (m["seq"].clone(), m["uid"].clone(), m["state"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!(1), json!(7), json!("entered")),
            (json!(2), json!(8), json!("entered")),
            (json!(3), json!(7), json!("exited")),
        ]
    );
    // The start-up evaluation announced nothing: memberships did not change.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.delivered().len(), 3);
    // The subscription is still live after the restart, numbering continues.
    s.insert_ok(
        "shop",
        &json!([{"id": 9, "stamp": 1, "event": "a"}, {"id": 9, "stamp": 2, "event": "a"}]),
    );
    let msgs = h.wait_for(4);
    assert_eq!(
        (msgs[3]["seq"].clone(), msgs[3]["uid"].clone()),
        (json!(4), json!(9))
    );
}

#[test]
fn changes_while_down_are_announced_at_start_up() {
    // A refresh segment over a customer property: a change the server never
    // evaluated before it died is announced by the start-up evaluation.
    let mut s = Server::start(&["--partitions", "2"]);
    s.create_table(
        "shop",
        &json!({"id_type": "textual", "properties": [{"name": "tier", "type": "int", "is_customer": true}]}),
    );
    s.insert_ok(
        "shop",
        &json!([{"id": "ana", "stamp": 1, "event": "a", "tier": 1}]),
    );
    let seg = "@segment gold refresh=1h\nreturn(tier == 2)";
    let a = s.request("POST", "/v1/query/shop/segment", Some(seg.as_bytes()), &[]);
    assert_eq!(a.status, 200, "{}", a.text);
    let h = Hook::start();
    assert_eq!(subscribe(&s, "gold", "crm", &hook_body(&h)).status, 200);
    s.insert_ok(
        "shop",
        &json!([{"id": "ana", "stamp": 2, "event": "a", "tier": 2}]),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        h.delivered().is_empty(),
        "refresh segments change on refresh only"
    );
    s.restart(&[]).expect("restart");
    let msgs = h.wait_for(1);
    assert_eq!(states(&msgs), [("ana".into(), "entered".into())]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.delivered().len(), 1);
}

#[test]
fn dropping_a_property_or_the_table_removes_subscriptions() {
    let s = server("textual");
    let h = Hook::start();
    let seg = "@segment pricey on_insert\nreturn(price.ever(> 10))";
    let a = s.request("POST", "/v1/query/shop/segment", Some(seg.as_bytes()), &[]);
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(subscribe(&s, "pricey", "crm", &hook_body(&h)).status, 200);
    assert_eq!(subscribe(&s, "pair", "crm", &hook_body(&h)).status, 200);
    let a = s.delete("/v1/table/shop/property/price");
    assert_eq!(a.status, 200, "{}", a.text);
    let left: Vec<Value> = listing(&s).iter().map(|l| l["segment"].clone()).collect();
    assert_eq!(left, [json!("pair")]);
    assert_eq!(s.delete("/v1/table/shop").status, 200);
    assert_eq!(s.get("/v1/status").json["subscriptions"]["total"], 0);
    s.create_table("shop", &json!({"id_type": "textual", "properties": []}));
    assert!(listing(&s).is_empty());
}

const WELCOME: &str = "# greets new customers, nudges those who did not come back
@function on_insert
if row_count == 1
  schedule(2_seconds, \"nudge\")
  emit(\"welcome\")
end

@function nudge
if row_count == 1
  emit(\"come back \" + str(row_count))
end
";

fn revent(s: &Server, method: &str, name: &str, body: Option<&str>) -> Answer {
    s.request(
        method,
        &format!("/v1/table/shop/revent/{name}"),
        body.map(str::as_bytes),
        &[("content-type", "text/plain")],
    )
}

fn texts(msgs: &[Value]) -> Vec<(String, String)> {
    msgs.iter()
        .map(|m| {
            assert_eq!(m["state"], "emitted", "{m}");
            (
                m["uid"].as_str().unwrap_or("").to_string(),
                m["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn revent_triggers_emit_and_run_scheduled_functions_across_a_restart() {
    let mut s = server("textual");
    let h = Hook::start();
    // Errors first: no on_insert, a compile error, an unknown scheduled
    // function, a segment's name, a bad name, an unknown trigger.
    let a = revent(&s, "POST", "t1", Some("@function other\nreturn(1)"));
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.detail().contains("on_insert"), "{}", a.text);
    let a = revent(&s, "POST", "t1", Some("@function on_insert\nif (\n"));
    assert_eq!(
        (a.status, a.json["error"]["class"].clone()),
        (400, json!("parse")),
        "{}",
        a.text
    );
    let a = revent(
        &s,
        "POST",
        "t1",
        Some("@function on_insert\nschedule(1_hours, \"nope\")"),
    );
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.detail().contains("'nope'"), "{}", a.text);
    assert_eq!(revent(&s, "POST", "pair", Some(WELCOME)).status, 400);
    assert_eq!(revent(&s, "POST", "Bad", Some(WELCOME)).status, 400);
    assert_eq!(revent(&s, "GET", "welcome", None).status, 404);
    assert_eq!(revent(&s, "DELETE", "welcome", None).status, 404);

    let a = revent(&s, "POST", "welcome", Some(WELCOME));
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"message": "created", "table": "shop", "revent": "welcome"})
    );
    let a = revent(&s, "GET", "welcome", None);
    assert_eq!(
        a.json,
        json!({"table": "shop", "revent": "welcome", "entry": "on_insert", "script": WELCOME})
    );
    assert_eq!(subscribe(&s, "welcome", "crm", &hook_body(&h)).status, 200);

    // Both are new: welcomed. bo comes back at once, so only ana is nudged.
    s.insert_ok("shop", &events(&["ana", "bo"], 1, 1_700_000_000_000));
    s.insert_ok("shop", &events(&["bo"], 1, 1_700_000_001_000));
    let mut got = texts(&h.wait_for(2));
    got.sort();
    assert_eq!(
        got,
        [
            ("ana".to_string(), "welcome".to_string()),
            ("bo".to_string(), "welcome".to_string())
        ]
    );
    // The timers are durable: the nudge runs after a restart.
    wait_listing(&s, "delivered", &json!(2));
    s.restart(&[]).expect("restart");
    assert_eq!(revent(&s, "GET", "welcome", None).status, 200);
    let msgs = h.wait_for(3);
    assert_eq!(
        texts(&msgs[2..]),
        [("ana".to_string(), "come back 1".to_string())]
    );
    assert_eq!(msgs[2]["seq"], 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.delivered().len(), 3, "bo was not nudged");

    // Dropping the trigger drops its subscriptions and scheduled runs.
    s.insert_ok("shop", &events(&["cy"], 1, 1_700_000_000_000));
    h.wait_for(4);
    let a = revent(&s, "DELETE", "welcome", None);
    assert_eq!(
        a.json,
        json!({"message": "dropped", "table": "shop", "revent": "welcome"})
    );
    assert_eq!(revent(&s, "GET", "welcome", None).status, 404);
    assert!(listing(&s).is_empty());
}

#[test]
fn segments_may_not_take_a_trigger_name() {
    let s = server("textual");
    assert_eq!(revent(&s, "POST", "welcome", Some(WELCOME)).status, 200);
    let clash = "'welcome' is the name of a re-event trigger (segments and triggers share names)";
    let a = s.request(
        "POST",
        "/v1/query/shop/segment",
        Some(b"@segment welcome on_insert\nreturn(true)"),
        &[],
    );
    assert_eq!((a.status, a.detail()), (400, clash), "{}", a.text);
    // The batch endpoint defines segments too; nothing of it runs.
    let a = s.request(
        "POST",
        "/v1/query/shop/batch",
        Some(b"@segment fresh\nreturn(true)\n@segment welcome\nreturn(true)"),
        &[],
    );
    assert_eq!((a.status, a.detail()), (400, clash), "{}", a.text);
    let h = Hook::start();
    let a = subscribe(&s, "fresh", "crm", &hook_body(&h));
    assert_eq!(a.status, 404, "batch stored nothing: {}", a.text);
    // The trigger still works, and once dropped its name is free.
    assert_eq!(subscribe(&s, "welcome", "crm", &hook_body(&h)).status, 200);
    s.insert_ok("shop", &events(&["ana"], 1, 1_700_000_000_000));
    assert_eq!(texts(&h.wait_for(1)), [("ana".into(), "welcome".into())]);
    assert_eq!(revent(&s, "DELETE", "welcome", None).status, 200);
    let a = s.request(
        "POST",
        "/v1/query/shop/segment",
        Some(b"@segment welcome on_insert\nreturn(true)"),
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.text);
}

fn https_body(h: &Hook) -> Value {
    json!({"scheme": "https", "host": "127.0.0.1", "port": h.port, "path": "/hooks/tls"})
}

#[test]
fn https_hooks_trusted_through_the_ca_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, tls) = hook::self_signed(tmp.path());
    let h = Hook::start_tls(tls);
    let s = server_with("textual", &["--webhook-ca-file", ca.to_str().unwrap()]);
    let a = subscribe(
        &s,
        "pair",
        "crm",
        &json!({"scheme": "ftp", "host": "127.0.0.1"}),
    );
    assert_eq!(a.status, 400, "{}", a.text);
    // The hook speaks only TLS: a recorded test call came over TLS.
    let a = subscribe(&s, "pair", "crm", &https_body(&h));
    assert_eq!(a.status, 200, "{}", a.text);
    let ping = h.calls().last().cloned().expect("test call");
    assert_eq!(
        (ping.path.as_str(), ping.param("count")),
        ("/hooks/tls", "0")
    );
    assert_eq!(ping.body, json!({"messages": []}));
    assert_eq!(listing(&s)[0]["scheme"], "https");
    // ana's second event: she enters, and the message arrives over TLS.
    s.insert_ok("shop", &events(&["ana"], 2, 1_700_000_000_000));
    let msgs = h.wait_for(1);
    assert_eq!(states(&msgs), [("ana".into(), "entered".into())]);
    assert_eq!(seqs(&msgs), [1]);
    wait_listing(&s, "delivered", &json!(1));
}

#[test]
fn https_hooks_with_an_untrusted_certificate_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, tls) = hook::self_signed(tmp.path());
    let h = Hook::start_tls(tls);
    // Trusting another certificate does not help.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_ca, _) = hook::self_signed(&other);
    let s = server_with("textual", &[]);
    let s2 = server_with(
        "textual",
        &["--webhook-ca-file", other_ca.to_str().unwrap()],
    );
    for s in [&s, &s2] {
        let a = subscribe(s, "pair", "crm", &https_body(&h));
        assert_eq!(a.status, 400, "{}", a.text);
        let d = a.detail();
        assert!(
            d.starts_with(&format!(
                "Expecting 2xx response from https://127.0.0.1:{}/hooks/tls.",
                h.port
            )),
            "{d}"
        );
        assert!(d.contains("certificate is not trusted"), "{d}");
        assert!(d.contains("--webhook-ca-file"), "{d}");
        assert!(listing(s).is_empty());
    }
    assert!(h.calls().is_empty(), "no request without a handshake");
}

#[test]
fn a_bad_webhook_ca_file_stops_start_up_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let err = Server::start_in(
        &tmp.path().join("d"),
        &["--webhook-ca-file", junk.to_str().unwrap()],
    )
    .err()
    .expect("refused");
    assert!(err.contains("--webhook-ca-file"), "{err}");
}
